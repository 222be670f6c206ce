// The random-rotation baseline (SPEC §3), from accumulated sums only: no second pass over the tokens.
//
// Definition. For the rotated model m, per layer ℓ, R_ℓ = rotationMatrix(d_mlp, kind, seed, ℓ) and the rotated
// activations b̃ = R_ℓ · b_ℓ (b_ℓ: the layer's d_mlp neurons at one token). For an anchor neuron i of the other
// model, the baseline for layer ℓ is max_k corr(a_i, b̃_k), the Pearson correlation over the pair's valid
// tokens; the baseline is the max over all layers of m. This is the study's `--baseline rotation` statistic
// (correlations_fast.py: max over R·b in place of max over b), except that the study rounds R to float16 and
// we keep it in float64.
//
// Computation, with centred sums (everything below is n × a covariance, hence shift-free):
//   D   = Σ (a − ā)(b_ℓ − b̄_ℓ)ᵀ    the pair's cross block, from PearsonAccumulator: Σxyᵀ − Σx Σyᵀ / n
//   C_ℓ = Σ (b_ℓ − b̄_ℓ)(b_ℓ − b̄_ℓ)ᵀ  from WithinLayerMoments of model m
//   n·cov(a_i, b̃_k) = (D R_ℓᵀ)_ik,   n·var(b̃_k) = (R_ℓ C_ℓ R_ℓᵀ)_kk,   n·var(a_i) from the accumulator
//   r̃_ik = (D R_ℓᵀ)_ik / √(n·var(a_i) · n·var(b̃_k))
// Both sides use the same tokens, so the accumulators must have the same n (checked).

import { gemm64Fallback, type Gemm, type Gemm64 } from './gemm.js'
import { kernels } from './kernels.js'
import { centredScatter, type ChunkRows, PearsonAccumulator, type PearsonState } from './pearson.js'
import { rotationMatrix, type RotationKind } from './rotation.js'

/**
 * The within-layer second moments of one model: per layer the d_mlp×d_mlp matrix Σ b bᵀ (on shifted values)
 * and Σ b. It is a PearsonAccumulator of each layer against itself, so it shares that shifting, merging and
 * state. Memory: L·d_mlp²·8 bytes (0.9 GiB for GPT-2 small). Accumulate it once per model; every pair reuses it.
 */
export class WithinLayerMoments {
  readonly dMlp: number
  readonly firstLayer: number
  readonly nLayers: number
  private readonly layers: PearsonAccumulator[]

  /**
   * Covers layers [firstLayer, firstLayer + nLayers) of a model with d_mlp = dMlp. `shift` ([nLayers·d_mlp])
   * fixes the reference values; by default each neuron's mean over the first chunk, as in PearsonAccumulator.
   * `saved` (fromState's): each layer's saved state, taken as it is.
   */
  constructor(options: { dMlp: number; nLayers: number; firstLayer?: number; gemm?: Gemm; shift?: Float64Array }, saved?: PearsonState[]) {
    const { dMlp, nLayers, firstLayer = 0, gemm, shift } = options
    if (shift && shift.length !== nLayers * dMlp) {
      throw new Error(`within-layer: shift has ${shift.length} values for ${nLayers * dMlp} neurons`)
    }
    this.dMlp = dMlp
    this.firstLayer = firstLayer
    this.nLayers = nLayers
    this.layers = []
    if (saved && saved.length !== nLayers) throw new Error(`within-layer: the saved state has ${saved.length} layers, not ${nLayers}`)
    for (let l = 0; l < nLayers; l++) {
      const range = { start: (firstLayer + l) * dMlp, count: dMlp }
      if (saved) {
        const { a, b } = saved[l]
        if (a.start !== range.start || a.count !== dMlp || b.start !== range.start || b.count !== dMlp) {
          throw new Error(`within-layer: the saved layer ${firstLayer + l} covers A[${a.start}+${a.count}]×B[${b.start}+${b.count}], not layer ${firstLayer + l} of d_mlp ${dMlp}`)
        }
        this.layers.push(PearsonAccumulator.fromState(saved[l], gemm))
        continue
      }
      const layerShift = shift?.subarray(l * dMlp, (l + 1) * dMlp)
      this.layers.push(new PearsonAccumulator({ a: range, b: range, gemm, shiftA: layerShift, shiftB: layerShift }))
    }
  }

  /** Moments that go on from a saved state, taking its arrays as their own (see PearsonAccumulator.fromState). */
  static fromState(state: WithinLayerState, gemm?: Gemm): WithinLayerMoments {
    const { dMlp, nLayers, firstLayer } = state
    return new WithinLayerMoments({ dMlp, nLayers, firstLayer, gemm }, state.layers)
  }

  get n(): number {
    return this.layers[0]?.n ?? 0
  }

  /** A copy of the state. */
  state(): WithinLayerState {
    const layers = this.layers.map((acc) => acc.state())
    return { dMlp: this.dMlp, firstLayer: this.firstLayer, nLayers: this.nLayers, layers }
  }

  /** The live state (not a copy; L·d_mlp² floats): to write a checkpoint now. Do not keep or mutate it. */
  get sums(): Readonly<WithinLayerState> {
    return { dMlp: this.dMlp, firstLayer: this.firstLayer, nLayers: this.nLayers, layers: this.layers.map((acc) => acc.sums) }
  }

  /** Add a chunk of valid tokens: nLayers·d_mlp rows (the same layouts as PearsonAccumulator's chunks). */
  add(acts: ChunkRows, tokens: number): void {
    const d = this.dMlp
    const values = acts instanceof Float32Array ? acts.length : acts.offsets.length * tokens
    if (values !== this.nLayers * d * tokens) {
      throw new Error(`within-layer: chunk of ${values} values is not [${this.nLayers * d}, ${tokens}]`)
    }
    for (let l = 0; l < this.nLayers; l++) {
      const rows = acts instanceof Float32Array
        ? acts.subarray(l * d * tokens, (l + 1) * d * tokens)
        : { ...acts, offsets: acts.offsets.subarray(l * d, (l + 1) * d) }
      this.layers[l].add(rows, rows, tokens)
    }
  }

  merge(other: WithinLayerState | WithinLayerMoments): void {
    const o = other instanceof WithinLayerMoments ? other.state() : other
    if (o.dMlp !== this.dMlp || o.firstLayer !== this.firstLayer || o.nLayers !== this.nLayers) {
      throw new Error(`within-layer: cannot merge layers ${o.firstLayer}+${o.nLayers} (d_mlp ${o.dMlp}) into ` +
        `${this.firstLayer}+${this.nLayers} (d_mlp ${this.dMlp})`)
    }
    for (let l = 0; l < this.nLayers; l++) this.layers[l].merge(o.layers[l])
  }

  /** Per neuron of a (global) layer: its mean and n·Var (0 for a dead neuron), from the same sums. */
  neuronMoments(layer: number): { mean: Float64Array; scatter: Float64Array } {
    const s = this.accumulator(layer).sums
    const mean = s.shiftA.map((shift, j) => shift + s.sumA[j] / s.n)
    return { mean, scatter: centredScatter(s.sumA, s.sumSqA, s.n) }
  }

  /** C_ℓ = Σ (b − b̄)(b − b̄)ᵀ for a (global) layer: [d_mlp, d_mlp], n times the covariance matrix (rounded to float32 on request). */
  centredScatter(layer: number): Float64Array
  centredScatter(layer: number, type: Float32ArrayConstructor): Float32Array
  centredScatter(layer: number, type: Float32ArrayConstructor | Float64ArrayConstructor = Float64Array): Float32Array | Float64Array {
    const s = this.accumulator(layer).sums, d = this.dMlp
    const out = new type(d * d)
    kernels.centredCross(s.cross, s.b.count, s.sumA, s.sumB, s.n, 0, d, false, 0, d, out)
    return out
  }

  private accumulator(layer: number): PearsonAccumulator {
    const acc = this.layers[layer - this.firstLayer]
    if (!acc) {
      const last = this.firstLayer + this.nLayers - 1
      throw new Error(`within-layer: layer ${layer} is outside ${this.firstLayer}..${last}`)
    }
    return acc
  }
}

export interface WithinLayerState {
  dMlp: number
  firstLayer: number
  nLayers: number
  layers: PearsonState[]
}

export interface RotationOptions {
  kind: RotationKind        // 'gaussian-unit-rows' is the study's (and should be the config default)
  seed: number              // recorded with the results; layer ℓ's R depends on (seed, ℓ) only
  gemm?: Gemm               // D·Rᵀ and R·C in float32 (entries rounded: ~1e-7 relative, ample for a baseline, and the
                            // fast backend's speed); default: both in float64 with gemm64
  gemm64?: Gemm64           // without gemm: the float64 products; default the exact pure-JS fallback
  cacheMatrices?: boolean   // keep each layer's R once made (L·d_mlp² floats); default true
}

/** One rotated layer: R (float32 when the products run in float32) and 1/√(n·var) of each rotated direction. */
interface RotatedLayer {
  n: number
  matrix: Float64Array | Float32Array
  inverseRoot: Float64Array
}

/** One model seen through random directions: per layer R_ℓ and n·var of each rotated direction. */
export class RotatedLayers {
  readonly kind: RotationKind
  readonly seed: number
  readonly dMlp: number
  private readonly gemm64: Gemm64
  private readonly gemm?: Gemm
  private readonly within: WithinLayerMoments
  private readonly cache: boolean
  private readonly layers = new Map<number, RotatedLayer>()

  constructor(within: WithinLayerMoments, options: RotationOptions) {
    this.within = within
    this.kind = options.kind
    this.seed = options.seed
    this.dMlp = within.dMlp
    this.gemm64 = options.gemm64 ?? gemm64Fallback
    this.gemm = options.gemm
    this.cache = options.cacheMatrices ?? true
  }

  /** Tokens behind the rotated variances. */
  get n(): number {
    return this.within.n
  }

  /** R_ℓ, [d_mlp, d_mlp]: row k is rotated direction k. */
  matrix(layer: number): Float64Array {
    return rotationMatrix(this.dMlp, this.kind, this.seed, layer)
  }

  /** The element type rotate() wants its cross tiles in (the products' precision). */
  get tileType(): Float32ArrayConstructor | Float64ArrayConstructor {
    return this.gemm ? Float32Array : Float64Array
  }

  /**
   * cov = D·R_ℓᵀ for `rows` anchors, D = [rows, d_mlp] centred cross sums against layer ℓ (of {@link tileType}):
   * cov[i, k] is n·cov(anchor i, rotated direction k). Also returns 1/√(n·var) of each direction (NaN where 0).
   * `out` (of {@link tileType}, at least rows·d long) receives cov instead of new memory.
   */
  rotate(
    layer: number, cross: Float32Array | Float64Array, rows: number, out?: Float32Array | Float64Array,
  ): { cov: Float64Array | Float32Array; inverseRoot: Float64Array } {
    const d = this.dMlp
    const { matrix, inverseRoot } = this.layer(layer)
    const reuse = out && out instanceof this.tileType && out.length >= rows * d ? out.subarray(0, rows * d) : undefined
    if (matrix instanceof Float32Array) {
      const cov = (reuse as Float32Array | undefined) ?? new Float32Array(rows * d)
      this.gemm!(cross instanceof Float32Array ? cross : Float32Array.from(cross), matrix, rows, d, d, cov)
      return { cov, inverseRoot }
    }
    const cov = (reuse as Float64Array | undefined) ?? new Float64Array(rows * d)
    this.gemm64(cross instanceof Float64Array ? cross : Float64Array.from(cross), matrix, rows, d, d, cov)
    return { cov, inverseRoot }
  }

  /** R_ℓ (float32 when the products run in float32) and 1/√(n·var) of each rotated direction (NaN where 0). */
  directions(layer: number): { matrix: Float64Array | Float32Array; inverseRoot: Float64Array } {
    return this.layer(layer)
  }

  private layer(layer: number): RotatedLayer {
    const cached = this.layers.get(layer)
    if (cached && cached.n === this.n) return cached
    const r = this.matrix(layer)
    const r32 = this.gemm ? Float32Array.from(r) : undefined
    const scatter = this.scatterOf(layer, r, r32)
    const inverseRoot = scatter.map((v) => (v > 0 ? 1 / Math.sqrt(v) : NaN))
    const made = { n: this.n, matrix: r32 ?? r, inverseRoot }
    if (this.cache) this.layers.set(layer, made)
    return made
  }

  /** n·var((R_ℓ b)_k) = (R_ℓ C_ℓ R_ℓᵀ)_kk for each direction k; R·C in float32 when R is given rounded to it. */
  private scatterOf(layer: number, r: Float64Array, r32?: Float32Array): Float64Array {
    const d = this.dMlp
    let rc: Float32Array | Float64Array  // R·Cᵀ; the quadratic form below is the same for C and Cᵀ
    if (r32) {
      rc = new Float32Array(d * d)
      this.gemm!(r32, this.within.centredScatter(layer, Float32Array), d, d, d, rc)
    } else {
      rc = new Float64Array(d * d)
      this.gemm64(r, this.within.centredScatter(layer), d, d, d, rc)
    }
    const out = new Float64Array(d)
    for (let k = 0; k < d; k++) {
      let v = 0
      for (let j = k * d; j < (k + 1) * d; j++) v += rc[j] * r[j]
      out[k] = v
    }
    return out
  }
}

// Anchor rows per D·Rᵀ product: 1024 × d_mlp float64 is 24 MiB at d_mlp = 3072; larger products run faster.
const ANCHOR_TILE = 1024

/**
 * Baseline maxima for the anchor neurons of one model against the rotated layers of another, streamed over
 * accumulator blocks. NaN where undefined (dead anchor, or no block seen); NaN entries are skipped in the max.
 */
export class BaselineMaxima {
  readonly value: Float64Array       // [anchors] max over all rotated layers: the baseline analogue of max_corr
  readonly layerValue: Float64Array  // [anchors, nLayers] max over the directions of one rotated layer
  readonly nLayers: number

  constructor(nAnchors: number, nLayers: number) {
    this.nLayers = nLayers
    this.value = new Float64Array(nAnchors).fill(NaN)
    this.layerValue = new Float64Array(nAnchors * nLayers).fill(NaN)
  }

  /** Anchors = the A neurons of `acc` (its rows); rotated model = B, whose block must hold whole layers. */
  addRows(acc: PearsonAccumulator, rotatedB: RotatedLayers): void {
    this.addSide(acc, rotatedB, false)
  }

  /** Anchors = the B neurons of `acc` (its columns); rotated model = A, whose block must hold whole layers. */
  addColumns(acc: PearsonAccumulator, rotatedA: RotatedLayers): void {
    this.addSide(acc, rotatedA, true)
  }

  merge(other: BaselineMaxima): void {
    if (other.value.length !== this.value.length || other.nLayers !== this.nLayers) {
      throw new Error('baseline: cannot merge maxima of different shapes')
    }
    for (let i = 0; i < this.value.length; i++) this.value[i] = nanMax(this.value[i], other.value[i])
    const lv = this.layerValue
    for (let i = 0; i < lv.length; i++) lv[i] = nanMax(lv[i], other.layerValue[i])
  }

  private addSide(acc: PearsonAccumulator, rotated: RotatedLayers, columns: boolean): void {
    const s = acc.sums
    const anchors = columns ? acc.b : acc.a
    const rotatedRange = columns ? acc.a : acc.b
    const d = rotated.dMlp
    if (rotatedRange.start % d !== 0 || rotatedRange.count % d !== 0) {
      throw new Error(`baseline: the rotated side covers neurons ${rotatedRange.start}+${rotatedRange.count}, ` +
        `not whole layers of d_mlp ${d}; block the accumulators by layer`)
    }
    if (anchors.start + anchors.count > this.value.length) {
      throw new Error(`baseline: anchors ${anchors.start}+${anchors.count} exceed ${this.value.length} neurons`)
    }
    if (rotated.n !== s.n) {
      throw new Error(`baseline: the pair saw ${s.n} tokens but the rotated model's within-layer moments saw ` +
        `${rotated.n}; both must cover the same valid tokens`)
    }
    const anchorScatter = columns ? acc.scatterB() : acc.scatterA()
    const firstLayer = rotatedRange.start / d
    // Two tiles' worth of memory for every layer and anchor tile: new memory is slow to fault in.
    const tileRows = Math.min(ANCHOR_TILE, anchors.count)
    const tileBuffer = new rotated.tileType(tileRows * d), covBuffer = new rotated.tileType(tileRows * d)
    const best = new Float64Array(tileRows)
    for (let l = 0; l < rotatedRange.count / d; l++) {
      const layer = firstLayer + l
      if (layer >= this.nLayers) throw new Error(`baseline: rotated layer ${layer} ≥ ${this.nLayers} layers`)
      for (let i0 = 0; i0 < anchors.count; i0 += ANCHOR_TILE) {
        const rows = Math.min(ANCHOR_TILE, anchors.count - i0)
        const tile = tileBuffer.subarray(0, rows * d)
        kernels.centredCross(s.cross, s.b.count, s.sumA, s.sumB, s.n, l * d, d, columns, i0, rows, tile)
        const { cov, inverseRoot: invV } = rotated.rotate(layer, tile, rows, covBuffer)
        kernels.rotatedRowMaxima(cov, rows, d, anchorScatter.subarray(i0, i0 + rows), invV, best)
        for (let i = 0; i < rows; i++) {
          if (best[i] !== best[i]) continue   // a dead anchor, or no defined direction
          const anchor = anchors.start + i0 + i
          const slot = anchor * this.nLayers + layer
          this.layerValue[slot] = nanMax(this.layerValue[slot], best[i])
          this.value[anchor] = nanMax(this.value[anchor], best[i])
        }
      }
    }
  }
}

function nanMax(a: number, b: number): number {
  if (a !== a) return b
  if (b !== b) return a
  return a > b ? a : b
}
