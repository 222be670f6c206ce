// Per-neuron maxima of one seed pair's correlation matrix, both directions (SPEC §3): for each neuron of A the
// max over every neuron of every layer of B (row maxima, max_corr^B), and for each neuron of B the max over A
// (column maxima, so one pair gives universality for both seeds). Streamed over blocks of the matrix.
//
// NaN entries (dead neurons) are skipped; a neuron with no finite entry gets NaN and index −1. Ties keep the
// lower global index, so the result does not depend on block order.

import type { NeuronRange, PearsonAccumulator } from './pearson.js'

/** Per neuron: the largest correlation and the global index of the neuron on the other side that attains it. */
export interface Maxima {
  value: Float64Array  // [neurons] NaN where the neuron has no finite correlation
  index: Int32Array    // [neurons] global index l·d_mlp + n on the other side; −1 with NaN
}

export class PairMaxima {
  readonly rows: Maxima  // per neuron of A: max_j r_ij, argmax j (a neuron of B)
  readonly cols: Maxima  // per neuron of B: max_i r_ij, argmax i (a neuron of A)

  constructor(nA: number, nB: number) {
    this.rows = emptyMaxima(nA)
    this.cols = emptyMaxima(nB)
  }

  /** Fold in one accumulator's block, computing r row by row (the block is never materialised). */
  add(acc: PearsonAccumulator): void {
    const { a, b } = acc
    this.checkRange(a, b)
    acc.forEachRow((i, row) => this.addRow(a.start + i, row, b.start))
  }

  /** Fold in an already computed block r, [a.count, b.count] row-major. */
  addBlock(r: Float64Array, a: NeuronRange, b: NeuronRange): void {
    this.checkRange(a, b)
    if (r.length !== a.count * b.count) {
      throw new Error(`maxima: block has ${r.length} values, expected ${a.count}×${b.count}`)
    }
    for (let i = 0; i < a.count; i++) this.addRow(a.start + i, r.subarray(i * b.count, (i + 1) * b.count), b.start)
  }

  /** Merge maxima computed over other blocks of the same pair. */
  merge(other: PairMaxima): void {
    if (other.rows.value.length !== this.rows.value.length || other.cols.value.length !== this.cols.value.length) {
      throw new Error('maxima: cannot merge maxima of different shapes')
    }
    mergeMaxima(this.rows, other.rows)
    mergeMaxima(this.cols, other.cols)
  }

  private addRow(ia: number, row: Float64Array, bStart: number): void {
    const cols = this.cols
    let best = NaN, bestJ = -1
    for (let j = 0; j < row.length; j++) {
      const r = row[j]
      if (r !== r) continue
      if (!(r <= best)) {  // r > best, or best is NaN; equal keeps the earlier (lower) index
        best = r
        bestJ = j
      }
      const jb = bStart + j
      if (isBetter(r, ia, cols.value[jb], cols.index[jb])) {
        cols.value[jb] = r
        cols.index[jb] = ia
      }
    }
    if (bestJ >= 0 && isBetter(best, bStart + bestJ, this.rows.value[ia], this.rows.index[ia])) {
      this.rows.value[ia] = best
      this.rows.index[ia] = bStart + bestJ
    }
  }

  private checkRange(a: NeuronRange, b: NeuronRange): void {
    const nA = this.rows.value.length, nB = this.cols.value.length
    if (a.start < 0 || a.start + a.count > nA || b.start < 0 || b.start + b.count > nB) {
      throw new Error(`maxima: block A[${a.start}+${a.count}]×B[${b.start}+${b.count}] is outside ` +
        `${nA}×${nB}`)
    }
  }
}

/** The (layer, neuron) of a global neuron index l·d_mlp + n. */
export function splitNeuronIndex(index: number, dMlp: number): { layer: number; neuron: number } {
  return { layer: Math.floor(index / dMlp), neuron: index % dMlp }
}

export function emptyMaxima(n: number): Maxima {
  return { value: new Float64Array(n).fill(NaN), index: new Int32Array(n).fill(-1) }
}

/** Keep, per neuron, the better of `into` and `from`. */
export function mergeMaxima(into: Maxima, from: Maxima): void {
  for (let i = 0; i < into.value.length; i++) {
    if (isBetter(from.value[i], from.index[i], into.value[i], into.index[i])) {
      into.value[i] = from.value[i]
      into.index[i] = from.index[i]
    }
  }
}

// (v, i) beats the current (cv, ci): finite-or-not-NaN v over a NaN current, a larger value, or the same value
// at a lower index.
export function isBetter(v: number, i: number, cv: number, ci: number): boolean {
  if (v !== v) return false
  if (cv !== cv) return true
  return v > cv || (v === cv && i < ci)
}
