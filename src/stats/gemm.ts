// The correlation GEMM (SPEC §3, §7): out = A·Bᵀ with both operands neuron-major, [neurons, tokens] row-major,
// so the contraction runs along the contiguous axis of both. A pure-JS fallback lives here; the correlate stage
// plugs in a faster backend (onnxruntime, native BLAS) through the same signature.
import type { ChunkRows } from './pearson.js'

/**
 * out[m×n] = a[m×k] · b[n×k]ᵀ, all row-major: out[i·n + j] = Σ_p a[i·k + p] · b[j·k + p].
 * Overwrites `out` (does not accumulate into it). In seedscope's use a = [neurons of A, tokens] and
 * b = [neurons of B, tokens]: the chunk's cross-product matrix Σ_t a_i(t)·b_j(t).
 */
export interface Gemm {
  (a: Float32Array, b: Float32Array, m: number, n: number, k: number, out: Float32Array): void
  /** Where the backend has it (AMX): a chunk's shift and product in one pass, see {@link ShiftedProduct}. */
  shifted?: ShiftedProduct
}

/** Each row's Σ and Σ² (float64) of its shifted values. */
export interface RowSums {
  sum: Float64Array
  sumSq: Float64Array
}

/**
 * pearson.ts's shiftChunk on both chunks, then the product of the shifted rows, without writing the shifted copies:
 * out[i·n + j] = Σ_t x_i(t)·y_j(t), x = float32(a − shift.a), y = float32(b − shift.b), with each row's sums, the same
 * numbers the two steps give. `b` undefined: B is A (a symmetric product; B's shift and sums are A's). With
 * `shift.fromChunk`, each row's mean over this chunk becomes its shift (written into shift.a, shift.b). Returns
 * false when a shifted value is not finite; the caller then takes the two steps, which name the value.
 */
export type ShiftedProduct = (
  a: ChunkRows, b: ChunkRows | undefined, tokens: number, shift: { a: Float64Array; b: Float64Array; fromChunk: boolean },
  out: Float32Array, sums: { a: RowSums; b: RowSums },
) => boolean

/**
 * out[m×n] = a[m×k] · b[k×n], all row-major: out[i·n + j] = Σ_p a[i·k + p] · b[p·n + j]. For products that
 * contract over the rows of a neuron-major chunk (its neurons), which {@link Gemm} would need transposed first.
 */
export type GemmNN = (a: Float32Array, b: Float32Array, m: number, n: number, k: number, out: Float32Array) => void

/** The same contract in float64, for the rotation baseline's products of accumulated sums. */
export type Gemm64 = (a: Float64Array, b: Float64Array, m: number, n: number, k: number, out: Float64Array) => void

// Panel sizes: a 64×KC slice of each operand (64 KiB of float32 at KC 256) stays in L2 while every 4×4 tile
// of the panel pair streams its two 4-row strips (4 KiB each) through L1.
const PANEL = 64
const KC = 256

/**
 * Pure-JS fallback for {@link Gemm}: panels for cache reuse, 4×4 register tiles inside. Products are summed in
 * float64 (JS arithmetic is double) and rounded to float32 once, when the tile is stored, so it is more
 * accurate than a float32 BLAS, never less.
 */
export const gemmFallback: Gemm = (a, b, m, n, k, out) => {
  checkShapes('gemm', a.length, b.length, out.length, m, n, k)
  const tile = new Float64Array(PANEL * PANEL)
  for (let i0 = 0; i0 < m; i0 += PANEL) {
    const mi = Math.min(PANEL, m - i0)
    for (let j0 = 0; j0 < n; j0 += PANEL) {
      const nj = Math.min(PANEL, n - j0)
      tile.fill(0)
      for (let p0 = 0; p0 < k; p0 += KC) accumulatePanel32(a, b, k, i0, mi, j0, nj, p0, Math.min(k, p0 + KC), tile)
      storeTile(tile, out, n, i0, mi, j0, nj)
    }
  }
}

/**
 * Pure-JS {@link Gemm64}: the same loops on Float64Array. The kernel is a second copy, not a shared function:
 * called with both element types, V8 made the float32 path 22% slower (measured in CPU time, 4.1 → 3.2 GFLOP/s).
 */
export const gemm64Fallback: Gemm64 = (a, b, m, n, k, out) => {
  checkShapes('gemm64', a.length, b.length, out.length, m, n, k)
  const tile = new Float64Array(PANEL * PANEL)
  for (let i0 = 0; i0 < m; i0 += PANEL) {
    const mi = Math.min(PANEL, m - i0)
    for (let j0 = 0; j0 < n; j0 += PANEL) {
      const nj = Math.min(PANEL, n - j0)
      tile.fill(0)
      for (let p0 = 0; p0 < k; p0 += KC) accumulatePanel64(a, b, k, i0, mi, j0, nj, p0, Math.min(k, p0 + KC), tile)
      storeTile(tile, out, n, i0, mi, j0, nj)
    }
  }
}

function storeTile(
  tile: Float64Array, out: Float32Array | Float64Array, n: number, i0: number, mi: number, j0: number, nj: number,
): void {
  for (let i = 0; i < mi; i++) {
    for (let j = 0; j < nj; j++) out[(i0 + i) * n + j0 + j] = tile[i * PANEL + j]
  }
}

function checkShapes(name: string, aLen: number, bLen: number, outLen: number, m: number, n: number, k: number): void {
  if (aLen < m * k || bLen < n * k || outLen < m * n) {
    throw new Error(
      `${name}: operands too short for m=${m} n=${n} k=${k}: a has ${aLen} (need ${m * k}), ` +
        `b has ${bLen} (need ${n * k}), out has ${outLen} (need ${m * n})`,
    )
  }
}

// tile[i·PANEL + j] += Σ_{p0 ≤ p < p1} a[(i0+i)·k + p] · b[(j0+j)·k + p] for the panel's rows and columns.
function accumulatePanel32(
  a: Float32Array, b: Float32Array, k: number,
  i0: number, mi: number, j0: number, nj: number, p0: number, p1: number, tile: Float64Array,
): void {
  const mi4 = mi - (mi % 4)
  const nj4 = nj - (nj % 4)
  for (let i = 0; i < mi4; i += 4) {
    const a0 = (i0 + i) * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k
    for (let j = 0; j < nj4; j += 4) {
      const b0 = (j0 + j) * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0
      for (let p = p0; p < p1; p++) {
        const x0 = a[a0 + p], x1 = a[a1 + p], x2 = a[a2 + p], x3 = a[a3 + p]
        const y0 = b[b0 + p], y1 = b[b1 + p], y2 = b[b2 + p], y3 = b[b3 + p]
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3
      }
      const t0 = i * PANEL + j, t1 = t0 + PANEL, t2 = t1 + PANEL, t3 = t2 + PANEL
      tile[t0] += c00; tile[t0 + 1] += c01; tile[t0 + 2] += c02; tile[t0 + 3] += c03
      tile[t1] += c10; tile[t1 + 1] += c11; tile[t1 + 2] += c12; tile[t1 + 3] += c13
      tile[t2] += c20; tile[t2 + 1] += c21; tile[t2 + 2] += c22; tile[t2 + 3] += c23
      tile[t3] += c30; tile[t3 + 1] += c31; tile[t3 + 2] += c32; tile[t3 + 3] += c33
    }
  }
  // Ragged edges (rows or columns beyond the last full 4-block): plain dot products.
  for (let i = 0; i < mi; i++) {
    const ai = (i0 + i) * k
    for (let j = i < mi4 ? nj4 : 0; j < nj; j++) {
      const bj = (j0 + j) * k
      let s = 0
      for (let p = p0; p < p1; p++) s += a[ai + p] * b[bj + p]
      tile[i * PANEL + j] += s
    }
  }
}

// The same kernel for Float64Array (see gemm64Fallback for why it is a copy).
function accumulatePanel64(
  a: Float64Array, b: Float64Array, k: number,
  i0: number, mi: number, j0: number, nj: number, p0: number, p1: number, tile: Float64Array,
): void {
  const mi4 = mi - (mi % 4)
  const nj4 = nj - (nj % 4)
  for (let i = 0; i < mi4; i += 4) {
    const a0 = (i0 + i) * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k
    for (let j = 0; j < nj4; j += 4) {
      const b0 = (j0 + j) * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0
      for (let p = p0; p < p1; p++) {
        const x0 = a[a0 + p], x1 = a[a1 + p], x2 = a[a2 + p], x3 = a[a3 + p]
        const y0 = b[b0 + p], y1 = b[b1 + p], y2 = b[b2 + p], y3 = b[b3 + p]
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3
      }
      const t0 = i * PANEL + j, t1 = t0 + PANEL, t2 = t1 + PANEL, t3 = t2 + PANEL
      tile[t0] += c00; tile[t0 + 1] += c01; tile[t0 + 2] += c02; tile[t0 + 3] += c03
      tile[t1] += c10; tile[t1 + 1] += c11; tile[t1 + 2] += c12; tile[t1 + 3] += c13
      tile[t2] += c20; tile[t2 + 1] += c21; tile[t2 + 2] += c22; tile[t2 + 3] += c23
      tile[t3] += c30; tile[t3 + 1] += c31; tile[t3 + 2] += c32; tile[t3 + 3] += c33
    }
  }
  for (let i = 0; i < mi; i++) {
    const ai = (i0 + i) * k
    for (let j = i < mi4 ? nj4 : 0; j < nj; j++) {
      const bj = (j0 + j) * k
      let s = 0
      for (let p = p0; p < p1; p++) s += a[ai + p] * b[bj + p]
      tile[i * PANEL + j] += s
    }
  }
}
