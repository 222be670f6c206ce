// The screened correlate's shared token-space basis (SPEC §3; design and measurements in
// bench/research/README.md). Each (seed, layer) contributes its top principal directions, k rows Vᵀ·Z_layer over
// the tokens; the union of those rows is compressed to its top K' directions. Any basis gives valid bounds, a good
// one tight ones, so the eigenvectors here need not be converged: they only have to span a useful subspace.
import { EigenvalueDecomposition, Matrix } from 'ml-matrix'
import type { Gemm } from '../gemm.js'
import { seededRandom, gaussianMatrix } from '../random.js'

// Subspace-iteration steps per layer. The directions only steer how tight the bounds are, never whether they
// hold, and on the bundled family 12 steps give the same pruning as exact eigenvectors (bench/research).
const ITERATIONS = 12

/**
 * k orthonormal rows [k, d] spanning (approximately) the top eigenvectors of a symmetric d×d matrix `g`, by
 * subspace iteration from a seeded random start: rows ← rows·g, re-orthonormalised each step.
 */
export function topDirections(g: Float32Array, d: number, k: number, gemm: Gemm, seed: number): Float32Array {
  const rows = Math.min(k, d)
  const x = Float32Array.from(gaussianMatrix(rows, d, seededRandom(seed, 0)))
  orthonormaliseRows(x, rows, d)
  const next = new Float32Array(rows * d)
  for (let step = 0; step < ITERATIONS; step++) {
    gemm(x, g, rows, d, d, next)  // x·gᵀ = x·g (g symmetric)
    x.set(next)
    orthonormaliseRows(x, rows, d)
  }
  return x
}

/** Modified Gram–Schmidt on the rows, in float64; a row that vanishes (rank deficiency) is left zero. */
function orthonormaliseRows(x: Float32Array, rows: number, d: number): void {
  const row = new Float64Array(d)
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < d; j++) row[j] = x[i * d + j]
    for (let p = 0; p < i; p++) {
      let dot = 0
      for (let j = 0; j < d; j++) dot += row[j] * x[p * d + j]
      for (let j = 0; j < d; j++) row[j] -= dot * x[p * d + j]
    }
    let norm = 0
    for (let j = 0; j < d; j++) norm += row[j] * row[j]
    const scale = norm > 1e-24 ? 1 / Math.sqrt(norm) : 0
    for (let j = 0; j < d; j++) x[i * d + j] = row[j] * scale
  }
}

/**
 * The correlation matrix of one layer from its centred scatter C (n·cov, [d, d]): C_jl / √(C_jj C_ll), with
 * zero rows and columns for dead neurons. Float32, for the subspace iteration's GEMM.
 */
export function correlationMatrix(scatter: Float64Array, d: number): Float32Array {
  const inv = new Float64Array(d)
  for (let j = 0; j < d; j++) inv[j] = scatter[j * d + j] > 0 ? 1 / Math.sqrt(scatter[j * d + j]) : 0
  const out = new Float32Array(d * d)
  for (let j = 0; j < d; j++) for (let l = 0; l < d; l++) out[j * d + l] = scatter[j * d + l] * inv[j] * inv[l]
  return out
}

/**
 * From the Gram matrix of the union's rows Y ([k0, k0], Σ Y Yᵀ over the tokens), the K' × k0 matrix
 * W = Λ^{-1/2} Uᵀ of its top eigenpairs, so that Q = W·Y has orthonormal rows. Directions with eigenvalue below
 * 1e-9 of the largest carry no energy and are dropped, so Q may have fewer than K' rows.
 */
export function compressBasis(gram: Float64Array, k0: number, kPrime: number): { w: Float32Array; rows: number; energy: number } {
  const { values, vectors } = symmetricEigen(gram, k0)
  const order = Array.from(values.keys()).sort((p, q) => values[q] - values[p])
  const top = values[order[0]] ?? 0
  const kept = order.slice(0, kPrime).filter((i) => values[i] > 1e-9 * top)
  const w = new Float32Array(kept.length * k0)
  kept.forEach((i, r) => {
    const scale = 1 / Math.sqrt(values[i])
    for (let j = 0; j < k0; j++) w[r * k0 + j] = vectors[j * k0 + i] * scale
  })
  let total = 0
  for (const v of values) total += Math.max(0, v)
  const energy = total > 0 ? kept.reduce((sum, i) => sum + values[i], 0) / total : 0
  return { w, rows: kept.length, energy }
}

/**
 * H^{-1/2} for a symmetric positive definite [k, k] matrix H (the accumulated Gram of the basis rows Q, which is
 * the identity up to rounding): it turns projections onto Q into coordinates in an exactly orthonormal basis of
 * the same span, so the bounds' Cauchy–Schwarz step does not depend on Q's rounding.
 */
export function inverseSquareRoot(h: Float64Array, k: number): Float64Array {
  const { values, vectors } = symmetricEigen(h, k)
  const out = new Float64Array(k * k)
  for (let e = 0; e < k; e++) {
    if (!(values[e] > 0)) throw new Error(`screen: the basis Gram matrix is not positive definite (eigenvalue ${values[e]})`)
    const s = 1 / Math.sqrt(values[e])
    for (let i = 0; i < k; i++) {
      const vi = vectors[i * k + e] * s
      for (let j = 0; j < k; j++) out[i * k + j] += vi * vectors[j * k + e]
    }
  }
  return out
}

/** Eigenvalues and eigenvectors (column e of `vectors` belongs to values[e]) of a symmetric matrix: ml-matrix's. */
function symmetricEigen(a: Float64Array, k: number): { values: Float64Array; vectors: Float64Array } {
  const m = new Matrix(k, k)
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) m.set(i, j, (a[i * k + j] + a[j * k + i]) / 2)
  const eig = new EigenvalueDecomposition(m, { assumeSymmetric: true })
  const v = eig.eigenvectorMatrix
  const vectors = new Float64Array(k * k)
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) vectors[i * k + j] = v.get(i, j)
  return { values: Float64Array.from(eig.realEigenvalues), vectors }
}

/** dst[c·rows + r] = src[r·cols + c]: [rows, cols] → [cols, rows], in tiles that stay in cache. */
export function transpose(src: Float32Array, rows: number, cols: number, dst: Float32Array): Float32Array {
  const TILE = 64
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE)
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE)
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c]
    }
  }
  return dst
}
