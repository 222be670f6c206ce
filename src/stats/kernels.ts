// Per-element kernels of the statistics: the loops that touch every activation once (shift a chunk for the
// correlation GEMM; extract's moments and scatter). They run in C when the addon native/kernels is built
// (`make native`: only a C compiler is needed), else in JavaScript. Both implementations follow the same contract
// and the same summation order, so they return bit-identical numbers; the tests hold them to it.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { decodeF16 } from '../io/safetensors-dtypes.js'

export interface Kernels {
  readonly name: 'native' | 'js'
  /**
   * Shift rows: dst[i·tokens + t] = float32(src[i·tokens + t] − shift[i]) for `rows` rows of `tokens` values,
   * with sum[i] = Σ_t dst and sumSq[i] = Σ_t dst² in float64. Returns −1, or the flat index i·tokens + t of the
   * first non-finite shifted value (then rows after i are left untouched).
   */
  shiftRows(src: Float32Array, rows: number, tokens: number, shift: Float64Array, dst: Float32Array, sum: Float64Array, sumSq: Float64Array): number
  /** The same, row i being the little-endian float32 (4) or float16 (2) blob at byte offsets[i] of `bytes`. */
  shiftBlobs(bytes: Uint8Array, offsets: Float64Array, bytesPerValue: 2 | 4, tokens: number, shift: Float64Array, dst: Float32Array, sum: Float64Array, sumSq: Float64Array): number
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
}

function checkShift(srcLength: number, rows: number, tokens: number, shift: Float64Array, dst: Float32Array, sum: Float64Array, sumSq: Float64Array): void {
  if (srcLength < rows * tokens || dst.length < rows * tokens || shift.length < rows || sum.length < rows || sumSq.length < rows) {
    throw new RangeError(`kernels: shift of ${rows} rows × ${tokens} tokens given src ${srcLength}, dst ${dst.length}, shift ${shift.length}, sum ${sum.length}, sumSq ${sumSq.length}`)
  }
}

// src/stats/kernels.ts and dist/stats/kernels.js both sit two levels below the repository root.
const ADDON = fileURLToPath(new URL('../../native/kernels/build/Release/kernels.node', import.meta.url))

/** The C kernels, or undefined when the addon is not built here (a load failure of a built addon throws). */
export function loadNativeKernels(): Kernels | undefined {
  if (!existsSync(ADDON)) return undefined
  const addon = createRequire(import.meta.url)(ADDON) as Omit<Kernels, 'name'>
  return { name: 'native', shiftRows: addon.shiftRows, shiftBlobs: addon.shiftBlobs }
}

/** What the pipeline uses: the C kernels when built, else the JavaScript ones (SEEDSCOPE_KERNELS=js forces them). */
export const kernels: Kernels = (process.env.SEEDSCOPE_KERNELS === 'js' ? undefined : loadNativeKernels()) ?? jsKernels
