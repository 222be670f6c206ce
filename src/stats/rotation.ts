// Random bases for the rotation baseline (SPEC §3): per layer of the rotated model, a d_mlp×d_mlp matrix R whose
// rows are the random directions. Deterministic in (seed, layer), so every block and every worker that needs
// layer l's R regenerates the same one, and the seed recorded in the results reproduces it.

import { gemm64Fallback } from './gemm.js'
import { kernels } from './kernels.js'
import { xoshiroState } from './random.js'

/**
 * `gaussian-unit-rows`: i.i.d. N(0,1) entries, each row scaled to unit norm: the study's choice (not
 * orthogonal; its code says "consider making this actually orthogonal"), and the default for comparability.
 * `orthogonal`: the same Gaussian rows made orthonormal by Gram–Schmidt (Haar-distributed; ~4·d³ flops:
 * 30–50 s per layer at d = 3072 in pure JS on the shared 2-core machine, so RotatedLayers caches it).
 */
export type RotationKind = 'gaussian-unit-rows' | 'orthogonal'

export const ROTATION_KINDS: readonly RotationKind[] = ['gaussian-unit-rows', 'orthogonal']

/** R for one layer, [d, d] row-major: rotated direction k is Σ_j R[k, j] · b_j. */
export function rotationMatrix(d: number, kind: RotationKind, seed: number, layer: number): Float64Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`rotation: seed must be an integer in [0, 2^32), got ${seed}`)
  }
  const r = new Float64Array(d * d)
  kernels.gaussianPairs(xoshiroState(seed, layer), r)  // i.i.d. N(0, 1), random.ts's draws for (seed, layer)
  if (kind === 'gaussian-unit-rows') {
    for (let k = 0; k < d; k++) normaliseRow(r, k, d)
  } else if (kind === 'orthogonal') {
    orthonormaliseRows(r, d)
  } else {
    throw new Error(`rotation: unknown kind "${String(kind)}" (expected ${ROTATION_KINDS.join(' | ')})`)
  }
  return r
}

// Block Gram–Schmidt over the rows, each block projected off the finished rows twice ("twice is enough":
// orthogonal to working precision) with GEMMs, then modified Gram–Schmidt (also twice) inside the block. Always
// the pure-JS float64 GEMM, never an injected backend: R must be the same for a seed on every machine.
const GS_BLOCK = 64

function orthonormaliseRows(r: Float64Array, d: number): void {
  for (let k0 = 0; k0 < d; k0 += GS_BLOCK) {
    const rows = Math.min(GS_BLOCK, d - k0)
    const block = r.subarray(k0 * d, (k0 + rows) * d)  // [rows, d]
    if (k0 > 0) {
      const done = r.subarray(0, k0 * d)                 // [k0, d] orthonormal rows
      const doneT = new Float64Array(d * k0)             // [d, k0]
      for (let q = 0; q < k0; q++) for (let j = 0; j < d; j++) doneT[j * k0 + q] = done[q * d + j]
      const coef = new Float64Array(rows * k0), projection = new Float64Array(rows * d)
      for (let pass = 0; pass < 2; pass++) {
        gemm64Fallback(block, done, rows, k0, d, coef)          // coef[i, q] = x_i · Q_q
        gemm64Fallback(coef, doneT, rows, d, k0, projection)    // projection[i] = Σ_q coef[i, q] Q_q
        for (let e = 0; e < block.length; e++) block[e] -= projection[e]
      }
    }
    for (let k = k0; k < k0 + rows; k++) {
      const rk = k * d
      for (let pass = 0; pass < 2; pass++) {
        for (let q = k0; q < k; q++) {
          const rq = q * d
          let dot = 0
          for (let j = 0; j < d; j++) dot += r[rq + j] * r[rk + j]
          for (let j = 0; j < d; j++) r[rk + j] -= dot * r[rq + j]
        }
      }
      normaliseRow(r, k, d)
    }
  }
}

function normaliseRow(r: Float64Array, k: number, d: number): void {
  let ss = 0
  for (let j = k * d; j < (k + 1) * d; j++) ss += r[j] * r[j]
  const inv = 1 / Math.sqrt(ss)
  for (let j = k * d; j < (k + 1) * d; j++) r[j] *= inv
}
