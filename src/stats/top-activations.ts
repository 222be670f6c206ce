// The top-k activating tokens of each neuron (SPEC §4, the study's top-50 dataset examples), as (row, pos, value),
// streamed over token-major chunks and merged exactly across shards.
//
// Order: value descending; ties go to the earlier (row, pos). With (row, pos) unique per token this is a total
// order, so the kept set is the same whatever the chunking or the order in which shards are merged (top-heap.ts).
import { kernels } from './kernels.js'
import { chunkWidth } from './moments.js'
import { offerTop, type TopHeaps } from './top-heap.js'

export interface TopActivation {
  value: number
  row: number  // corpus row (the token stream's row index, SPEC §2)
  pos: number  // position within the row
}

/** Resumable state: per neuron a min-heap of at most k entries (the weakest at slot 0). */
export interface TopActivationsState extends TopHeaps {
  nNeurons: number
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
    kernels.topK(chunk, tokens, width, valid, place.firstRow, place.nPos, neuronOffset, this.s)
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
        offerTop(this.s, g, o.value[slot], o.row[slot], o.pos[slot])
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
}
