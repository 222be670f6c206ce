// The top-k activating tokens of each neuron (SPEC §4, the study's top-50 dataset examples), as (row, pos, value),
// streamed over token-major chunks and merged exactly across shards.
//
// Order: value descending; ties go to the earlier (row, pos). With (row, pos) unique per token this is a total
// order, so the kept set is the same whatever the chunking or the order in which shards are merged.

import { chunkWidth } from './moments.js'

export interface TopActivation {
  value: number
  row: number  // corpus row (the token stream's row index, SPEC §2)
  pos: number  // position within the row
}

/** Resumable state: per neuron a min-heap of at most k entries (the weakest at slot 0). */
export interface TopActivationsState {
  nNeurons: number
  k: number
  size: Int32Array      // [neurons] entries held (≤ k)
  value: Float64Array   // [neurons, k]
  row: Int32Array       // [neurons, k]
  pos: Int32Array       // [neurons, k]
}

/** Where a chunk's tokens sit in the corpus: token t is row firstRow + ⌊t / nPos⌋, position t mod nPos. */
export interface ChunkPlace {
  firstRow: number
  nPos: number
}

export class TopActivations {
  readonly nNeurons: number
  readonly k: number
  private readonly s: TopActivationsState

  constructor(nNeurons: number, k: number) {
    if (!Number.isInteger(k) || k < 1) throw new Error(`top-activations: k must be a positive integer, got ${k}`)
    this.nNeurons = nNeurons
    this.k = k
    this.s = {
      nNeurons, k, size: new Int32Array(nNeurons), value: new Float64Array(nNeurons * k),
      row: new Int32Array(nNeurons * k), pos: new Int32Array(nNeurons * k),
    }
  }

  static fromState(state: TopActivationsState): TopActivations {
    const top = new TopActivations(state.nNeurons, state.k)
    top.merge(state)
    return top
  }

  state(): TopActivationsState {
    const s = this.s
    const { nNeurons, k } = s
    return { nNeurons, k, size: s.size.slice(), value: s.value.slice(), row: s.row.slice(), pos: s.pos.slice() }
  }

  /**
   * Offer a token-major chunk `[tokens, width]` covering neurons [neuronOffset, neuronOffset + width).
   * Invalid positions and non-finite values are never kept.
   */
  add(
    chunk: Float32Array, tokens: number, place: ChunkPlace,
    options: { valid?: Uint8Array; neuronOffset?: number } = {},
  ): void {
    const { valid, neuronOffset = 0 } = options
    const width = chunkWidth('top-activations', chunk.length, tokens, valid, neuronOffset, this.nNeurons)
    if (width === 0) return
    // The weakest kept value per neuron (−∞ until the heap is full): most values fail this one comparison.
    const floor = new Float64Array(width)
    for (let j = 0; j < width; j++) floor[j] = this.floorOf(neuronOffset + j)
    for (let t = 0; t < tokens; t++) {
      if (valid && !valid[t]) continue
      const base = t * width
      for (let j = 0; j < width; j++) {
        const x = chunk[base + j]
        if (!(x >= floor[j])) continue  // also skips NaN
        const g = neuronOffset + j
        this.offer(g, x, place.firstRow + Math.floor(t / place.nPos), t % place.nPos)
        floor[j] = this.floorOf(g)
      }
    }
  }

  /** Merge another shard's top-k (same neurons and k). */
  merge(other: TopActivationsState | TopActivations): void {
    const o = other instanceof TopActivations ? other.s : other
    if (o.nNeurons !== this.nNeurons || o.k !== this.k) {
      throw new Error(`top-activations: cannot merge ${o.nNeurons} neurons × k=${o.k} ` +
        `into ${this.nNeurons} × k=${this.k}`)
    }
    for (let g = 0; g < this.nNeurons; g++) {
      for (let e = 0; e < o.size[g]; e++) {
        const slot = g * o.k + e
        this.offer(g, o.value[slot], o.row[slot], o.pos[slot])
      }
    }
  }

  /** A neuron's kept entries, strongest first. */
  top(neuron: number): TopActivation[] {
    const s = this.s
    const out: TopActivation[] = []
    for (let e = 0; e < s.size[neuron]; e++) {
      const slot = neuron * s.k + e
      out.push({ value: s.value[slot], row: s.row[slot], pos: s.pos[slot] })
    }
    return out.sort((x, y) => (y.value - x.value) || (x.row - y.row) || (x.pos - y.pos))
  }

  private floorOf(g: number): number {
    return this.s.size[g] < this.k ? -Infinity : this.s.value[g * this.k]
  }

  // Insert (value, row, pos) into neuron g's heap if it ranks above the weakest entry.
  private offer(g: number, value: number, row: number, pos: number): void {
    if (value - value !== 0) return
    const s = this.s
    const k = this.k
    const base = g * k
    if (s.size[g] < k) {
      let i = s.size[g]++
      while (i > 0) {  // sift up
        const parent = (i - 1) >> 1
        if (!weaker(value, row, pos, s.value[base + parent], s.row[base + parent], s.pos[base + parent])) break
        move(s, base + parent, base + i)
        i = parent
      }
      put(s, base + i, value, row, pos)
      return
    }
    if (!weaker(s.value[base], s.row[base], s.pos[base], value, row, pos)) return
    let i = 0
    for (;;) {  // sift down from the root, which the new entry replaces
      const left = 2 * i + 1
      if (left >= k) break
      let child = left
      const right = left + 1
      if (right < k && weaker(s.value[base + right], s.row[base + right], s.pos[base + right],
        s.value[base + left], s.row[base + left], s.pos[base + left])) child = right
      if (!weaker(s.value[base + child], s.row[base + child], s.pos[base + child], value, row, pos)) break
      move(s, base + child, base + i)
      i = child
    }
    put(s, base + i, value, row, pos)
  }
}

// x ranks below y: smaller value, or the same value at a later (row, pos).
function weaker(xv: number, xr: number, xp: number, yv: number, yr: number, yp: number): boolean {
  return xv < yv || (xv === yv && (xr > yr || (xr === yr && xp > yp)))
}

function move(s: TopActivationsState, from: number, to: number): void {
  s.value[to] = s.value[from]
  s.row[to] = s.row[from]
  s.pos[to] = s.pos[from]
}

function put(s: TopActivationsState, slot: number, value: number, row: number, pos: number): void {
  s.value[slot] = value
  s.row[slot] = row
  s.pos[slot] = pos
}
