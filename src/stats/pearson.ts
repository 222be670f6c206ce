// Streaming Pearson correlation of neurons of seed A against neurons of seed B over the same valid tokens
// (SPEC §3): n, Σa, Σa², Σb, Σb² and the cross matrix Σ a bᵀ, accumulated chunk by chunk.
//
// Numerics. Activations can have a large mean and a small variance, and the streams are long, so every neuron is
// shifted by a fixed reference value (by default its mean over the first chunk) before anything is summed: the
// chunk GEMM then runs in float32 on centred data, and its result is added into float64 totals. Pearson r is
// shift-invariant, so the shift changes nothing but the rounding.
//
// Blocking. An accumulator covers a range of A's neurons × a range of B's (e.g. one layer of A against every
// layer of B) when the full N×N float64 matrix does not fit; global neuron index = layer·d_mlp + neuron.

import { gemmFallback, type Gemm } from './gemm.js'

/** Global neuron indices [start, start + count) of one model. */
export interface NeuronRange {
  start: number
  count: number
}

export interface PearsonOptions {
  a: NeuronRange            // rows: the neurons of seed A this accumulator covers
  b: NeuronRange            // columns: the neurons of seed B
  gemm?: Gemm               // chunk cross product, float32; default the pure-JS gemmFallback
  shiftA?: Float64Array     // [a.count] reference values; default each neuron's mean over the first chunk
  shiftB?: Float64Array     // [b.count] likewise
}

/** Resumable, mergeable state. All sums are of shifted values x = a − shiftA, y = b − shiftB. */
export interface PearsonState {
  a: NeuronRange
  b: NeuronRange
  n: number                 // tokens accumulated
  shifted: boolean          // the shifts are fixed (given, or taken from the first chunk)
  shiftA: Float64Array      // [a.count]
  shiftB: Float64Array      // [b.count]
  sumA: Float64Array        // [a.count] Σx
  sumSqA: Float64Array      // [a.count] Σx²
  sumB: Float64Array        // [b.count] Σy
  sumSqB: Float64Array      // [b.count] Σy²
  cross: Float64Array       // [a.count, b.count] Σ x yᵀ
}

// A neuron is dead (zero variance) when its centred sum of squares is indistinguishable from rounding in the
// float64 sums it is computed from.
const DEAD_TOLERANCE = 16 * Number.EPSILON

export class PearsonAccumulator {
  readonly a: NeuronRange
  readonly b: NeuronRange
  private readonly s: PearsonState
  private readonly gemm: Gemm

  constructor(options: PearsonOptions) {
    const { a, b } = options
    this.a = { ...a }
    this.b = { ...b }
    this.gemm = options.gemm ?? gemmFallback
    if ((options.shiftA === undefined) !== (options.shiftB === undefined)) {
      throw new Error('pearson: give both shiftA and shiftB, or neither (then the first chunk sets both)')
    }
    for (const [name, shift, range] of [['shiftA', options.shiftA, a], ['shiftB', options.shiftB, b]] as const) {
      if (shift && shift.length !== range.count) {
        throw new Error(`pearson: ${name} has ${shift.length} values for ${range.count} neurons`)
      }
    }
    this.s = {
      a: this.a, b: this.b, n: 0, shifted: options.shiftA !== undefined,
      shiftA: options.shiftA?.slice() ?? new Float64Array(a.count),
      shiftB: options.shiftB?.slice() ?? new Float64Array(b.count),
      sumA: new Float64Array(a.count), sumSqA: new Float64Array(a.count),
      sumB: new Float64Array(b.count), sumSqB: new Float64Array(b.count),
      cross: new Float64Array(a.count * b.count),
    }
  }

  static fromState(state: PearsonState, gemm?: Gemm): PearsonAccumulator {
    const acc = new PearsonAccumulator({ a: state.a, b: state.b, gemm })
    acc.merge(state)
    return acc
  }

  /** Tokens accumulated. */
  get n(): number {
    return this.s.n
  }

  /** The live state (not a copy): the baseline and maxima read the sums from here. Do not mutate. */
  get sums(): Readonly<PearsonState> {
    return this.s
  }

  /** A copy of the state, for a checkpoint. */
  state(): PearsonState {
    const s = this.s
    return {
      a: { ...s.a }, b: { ...s.b }, n: s.n, shifted: s.shifted, shiftA: s.shiftA.slice(), shiftB: s.shiftB.slice(),
      sumA: s.sumA.slice(), sumSqA: s.sumSqA.slice(), sumB: s.sumB.slice(), sumSqB: s.sumSqB.slice(),
      cross: s.cross.slice(),
    }
  }

  /**
   * Add a chunk of valid tokens: `a` is [a.count, tokens] and `b` is [b.count, tokens], both neuron-major
   * row-major, the same tokens in the same order. A non-finite activation is an error (it would poison a whole
   * row of the matrix), reported with the neuron and token.
   */
  add(a: Float32Array, b: Float32Array, tokens: number): void {
    if (tokens === 0) return
    const na = this.a.count, nb = this.b.count
    if (a.length !== na * tokens || b.length !== nb * tokens) {
      throw new Error(`pearson: chunk shapes a=${a.length}, b=${b.length} values do not match ` +
        `[${na}, ${tokens}] and [${nb}, ${tokens}]`)
    }
    const s = this.s
    const shiftA = s.shifted ? s.shiftA : rowMeans(a, na, tokens)
    const shiftB = s.shifted ? s.shiftB : rowMeans(b, nb, tokens)
    // Working buffers live for one call only: a run may hold many accumulators (one per block, one per layer in
    // WithinLayerMoments), and buffers kept by each would add up to gigabytes. Allocating them costs far less
    // than the GEMM.
    const xa = new Float32Array(na * tokens), xb = new Float32Array(nb * tokens), product = new Float32Array(na * nb)
    // Shift (and check) both chunks before touching the state, so a bad chunk leaves the accumulator as it was.
    const rowsA = shiftRows(a, tokens, shiftA, xa, 'A', this.a.start)
    const rowsB = shiftRows(b, tokens, shiftB, xb, 'B', this.b.start)
    this.gemm(xa, xb, na, nb, tokens, product)
    if (!s.shifted) {
      s.shiftA.set(shiftA)
      s.shiftB.set(shiftB)
      s.shifted = true
    }
    addInto(s.sumA, rowsA.sum)
    addInto(s.sumSqA, rowsA.sumSq)
    addInto(s.sumB, rowsB.sum)
    addInto(s.sumSqB, rowsB.sumSq)
    addInto(s.cross, product)
    s.n += tokens
  }

  /**
   * Merge another accumulator over the same neuron ranges and disjoint tokens. Its sums are re-expressed
   * around this accumulator's shifts first (exact algebra: Σ(x+δ)(y+ε) = Σxy + εΣx + δΣy + nδε).
   */
  merge(other: PearsonState | PearsonAccumulator): void {
    const o = other instanceof PearsonAccumulator ? other.s : other
    const s = this.s
    if (o.a.start !== s.a.start || o.a.count !== s.a.count || o.b.start !== s.b.start || o.b.count !== s.b.count) {
      throw new Error(`pearson: cannot merge block A[${o.a.start}+${o.a.count}]×B[${o.b.start}+${o.b.count}] ` +
        `into A[${s.a.start}+${s.a.count}]×B[${s.b.start}+${s.b.count}]`)
    }
    if (o.n === 0) return
    if (!s.shifted) {
      s.shiftA.set(o.shiftA)
      s.shiftB.set(o.shiftB)
      s.shifted = true
    }
    const na = s.a.count, nb = s.b.count, n = o.n
    const da = new Float64Array(na), db = new Float64Array(nb)
    for (let i = 0; i < na; i++) da[i] = o.shiftA[i] - s.shiftA[i]
    for (let j = 0; j < nb; j++) db[j] = o.shiftB[j] - s.shiftB[j]
    for (let i = 0; i < na; i++) {
      const row = i * nb, sx = o.sumA[i], d = da[i]
      for (let j = 0; j < nb; j++) s.cross[row + j] += o.cross[row + j] + db[j] * sx + d * o.sumB[j] + n * d * db[j]
    }
    for (let i = 0; i < na; i++) {
      s.sumSqA[i] += o.sumSqA[i] + 2 * da[i] * o.sumA[i] + n * da[i] * da[i]
      s.sumA[i] += o.sumA[i] + n * da[i]
    }
    for (let j = 0; j < nb; j++) {
      s.sumSqB[j] += o.sumSqB[j] + 2 * db[j] * o.sumB[j] + n * db[j] * db[j]
      s.sumB[j] += o.sumB[j] + n * db[j]
    }
    s.n += n
  }

  /** n·Var of each neuron of A (its centred sum of squares); 0 for a dead neuron, NaN before any token. */
  scatterA(): Float64Array {
    return centredScatter(this.s.sumA, this.s.sumSqA, this.s.n)
  }

  /** n·Var of each neuron of B. */
  scatterB(): Float64Array {
    return centredScatter(this.s.sumB, this.s.sumSqB, this.s.n)
  }

  /** 1 for each neuron of A with zero variance over the tokens seen (or when no token was seen). */
  deadA(): Uint8Array {
    return deadMask(this.scatterA())
  }

  deadB(): Uint8Array {
    return deadMask(this.scatterB())
  }

  deadCounts(): { a: number; b: number } {
    return { a: count(this.deadA()), b: count(this.deadB()) }
  }

  /**
   * Call `visit(i, row)` for each neuron i of the A block with row[j] = r_ij over the B block. `row` is reused
   * between calls. r = (Σxy − ΣxΣy/n) / √(scatter_x · scatter_y); NaN when either neuron is dead, never 0.
   * Rounding can put |r| a few ulps above 1; it is not clamped.
   */
  forEachRow(visit: (i: number, row: Float64Array) => void): void {
    const s = this.s
    const na = s.a.count, nb = s.b.count, n = s.n
    const invA = inverseNorms(this.scatterA()), invB = inverseNorms(this.scatterB())
    const meanB = new Float64Array(nb)
    for (let j = 0; j < nb; j++) meanB[j] = s.sumB[j] / n
    const row = new Float64Array(nb)
    for (let i = 0; i < na; i++) {
      const base = i * nb, sx = s.sumA[i], ia = invA[i]
      for (let j = 0; j < nb; j++) row[j] = (s.cross[base + j] - sx * meanB[j]) * ia * invB[j]
      visit(i, row)
    }
  }

  /** The correlation block, [a.count, b.count] row-major. */
  correlation(): Float64Array {
    const out = new Float64Array(this.a.count * this.b.count)
    this.forEachRow((i, row) => out.set(row, i * this.b.count))
    return out
  }
}

/** n·Var from shifted sums: Σx² − (Σx)²/n, with 0 for a neuron whose variance is lost in rounding. */
export function centredScatter(sum: Float64Array, sumSq: Float64Array, n: number): Float64Array {
  const out = new Float64Array(sum.length)
  for (let i = 0; i < sum.length; i++) {
    if (n === 0) {
      out[i] = NaN
      continue
    }
    const c = sumSq[i] - (sum[i] * sum[i]) / n
    out[i] = c > DEAD_TOLERANCE * sumSq[i] ? c : 0
  }
  return out
}

function inverseNorms(scatter: Float64Array): Float64Array {
  const out = new Float64Array(scatter.length)
  for (let i = 0; i < scatter.length; i++) out[i] = scatter[i] > 0 ? 1 / Math.sqrt(scatter[i]) : NaN
  return out
}

function deadMask(scatter: Float64Array): Uint8Array {
  const out = new Uint8Array(scatter.length)
  for (let i = 0; i < scatter.length; i++) out[i] = scatter[i] > 0 ? 0 : 1
  return out
}

function count(mask: Uint8Array): number {
  let c = 0
  for (let i = 0; i < mask.length; i++) c += mask[i]
  return c
}

function rowMeans(x: Float32Array, rows: number, tokens: number): Float64Array {
  const out = new Float64Array(rows)
  for (let i = 0; i < rows; i++) {
    let sum = 0
    for (let t = i * tokens; t < (i + 1) * tokens; t++) sum += x[t]
    // A non-finite chunk is reported by shiftRows; keep the shift finite so that the message names the value.
    out[i] = Number.isFinite(sum) ? sum / tokens : 0
  }
  return out
}

// out = float32(x − shift) row by row, with each row's Σ and Σ² in float64 over the rounded values: the same
// numbers the GEMM sees.
function shiftRows(
  x: Float32Array, tokens: number, shift: Float64Array, out: Float32Array, side: string, start: number,
): { sum: Float64Array; sumSq: Float64Array } {
  const sum = new Float64Array(shift.length), sumSq = new Float64Array(shift.length)
  for (let i = 0; i < shift.length; i++) {
    const c = shift[i]
    let s1 = 0, s2 = 0
    for (let t = i * tokens; t < (i + 1) * tokens; t++) {
      const y = Math.fround(x[t] - c)
      if (y - y !== 0) {
        throw new Error(`pearson: non-finite activation ${x[t]} for neuron ${start + i} of ${side} ` +
          `at token ${t - i * tokens} of the chunk`)
      }
      out[t] = y
      s1 += y
      s2 += y * y
    }
    sum[i] = s1
    sumSq[i] = s2
  }
  return { sum, sumSq }
}

function addInto(into: Float64Array, from: Float64Array | Float32Array): void {
  for (let i = 0; i < into.length; i++) into[i] += from[i]
}
