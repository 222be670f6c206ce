// The top-k activating tokens of each neuron (SPEC §4, the study's top-50 dataset examples), as (row, pos, value),
// taken from neuron-major rows and merged exactly across shards.
//
// Order: value descending; ties go to the earlier (row, pos). With (row, pos) unique per token this is a total
// order, so the kept set is the same whatever the chunking or the order in which shards are merged (top-heap.ts).
import { kernels } from './kernels.js'
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

/** Where tokens sit in the corpus: token i is row row[i], position pos[i]. */
export interface TokenPlaces {
  row: Int32Array
  pos: Int32Array
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

  /** The live state (not a copy): to write it now. Do not keep or mutate it. */
  get sums(): Readonly<TopActivationsState> {
    return this.s
  }

  state(): TopActivationsState {
    const s = this.s
    const { nNeurons, k } = s
    return { nNeurons, k, size: s.size.slice(), value: s.value.slice(), row: s.row.slice(), pos: s.pos.slice() }
  }

  /**
   * Offer neuron-major rows `[neurons, tokens]` (a shard buffer's layout: one row per neuron, its tokens in
   * corpus order, as `places` must say) covering neurons [neuronOffset, neuronOffset + neurons). Non-finite
   * values are never kept.
   */
  addRows(rows: Float32Array, tokens: number, places: TokenPlaces, neuronOffset = 0): void {
    const neurons = tokens === 0 ? 0 : rows.length / tokens
    if (!Number.isInteger(neurons) || neuronOffset < 0 || neuronOffset + neurons > this.nNeurons) {
      throw new Error(`top-activations: ${rows.length} values are not rows of ${tokens} tokens within ${this.nNeurons} neurons from ${neuronOffset}`)
    }
    const { row, pos } = places
    if (row.length !== tokens || pos.length !== tokens) {
      throw new Error(`top-activations: ${row.length} rows and ${pos.length} positions for ${tokens} tokens`)
    }
    for (let i = 1; i < tokens; i++) {
      // The kernel keeps only the first k of the tokens that tie at its floor: it needs them in corpus order.
      if (row[i] < row[i - 1] || (row[i] === row[i - 1] && pos[i] <= pos[i - 1])) {
        throw new Error(`top-activations: token ${i} (row ${row[i]}, position ${pos[i]}) is not after token ${i - 1} (row ${row[i - 1]}, position ${pos[i - 1]})`)
      }
    }
    if (neurons > 0) kernels.topKRows(rows, neurons, tokens, places.row, places.pos, neuronOffset, this.s)
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
