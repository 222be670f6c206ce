// Bounds of the screened correlate (SPEC §3; bench/research/README.md). Every neuron, standardised to a unit
// vector u over the tokens, is known by its coordinates p in an orthonormal token-space basis and its residual
// norm ρ = √(1 − |p|²). For two neurons u_a·u_b = p_a·p_b + r_a·r_b with |r_a·r_b| ≤ ρ_aρ_b (Cauchy–Schwarz), so
// each correlation lies in [p_a·p_b − ρ_aρ_b, p_a·p_b + ρ_aρ_b]; the rotation baseline gets intervals likewise.
import type { Gemm } from '../gemm.js'

/** A seed's neurons in the shared basis. */
export interface Projection {
  coords: Float32Array  // [neurons, K] p̂: coordinates of the unit vector u in the orthonormal basis
  rho: Float64Array     // [neurons] residual norm √(1 − |p̂|²)
  live: Uint8Array      // [neurons] 0 for a dead (zero-variance) neuron: no correlation, no candidates
  k: number
}

/** Partners that may hold a row's or a column's maximum: CSR over A's neurons, B's indices ascending. */
export interface Candidates {
  rowStart: Int32Array  // [N_a + 1]
  cols: Int32Array      // [count]
}

// Rows of the bound matrix per GEMM, to keep a block at ~64 MB whatever N_b is.
const BLOCK_VALUES = 1 << 24

/**
 * The candidate pairs (i, j): UB_ij reaches the best lower bound of row i or of column j. The exact maximum of
 * every row and column lies among them, since the true maximum is at least every lower bound. `margin` widens
 * every bound for the rounding of the float32 products.
 */
export function screenPartners(a: Projection, b: Projection, gemm: Gemm, margin: number): Candidates {
  const nA = a.rho.length, nB = b.rho.length
  const rowLower = new Float64Array(nA).fill(-Infinity), colLower = new Float64Array(nB).fill(-Infinity)
  const sweep = (visit: (i: number, j: number, approx: number, slack: number) => void) =>
    forEachProductRow(a, b.coords, nB, gemm, (i, row) => {
      if (!a.live[i]) return
      const rhoA = a.rho[i]
      for (let j = 0; j < nB; j++) if (b.live[j]) visit(i, j, row[j], rhoA * b.rho[j] + margin)
    })
  sweep((i, j, approx, slack) => {
    const lower = approx - slack
    if (lower > rowLower[i]) rowLower[i] = lower
    if (lower > colLower[j]) colLower[j] = lower
  })
  const rowStart = new Int32Array(nA + 1)
  let cols = new Int32Array(Math.max(16, 4 * nA))
  let count = 0, current = 0
  sweep((i, j, approx, slack) => {
    const upper = approx + slack
    if (upper < rowLower[i] && upper < colLower[j]) return
    while (current < i) rowStart[++current] = count
    if (count === cols.length) {
      const grown = new Int32Array(cols.length * 2)
      grown.set(cols)
      cols = grown
    }
    cols[count++] = j
  })
  while (current < nA) rowStart[++current] = count
  return { rowStart, cols: cols.slice(0, count) }
}

/**
 * One rotated layer of a seed as the baseline's bounds see it. Rotated direction k is b̃_k = Σ_j R_kj (b_j − μ_j)
 * with variance σ_k² (n times it); in the basis, its cross product with a unit anchor u is t_k·p̂ + e_k·r with
 * |e_k| = slack_k exactly computable from σ_k² and t_k.
 */
export interface RotatedFrame {
  t: Float32Array          // [d, K] t_k = Σ_j R_kj w_j p̂_j, w_j = √(C_jj)·|z_j|
  slack: Float64Array      // [d] bound on the residual part's norm
  invSigma: Float64Array   // [d] 1/σ_k (NaN for a direction of zero variance)
}

/**
 * Interval of max_k corr(anchor, b̃_k) for every anchor neuron: [lo, hi] per anchor (NaN for a dead anchor).
 * `margin` widens both ends for rounding.
 */
export function baselineInterval(anchor: Projection, frame: RotatedFrame, gemm: Gemm, margin: number, lo: Float64Array, hi: Float64Array): void {
  const d = frame.invSigma.length
  forEachProductRow(anchor, frame.t, d, gemm, (g, row) => {
    if (!anchor.live[g]) {
      lo[g] = hi[g] = NaN
      return
    }
    const rho = anchor.rho[g]
    let best = -Infinity, bestHi = -Infinity
    for (let k = 0; k < d; k++) {
      const inv = frame.invSigma[k]
      if (inv !== inv) continue
      const top = row[k], spread = frame.slack[k] * rho
      const l = (top - spread) * inv, h = (top + spread) * inv
      if (l > best) best = l
      if (h > bestHi) bestHi = h
    }
    lo[g] = best - margin
    hi[g] = bestHi + margin
  })
}

/** Row i of the product p·otherᵀ (`width` columns) for each neuron i of p, computed a block of rows at a time. */
function forEachProductRow(p: Projection, other: Float32Array, width: number, gemm: Gemm, visit: (i: number, row: Float32Array) => void): void {
  const n = p.rho.length
  const rows = Math.max(1, Math.min(n, Math.floor(BLOCK_VALUES / width)))
  const block = new Float32Array(rows * width)
  for (let i0 = 0; i0 < n; i0 += rows) {
    const count = Math.min(rows, n - i0)
    gemm(p.coords.subarray(i0 * p.k, (i0 + count) * p.k), other, count, width, p.k, block)
    for (let i = 0; i < count; i++) visit(i0 + i, block.subarray(i * width, (i + 1) * width))
  }
}

/**
 * The frame of one rotated layer: `r` ([d, d] R as float32), its directions' 1/σ from the full computation's
 * RotatedLayers (the same numbers), `w` ([d] √C_jj·|z_j|) and the layer's coordinates p̂ ([d, K]).
 */
export function rotatedFrame(r: Float32Array, invSigma: Float64Array, w: Float64Array, layerCoords: Float32Array, k: number, gemm: Gemm): RotatedFrame {
  const d = invSigma.length
  const rw = new Float32Array(d * d)
  for (let row = 0; row < d; row++) for (let j = 0; j < d; j++) rw[row * d + j] = r[row * d + j] * w[j]
  const coordsT = new Float32Array(k * d)
  for (let j = 0; j < d; j++) for (let c = 0; c < k; c++) coordsT[c * d + j] = layerCoords[j * k + c]
  const t = new Float32Array(d * k)
  gemm(rw, coordsT, d, k, d, t)
  const slack = new Float64Array(d)
  for (let row = 0; row < d; row++) {
    const variance = 1 / (invSigma[row] * invSigma[row])
    let captured = 0
    for (let c = 0; c < k; c++) captured += t[row * k + c] * t[row * k + c]
    // σ² and t come from float32 products (~1e-6 relative): a floor of 1e-5·σ² keeps the residual bound
    // above the true one even where the basis captures the direction almost entirely.
    slack[row] = Math.sqrt(Math.max(0, variance - captured) + VARIANCE_FLOOR * variance)
  }
  return { t, slack, invSigma }
}

const VARIANCE_FLOOR = 1e-5
