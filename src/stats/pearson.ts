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

import { gemmFallback, type Gemm, type RowSums, type ShiftedProduct } from './gemm.js'
import { alignedBytes, type BlobRows, kernels } from './kernels.js'

/** A chunk's rows: neuron-major [rows, tokens] float32, or blobs as they lie in an activation shard. */
export type ChunkRows = Float32Array | BlobRows

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

  /** `saved` (fromState's): start from this state, taking its arrays as they are. */
  constructor(options: PearsonOptions, saved?: PearsonState) {
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
    if (saved) {
      this.s = adoptState(saved, this.a, this.b)
      return
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

  /**
   * An accumulator that goes on from a saved state. It takes the state's arrays as its own, without copying them
   * (the cross sums of a pair are gigabytes, and new memory is slow to fault in): pass a state nothing else uses,
   * such as one just read from a file.
   */
  static fromState(state: PearsonState, gemm?: Gemm): PearsonAccumulator {
    return new PearsonAccumulator({ a: state.a, b: state.b, gemm }, state)
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
   * Add a chunk of valid tokens: `a` holds a.count rows and `b` b.count rows of `tokens` values each, the same
   * tokens in the same order: a neuron-major Float32Array [rows, tokens], or blobs as read from an activation
   * shard. Passing the same object as `a` and `b` (a block against itself) shifts it once. A non-finite
   * activation is an error (it would poison a whole row of the matrix), reported with the neuron and token.
   */
  add(a: ChunkRows, b: ChunkRows, tokens: number): void {
    if (tokens === 0) return
    const na = this.a.count, nb = this.b.count
    checkChunk(a, na, tokens, 'a')
    checkChunk(b, nb, tokens, 'b')
    const self = a === b && na === nb
    const product = scratch('product', na * nb)
    if (this.gemm.shifted && this.addShifted(this.gemm.shifted, a, self ? undefined : b, tokens, product)) return
    // Shift (and check) both chunks before touching the state, so a bad chunk leaves the accumulator as it was.
    const s = this.s
    const xa = scratch('a', na * tokens)
    const rowsA = shiftChunk(a, na, tokens, s.shifted ? s.shiftA : undefined, xa, 'A', this.a.start)
    const xb = self ? xa : scratch('b', nb * tokens)
    const rowsB = self ? rowsA : shiftChunk(b, nb, tokens, s.shifted ? s.shiftB : undefined, xb, 'B', this.b.start)
    this.gemm(xa, xb, na, nb, tokens, product)
    this.commit(rowsA, rowsB, product, tokens)
  }

  /** add() through the backend's fused shift and product; false (nothing changed) when a value is not finite. */
  private addShifted(shifted: ShiftedProduct, a: ChunkRows, b: ChunkRows | undefined, tokens: number, product: Float32Array): boolean {
    const s = this.s
    const rows = (count: number, shift: Float64Array) => ({ shift: s.shifted ? shift : new Float64Array(count), sum: new Float64Array(count), sumSq: new Float64Array(count) })
    const rowsA = rows(this.a.count, s.shiftA)
    const rowsB = b ? rows(this.b.count, s.shiftB) : rowsA
    if (!shifted(a, b, tokens, { a: rowsA.shift, b: rowsB.shift, fromChunk: !s.shifted }, product, { a: rowsA, b: rowsB })) return false
    this.commit(rowsA, rowsB, product, tokens)
    return true
  }

  /** Fold a checked chunk's row sums and product into the state. */
  private commit(rowsA: ShiftedRows, rowsB: ShiftedRows, product: Float32Array, tokens: number): void {
    const s = this.s
    if (!s.shifted) {
      s.shiftA.set(rowsA.shift)
      s.shiftB.set(rowsB.shift)
      s.shifted = true
    }
    addInto(s.sumA, rowsA.sum)
    addInto(s.sumSqA, rowsA.sumSq)
    addInto(s.sumB, rowsB.sum)
    addInto(s.sumSqB, rowsB.sumSq)
    kernels.addFloat32Into(s.cross, product)
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
      // Nothing here yet: take the other's sums as they are (the update below would only add zeros to them).
      for (const key of ['shiftA', 'shiftB', 'sumA', 'sumSqA', 'sumB', 'sumSqB', 'cross'] as const) s[key].set(o[key])
      s.n = o.n
      s.shifted = true
      return
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

function adoptState(saved: PearsonState, a: NeuronRange, b: NeuronRange): PearsonState {
  const lengths = { shiftA: a.count, sumA: a.count, sumSqA: a.count, shiftB: b.count, sumB: b.count, sumSqB: b.count, cross: a.count * b.count }
  for (const [key, length] of Object.entries(lengths) as [keyof typeof lengths, number][]) {
    if (!(saved[key] instanceof Float64Array) || saved[key].length !== length) {
      throw new Error(`pearson: the saved ${key} has ${saved[key]?.length} values where A[${a.start}+${a.count}]×B[${b.start}+${b.count}] needs ${length}`)
    }
  }
  if (!(Number.isInteger(saved.n) && saved.n >= 0)) throw new Error(`pearson: the saved token count ${saved.n} is not a count`)
  return { ...saved, a, b }
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

function checkChunk(rows: ChunkRows, count: number, tokens: number, side: string): void {
  const have = rows instanceof Float32Array ? rows.length : rows.offsets.length * tokens
  if (have !== count * tokens) {
    throw new Error(`pearson: chunk ${side} holds ${have} values, which does not match [${count}, ${tokens}]`)
  }
}

// Working buffers (the shifted operands and the chunk product) are shared by every accumulator in the process
// and grow to the largest chunk: a run may hold many accumulators (one per layer in WithinLayerMoments), and
// buffers kept by each would add up to gigabytes, while fresh ones per chunk cost a page fault per 4 KiB.
const buffers = new Map<string, Float32Array>()

function scratch(role: string, length: number): Float32Array {
  let buffer = buffers.get(role)
  if (!buffer || buffer.length < length) buffers.set(role, (buffer = cacheLineFloats(Math.ceil(length * 1.25)))) // headroom: chunks vary a little
  return buffer.subarray(0, length)
}

// On a 64-byte boundary where the native kernels can give one: the AMX product loads and stores its accumulator tiles
// in the chunk product, 64-byte rows, and rows across two cache lines cost it 6% (bench/README.md, session 18).
function cacheLineFloats(length: number): Float32Array {
  return alignedBytes ? new Float32Array(alignedBytes(length * 4, 64).buffer) : new Float32Array(length)
}

/** A chunk's rows after the shift: the reference values and each row's sums of the shifted values. */
export interface ShiftedRows extends RowSums {
  shift: Float64Array
}

/**
 * out = float32(x − shift) row by row, with each row's Σ and Σ² in float64 over the rounded values: the same
 * numbers the GEMM sees. Without a shift (the first chunk), each row's mean over this chunk becomes its shift.
 */
export function shiftChunk(
  rows: ChunkRows, count: number, tokens: number, shift: Float64Array | undefined, out: Float32Array, side: string, start: number,
): ShiftedRows {
  const sum = new Float64Array(count), sumSq = new Float64Array(count)
  const run = (source: ChunkRows, by: Float64Array) => source instanceof Float32Array
    ? kernels.shiftRows(source, count, tokens, by, out, sum, sumSq)
    : kernels.shiftBlobs(source.bytes, source.offsets, source.bytesPerValue, tokens, by, out, sum, sumSq)
  let source = rows
  if (!shift) {
    // Values as they are first (a zero shift), then around their means; x − 0 is exact, so the result is the same.
    throwIfNonFinite(run(rows, new Float64Array(count)), out, tokens, side, start)
    shift = sum.map((total) => total / tokens)
    source = out
  }
  throwIfNonFinite(run(source, shift), out, tokens, side, start)
  return { shift, sum, sumSq }
}

function throwIfNonFinite(bad: number, shifted: Float32Array, tokens: number, side: string, start: number): void {
  if (bad < 0) return
  const row = Math.floor(bad / tokens)
  throw new Error(`pearson: non-finite activation ${shifted[bad]} for neuron ${start + row} of ${side} at token ${bad - row * tokens} of the chunk`)
}

function addInto(into: Float64Array, from: Float64Array): void {
  for (let i = 0; i < into.length; i++) into[i] += from[i]
}
