// Per-element kernels of the statistics: the loops that touch every activation once (shift a chunk for the
// correlation GEMM; extract's moments and scatter). They run in C when the addon native/kernels is built
// (`make native`: only a C compiler is needed), else in JavaScript. Both implementations follow the same contract
// and the same summation order, so they return bit-identical numbers; the tests hold them to it.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { decodeF16, FLOAT16_MAX, toFloat16Bits } from '../io/safetensors-dtypes.js'
import { HISTOGRAM_BINS, histogramBin } from './histogram.js'
import { boxMullerFill, uniformFrom } from './random.js'
import { heapFloor, offerTop, sortWeakestFirst, type TopHeaps } from './top-heap.js'

/** Rows stored as little-endian float32 (4) or float16 (2) blobs of equal length at byte offsets of a buffer. */
export interface BlobRows {
  bytes: Uint8Array
  offsets: Float64Array // [rows]
  bytesPerValue: 2 | 4
}

export interface Kernels {
  readonly name: 'native' | 'js'
  /**
   * Shift rows: dst[i·tokens + t] = float32(src[i·tokens + t] − shift[i]) for `rows` rows of `tokens` values,
   * with sum[i] = Σ_t dst and sumSq[i] = Σ_t dst² in float64. Returns −1, or the flat index i·tokens + t of the
   * first non-finite shifted value (then dst, sum and sumSq hold partial results).
   */
  shiftRows(src: Float32Array, rows: number, tokens: number, shift: Float64Array, dst: Float32Array, sum: Float64Array, sumSq: Float64Array): number
  /** The same, row i being the little-endian float32 (4) or float16 (2) blob at byte offsets[i] of `bytes`. */
  shiftBlobs(bytes: Uint8Array, offsets: Float64Array, bytesPerValue: 2 | 4, tokens: number, shift: Float64Array, dst: Float32Array, sum: Float64Array, sumSq: Float64Array): number
  /** into[i] += from[i] over into's length: a chunk's float32 product into float64 sums. */
  addFloat32Into(into: Float64Array, from: Float32Array): void
  /**
   * The screened correlate's exact dots: dots[e] += Σ_t za[i·tokens + t]·zb[cols[e]·tokens + t] for each candidate e
   * of row i (CSR: rowStart[i] ≤ e < rowStart[i + 1]), summed in float64 over the eight lanes.
   */
  sparseDots(za: Float32Array, zb: Float32Array, tokens: number, rowStart: Int32Array, cols: Int32Array, dots: Float64Array): void
  /**
   * The rotation baseline's centred cross tile (baseline.ts): D = Σxyᵀ − Σx Σyᵀ / n from a pair's sums as a
   * contiguous [rows, d] matrix, each value (Σxy − (Σx/n)·Σy) rounded to out's type. Not transposed: A's rows i0…
   * against B's columns offset…offset + d; transposed: B's columns i0… as rows against A's rows offset…offset + d.
   * `cross` is [A's rows, cols] row-major.
   */
  centredCross(cross: Float64Array, cols: number, sumA: Float64Array, sumB: Float64Array, n: number, offset: number, d: number, transposed: boolean, i0: number, rows: number, out: Float32Array | Float64Array): void
  /**
   * Per row i of cov [rows, d]: best[i] = the largest cov[i·d + k]·(1/√scatter[i])·inverseRoot[k] over k (in that
   * order of operations; NaN products never win), NaN when there is none or scatter[i] ≤ 0 (a dead anchor).
   */
  rotatedRowMaxima(cov: Float32Array | Float64Array, rows: number, d: number, scatter: Float64Array, inverseRoot: Float64Array, best: Float64Array): void
  /**
   * Fill `out` with the standard normals random.ts's boxMullerFill(uniformFrom(state), out) makes, bit for bit, and
   * advance `state` (xoshiro128**, 4 words) as it does: the rotation baseline's Gaussian directions.
   */
  gaussianPairs(state: Uint32Array, out: Float64Array): void
  /** Threads for the kernels (process-wide; the results do not depend on it). The JavaScript ones use one. */
  setThreads(threads: number): void

  // Extract's kernels read a token-major chunk [tokens, width] (`chunk[t·width + j]`: value of neuron j at token t),
  // only at tokens t with valid[t] = 1 (every token when valid is undefined). Each adds into its outputs unless it
  // says otherwise.
  /**
   * A chunk's moments (moments.ts), in two passes per neuron j over its finite values x in token order. Pass 1:
   * count[j] = their number, mean[j] = (Σx)/count[j] (0 when none), and into the running totals positive[j] += (x > 0),
   * histogram[j·HISTOGRAM_BINS + histogramBin(x)] += 1, and per non-finite value nonFinite[j] += 1. Pass 2, with
   * d = x − mean[j]: s1[j] = Σd, s2[j] = Σd², s3[j] = Σd²·d, s4[j] = Σd²·d². count, mean and s1…s4 are written (the
   * chunk's own), the others added into.
   */
  chunkMoments(chunk: Float32Array, tokens: number, width: number, valid: Uint8Array | undefined, count: Float64Array, mean: Float64Array, s1: Float64Array, s2: Float64Array, s3: Float64Array, s4: Float64Array, positive: Float64Array, nonFinite: Float64Array, histogram: Float64Array): void
  /**
   * Keep in the heap of neuron neuronOffset + j the k strongest of its entries and of row j of neuron-major rows
   * [neurons, tokens] (top-heap.ts's order; non-finite values never kept); token i is row rowOf[i], position
   * posOf[i], in corpus order (TopActivations.addRows checks). The kept entries are stored sorted weakest first
   * (`sortWeakestFirst`), whatever the algorithm.
   */
  topKRows(rows: Float32Array, neurons: number, tokens: number, rowOf: Int32Array, posOf: Int32Array, neuronOffset: number, heaps: TopHeaps): void
  /**
   * Copy the i-th valid token's values into column `column + i` of the neuron-major rows of out [width, outTokens]:
   * out[j·outTokens + column + i] = chunk[t·width + j]. Returns the column after the last one written.
   */
  scatterNeuronMajor(chunk: Float32Array, tokens: number, width: number, valid: Uint8Array | undefined, out: Float32Array, outTokens: number, column: number): number
  /**
   * out[i] = the IEEE binary16 bits of values[i] (round to nearest even, `toFloat16Bits`). Returns −1, or the index
   * of the first value float16 cannot hold (|x| > 65504 or NaN); then out is incomplete.
   */
  toFloat16(values: Float32Array, out: Uint16Array): number
}

// The fixed summation order both implementations share: eight lanes (lane = token mod 8), combined pairwise.
const LANES = 8

function shiftRowJs(x: ArrayLike<number>, tokens: number, c: number, dst: Float32Array, at: number, sums: Float64Array, i: number, sumSq: Float64Array): boolean {
  const s1 = new Float64Array(LANES), s2 = new Float64Array(LANES)
  for (let t = 0; t < tokens; t++) {
    const y = Math.fround(x[t] - c)
    dst[at + t] = y
    s1[t & 7] += y
    s2[t & 7] += y * y
  }
  sums[i] = ((s1[0] + s1[1]) + (s1[2] + s1[3])) + ((s1[4] + s1[5]) + (s1[6] + s1[7]))
  sumSq[i] = ((s2[0] + s2[1]) + (s2[2] + s2[3])) + ((s2[4] + s2[5]) + (s2[6] + s2[7]))
  return Number.isFinite(sums[i]) && Number.isFinite(sumSq[i])
}

function firstNonFinite(dst: Float32Array, at: number, tokens: number): number {
  for (let t = 0; t < tokens; t++) if (!Number.isFinite(dst[at + t])) return t
  return 0
}

export const jsKernels: Kernels = {
  name: 'js',
  setThreads() {},
  addFloat32Into(into, from) {
    if (from.length < into.length) throw new RangeError(`kernels: from has ${from.length} values, into ${into.length}`)
    for (let i = 0; i < into.length; i++) into[i] += from[i]
  },
  shiftRows(src, rows, tokens, shift, dst, sum, sumSq) {
    checkShift(src.length, rows, tokens, shift, dst, sum, sumSq)
    for (let i = 0; i < rows; i++) {
      const row = src.subarray(i * tokens, (i + 1) * tokens)
      if (!shiftRowJs(row, tokens, shift[i], dst, i * tokens, sum, i, sumSq)) return i * tokens + firstNonFinite(dst, i * tokens, tokens)
    }
    return -1
  },
  shiftBlobs(bytes, offsets, bytesPerValue, tokens, shift, dst, sum, sumSq) {
    const rows = offsets.length
    checkShift(rows * tokens, rows, tokens, shift, dst, sum, sumSq)
    const aligned = new Uint8Array(tokens * bytesPerValue) // blobs sit at any byte offset: copy to view them
    for (let i = 0; i < rows; i++) {
      const at = offsets[i]
      if (!(Number.isInteger(at) && at >= 0 && at + aligned.length <= bytes.length)) {
        throw new RangeError(`kernels: blob ${i} at byte ${at} runs past the ${bytes.length}-byte buffer`)
      }
      aligned.set(bytes.subarray(at, at + aligned.length))
      const values = bytesPerValue === 4 ? new Float32Array(aligned.buffer, 0, tokens) : decodeF16(new Uint16Array(aligned.buffer, 0, tokens))
      if (!shiftRowJs(values, tokens, shift[i], dst, i * tokens, sum, i, sumSq)) return i * tokens + firstNonFinite(dst, i * tokens, tokens)
    }
    return -1
  },
  sparseDots(za, zb, tokens, rowStart, cols, dots) {
    const rows = rowStart.length - 1
    if (rows < 0 || za.length < rows * tokens || dots.length < cols.length || rowStart[0] !== 0 || rowStart[rows] !== cols.length) {
      throw new RangeError(`kernels: sparseDots given ${rows} rows of A (${za.length} values), ${cols.length} candidates, ${dots.length} dots`)
    }
    const lanes = new Float64Array(LANES)
    for (let i = 0; i < rows; i++) {
      if (rowStart[i + 1] < rowStart[i]) throw new RangeError(`kernels: sparseDots rowStart decreases at row ${i}`)
      const a = i * tokens
      for (let e = rowStart[i]; e < rowStart[i + 1]; e++) {
        const b = cols[e] * tokens
        if (cols[e] < 0 || b + tokens > zb.length) throw new RangeError(`kernels: sparseDots candidate ${e} names row ${cols[e]} of B, which has ${zb.length} values`)
        lanes.fill(0)
        for (let t = 0; t < tokens; t++) lanes[t & 7] += za[a + t] * zb[b + t]
        dots[e] += ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
      }
    }
  },
  centredCross(cross, cols, sumA, sumB, n, offset, d, transposed, i0, rows, out) {
    checkCentredCross(cross, cols, sumA, sumB, n, offset, d, transposed, i0, rows, out)
    if (!transposed) {
      for (let i = 0; i < rows; i++) {
        const src = (i0 + i) * cols + offset, sx = sumA[i0 + i] / n
        for (let j = 0; j < d; j++) out[i * d + j] = cross[src + j] - sx * sumB[offset + j]
      }
      return
    }
    // A transpose: 64 × 64 blocks, so the strided writes stay in cache (≈1.7× faster at d_mlp 3072).
    for (let j0 = 0; j0 < d; j0 += TRANSPOSE_BLOCK) {
      for (let b0 = 0; b0 < rows; b0 += TRANSPOSE_BLOCK) {
        const jEnd = Math.min(d, j0 + TRANSPOSE_BLOCK), iEnd = Math.min(rows, b0 + TRANSPOSE_BLOCK)
        for (let j = j0; j < jEnd; j++) {  // j: a neuron of A's rotated layer; i: a B anchor
          const src = (offset + j) * cols + i0, sx = sumA[offset + j] / n
          for (let i = b0; i < iEnd; i++) out[i * d + j] = cross[src + i] - sx * sumB[i0 + i]
        }
      }
    }
  },
  gaussianPairs(state, out) {
    checkGeneratorState(state)
    boxMullerFill(uniformFrom(state), out)
  },
  rotatedRowMaxima(cov, rows, d, scatter, inverseRoot, best) {
    checkRowMaxima(cov, rows, d, scatter, inverseRoot, best)
    for (let i = 0; i < rows; i++) {
      const sa = scatter[i]
      if (!(sa > 0)) {
        best[i] = NaN
        continue
      }
      const invA = 1 / Math.sqrt(sa)
      let top = -Infinity   // NaN products (dead directions) fail the comparison, so they are skipped
      for (let k = 0, at = i * d; k < d; k++, at++) {
        const r = cov[at] * invA * inverseRoot[k]
        if (r > top) top = r
      }
      best[i] = top === -Infinity ? NaN : top
    }
  },
  chunkMoments(chunk, tokens, width, valid, count, mean, s1, s2, s3, s4, positive, nonFinite, histogram) {
    checkChunk(chunk, tokens, width, valid, { count, mean, s1, s2, s3, s4, positive, nonFinite }, width)
    checkChunk(chunk, tokens, width, valid, { histogram }, width * HISTOGRAM_BINS)
    for (const own of [count, mean, s1, s2, s3, s4]) own.fill(0, 0, width)
    const sum = mean // pass 1 sums into mean, which becomes the mean below
    for (let t = 0; t < tokens; t++) {
      if (valid && !valid[t]) continue
      const row = t * width
      for (let j = 0; j < width; j++) {
        const x = chunk[row + j]
        if (x - x !== 0) {
          nonFinite[j]++
          continue
        }
        count[j]++
        sum[j] += x
        if (x > 0) positive[j]++
        histogram[j * HISTOGRAM_BINS + histogramBin(x)]++
      }
    }
    for (let j = 0; j < width; j++) mean[j] = count[j] > 0 ? sum[j] / count[j] : 0
    for (let t = 0; t < tokens; t++) {
      if (valid && !valid[t]) continue
      const row = t * width
      for (let j = 0; j < width; j++) {
        const x = chunk[row + j]
        if (x - x !== 0) continue
        const d = x - mean[j]
        const d2 = d * d
        s1[j] += d
        s2[j] += d2
        s3[j] += d2 * d
        s4[j] += d2 * d2
      }
    }
  },
  topKRows(rows, neurons, tokens, rowOf, posOf, neuronOffset, heaps) {
    const k = heaps.k, need = neuronOffset + neurons
    if (!(neurons >= 0 && tokens >= 0 && neuronOffset >= 0 && k >= 1)) {
      throw new RangeError('kernels: neurons, tokens and neuronOffset must not be negative, heap k must be positive')
    }
    if (rows.length < neurons * tokens || rowOf.length < tokens || posOf.length < tokens) {
      throw new RangeError(`kernels: rows (${rows.length} values), rowOf (${rowOf.length}) or posOf (${posOf.length}) too short for ${neurons} neurons × ${tokens} tokens`)
    }
    for (const [name, array, n] of [['size', heaps.size, need], ['value', heaps.value, need * k], ['row', heaps.row, need * k], ['pos', heaps.pos, need * k]] as const) {
      if (array.length < n) throw new RangeError(`kernels: heap ${name} has ${array.length} values, need ${n}`)
    }
    for (let j = 0; j < neurons; j++) {
      const g = neuronOffset + j, base = j * tokens
      let floor = heapFloor(heaps, g) // the weakest kept value: most values fail this one comparison
      for (let i = 0; i < tokens; i++) {
        const x = rows[base + i]
        if (!(x >= floor)) continue // also skips NaN
        offerTop(heaps, g, x, rowOf[i], posOf[i])
        floor = heapFloor(heaps, g)
      }
      sortWeakestFirst(heaps, g)
    }
  },
  scatterNeuronMajor(chunk, tokens, width, valid, out, outTokens, column) {
    checkChunk(chunk, tokens, width, valid, {}, 0)
    const end = column + (valid ? countOnes(valid, tokens) : tokens)
    if (end > outTokens || out.length < width * outTokens) {
      throw new RangeError(`kernels: ${end - column} valid tokens from column ${column} do not fit ${out.length} values of rows of ${outTokens}`)
    }
    for (let t = 0; t < tokens; t++) {
      if (valid && !valid[t]) continue
      const from = t * width
      for (let j = 0; j < width; j++) out[j * outTokens + column] = chunk[from + j]
      column++
    }
    return column
  },
  toFloat16(values, out) {
    if (out.length < values.length) throw new RangeError(`kernels: out has ${out.length} values, need ${values.length}`)
    for (let i = 0; i < values.length; i++) {
      if (!(Math.abs(values[i]) <= FLOAT16_MAX)) return i
      out[i] = toFloat16Bits(values[i])
    }
    return -1
  },
}

// The argument checks of native/kernels/extract.c, so both implementations refuse the same calls.
function checkChunk(chunk: Float32Array, tokens: number, width: number, valid: Uint8Array | undefined, outputs: Record<string, ArrayLike<number>>, need: number): void {
  if (chunk.length < tokens * width) throw new RangeError(`kernels: chunk has ${chunk.length} values, need ${tokens} × ${width}`)
  if (valid && valid.length < tokens) throw new RangeError(`kernels: valid has ${valid.length} entries, need ${tokens}`)
  for (const [name, output] of Object.entries(outputs)) {
    if (output.length < need) throw new RangeError(`kernels: ${name} has ${output.length} values, need ${need}`)
  }
}

const TRANSPOSE_BLOCK = 64

// The argument checks of native/kernels/correlate.c's baseline kernels, so both implementations refuse the same calls.
function checkCentredCross(cross: Float64Array, cols: number, sumA: Float64Array, sumB: Float64Array, n: number, offset: number, d: number, transposed: boolean, i0: number, rows: number, out: ArrayLike<number>): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError("kernels: n must be a non-negative integer")
  const lastRow = transposed ? offset + d : i0 + rows, lastCol = transposed ? i0 + rows : offset + d
  if (!(cols > 0) || cross.length < lastRow * cols || lastCol > cols || sumA.length < lastRow || sumB.length < lastCol || out.length < rows * d) {
    throw new RangeError(`kernels: centredCross of ${rows} × ${d} from ${cross.length} cross sums of ${cols} columns (sumA ${sumA.length}, sumB ${sumB.length}, out ${out.length}) is out of range`)
  }
}

function checkRowMaxima(cov: ArrayLike<number>, rows: number, d: number, scatter: Float64Array, inverseRoot: Float64Array, best: Float64Array): void {
  if (cov.length < rows * d || scatter.length < rows || inverseRoot.length < d || best.length < rows) {
    throw new RangeError(`kernels: rotatedRowMaxima of ${rows} × ${d} given cov ${cov.length}, scatter ${scatter.length}, inverseRoot ${inverseRoot.length}, best ${best.length}`)
  }
}

function checkGeneratorState(state: Uint32Array): void {
  if (state.length !== 4) throw new RangeError(`kernels: a generator state has 4 words, got ${state.length}`)
}

function countOnes(valid: Uint8Array, tokens: number): number {
  let n = 0
  for (let t = 0; t < tokens; t++) if (valid[t]) n++
  return n
}

function checkShift(srcLength: number, rows: number, tokens: number, shift: Float64Array, dst: Float32Array, sum: Float64Array, sumSq: Float64Array): void {
  if (srcLength < rows * tokens || dst.length < rows * tokens || shift.length < rows || sum.length < rows || sumSq.length < rows) {
    throw new RangeError(`kernels: shift of ${rows} rows × ${tokens} tokens given src ${srcLength}, dst ${dst.length}, shift ${shift.length}, sum ${sum.length}, sumSq ${sumSq.length}`)
  }
}

// src/stats/kernels.ts and dist/stats/kernels.js both sit two levels below the repository root.
const ADDON = fileURLToPath(new URL('../../native/kernels/build/Release/kernels.node', import.meta.url))

/** The built addon's exports, typed as the caller needs them (Node loads it once; later calls get the same module). */
function nativeAddon<T>(): T {
  return createRequire(import.meta.url)(ADDON) as T
}

/**
 * The C kernels, or undefined when the addon is not built here (a load failure of a built addon throws). `portable`:
 * the loops every CPU runs instead of the vector ones where a kernel has both (the tests compare them).
 */
export function loadNativeKernels(options: { portable?: boolean } = {}): Kernels | undefined {
  if (!existsSync(ADDON)) return undefined
  type Addon = Omit<Kernels, 'name' | 'chunkMoments' | 'scatterNeuronMajor' | 'gaussianPairs'> & {
    gaussianPairs(state: Uint32Array, out: Float64Array): boolean
    chunkMoments(...args: [...Parameters<Kernels['chunkMoments']>, portable: boolean]): void
    scatterNeuronMajor(...args: [...Parameters<Kernels['scatterNeuronMajor']>, portable: boolean]): number
  }
  const addon = nativeAddon<Addon>()
  const { shiftRows, shiftBlobs, sparseDots, addFloat32Into, setThreads, topKRows, toFloat16 } = addon
  const portable = options.portable ?? false
  const chunkMoments: Kernels['chunkMoments'] = (...args) => addon.chunkMoments(...args, portable)
  const scatterNeuronMajor: Kernels['scatterNeuronMajor'] = (...args) => addon.scatterNeuronMajor(...args, portable)
  // The baseline's kernels run in C on float32 tiles (the fast GEMM's); float64 ones, the exact path, stay in JavaScript.
  const centredCross: Kernels['centredCross'] = (...args) => (args[10] instanceof Float32Array ? addon.centredCross(...args) : jsKernels.centredCross(...args))
  const rotatedRowMaxima: Kernels['rotatedRowMaxima'] = (...args) => (args[0] instanceof Float32Array ? addon.rotatedRowMaxima(...args) : jsKernels.rotatedRowMaxima(...args))
  const gaussianPairs = nativeGaussians(addon.gaussianPairs)
  return { name: 'native', shiftRows, shiftBlobs, sparseDots, addFloat32Into, setThreads, chunkMoments, topKRows, scatterNeuronMajor, toFloat16, centredCross, rotatedRowMaxima, gaussianPairs }
}

// The C normals call V8's own log, cos and sin (the functions behind Math.log, Math.cos and Math.sin, which the node
// binary exports), so they equal the JavaScript ones bit for bit. Where this node does not export them the addon says
// so (false), and where Math's functions turn out to be others, the first call's check of 2^16 values against the
// JavaScript ones catches it: either way the JavaScript kernel runs instead, and R stays the same.
const GAUSSIAN_CHECK = 1 << 16

/** gaussianPairs over a native fill (exported for the tests): checked once against the JavaScript, which it falls back to. */
export function nativeGaussians(fill: (state: Uint32Array, out: Float64Array) => boolean): Kernels['gaussianPairs'] {
  let agrees: boolean | undefined
  return (state, out) => {
    checkGeneratorState(state)
    if (agrees === undefined) {
      const probe = Uint32Array.of(0x9e3779b9, 1, 2, 3), mine = new Float64Array(GAUSSIAN_CHECK), js = new Float64Array(GAUSSIAN_CHECK)
      agrees = fill(probe.slice(), mine)
      jsKernels.gaussianPairs(probe.slice(), js)
      agrees &&= mine.every((v, i) => Object.is(v, js[i]))
    }
    if (!agrees || !fill(state, out)) jsKernels.gaussianPairs(state, out)
  }
}

/** What the pipeline uses: the C kernels when built, else the JavaScript ones (SEEDSCOPE_KERNELS=js forces them). */
export const kernels: Kernels = (process.env.SEEDSCOPE_KERNELS === 'js' ? undefined : loadNativeKernels()) ?? jsKernels

/**
 * Read-only file mappings (native/kernels/mapping.c), so that shard readers hand the kernels the page cache itself
 * instead of a copy of it; undefined with the JavaScript kernels, whose readers copy.
 */
export interface FileMapping {
  /** Bytes [offset, offset + length) of the open file fd. The file must not shrink while mapped. */
  map(fd: number, offset: number, length: number): Uint8Array
  /** Unmap a view map returned, now: its memory (and every view of it) becomes empty. */
  unmap(view: Uint8Array): void
}

const mapping = nativeExports<{ mapFile: FileMapping['map']; unmapFile: FileMapping['unmap'] }>()
export const fileMapping: FileMapping | undefined = mapping && { map: mapping.mapFile, unmap: mapping.unmapFile }

/**
 * `length` zeroed bytes at an address that is a multiple of `alignment` (native/kernels/mapping.c), for O_DIRECT
 * writes (src/io/direct-write.ts); undefined with the JavaScript kernels, whose writers go through the page cache.
 */
export const alignedBytes: ((length: number, alignment: number) => Uint8Array) | undefined =
  nativeExports<{ alignedBytes: (length: number, alignment: number) => Uint8Array }>()?.alignedBytes

/**
 * The addon's exports for native code outside the statistics kernels (src/model/runtime.ts's onnxruntime binding,
 * native/kernels/ort.c), or undefined where the JavaScript kernels run.
 */
export function nativeExports<T>(): T | undefined {
  return kernels.name === 'native' ? nativeAddon<T>() : undefined
}

/**
 * The correlation GEMM on Intel AMX tiles (native/kernels/amx.c): out = A·Bᵀ like src/stats/gemm.ts's `Gemm`, float32
 * accuracy from three bf16 parts per value. src/model/gemm.ts offers it as the `amx` backend.
 */
export interface AmxGemm {
  /** Why it cannot run here (one line), or null when it can. */
  readonly problem: string | null
  gemm(a: Float32Array, b: Float32Array, m: number, n: number, k: number, out: Float32Array, threads: number): void
  /**
   * src/stats/gemm.ts's ShiftedProduct on the tiles: the shift is applied while the values are packed into them. With
   * round16 (always when both chunks are float16), the shifted values are rounded to 16 significant bits.
   */
  shiftedProduct(
    a: BlobRows, b: BlobRows | null, tokens: number, shiftA: Float64Array, shiftB: Float64Array, shiftFromChunk: 0 | 1,
    out: Float32Array, sumA: Float64Array, sumSqA: Float64Array, sumB: Float64Array, sumSqB: Float64Array, threads: number,
    round16: 0 | 1,
  ): boolean
}

export const amxGemm: AmxGemm = kernels.name === 'native' ? loadAmxGemm() : {
  problem: process.env.SEEDSCOPE_KERNELS === 'js' ? 'SEEDSCOPE_KERNELS=js turns the native kernels off' : 'native/kernels is not built (run make native)',
  gemm: notLoaded,
  shiftedProduct: notLoaded,
}

function notLoaded(): never {
  throw new Error('gemm (amx): the native kernels are not loaded')
}

function loadAmxGemm(): AmxGemm {
  const addon = nativeAddon<{ amxProblem(): string | null; amxGemm: AmxGemm['gemm']; amxShiftedProduct: AmxGemm['shiftedProduct'] }>()
  return { problem: addon.amxProblem(), gemm: addon.amxGemm, shiftedProduct: addon.amxShiftedProduct }
}

/** A neuron-major Float32Array [rows, tokens] seen as blobs, for kernels that take either. */
export function float32Blobs(values: Float32Array, tokens: number): BlobRows {
  const rows = tokens > 0 ? values.length / tokens : 0
  const offsets = new Float64Array(rows)
  for (let i = 0; i < rows; i++) offsets[i] = i * tokens * 4
  return { bytes: new Uint8Array(values.buffer, values.byteOffset, values.byteLength), offsets, bytesPerValue: 4 }
}
