// Per-neuron streaming statistics of the pre-activation (SPEC §4): exact float64 moments (mean, M2, M3, M4)
// merged across chunks and shards with Pébay's pairwise formulas, the study's 256-edge histogram on [−10, 15],
// the activation frequency, and a count of non-finite values (excluded from every statistic, never dropped
// silently).
//
// Chunks arrive token-major, [tokens, width], as the model emits `blocks.{l}.mlp.hook_pre` flattened to
// [batch·pos, d_mlp], with an optional valid-position mask (SPEC §2). A chunk may cover a slice of the neurons
// (`neuronOffset`), so one accumulator can hold every layer of a model. The passes over a chunk's values run in
// the kernels (kernels.ts: C when built, else JavaScript, with the same results).
import { HISTOGRAM_BINS, HISTOGRAM_EDGES } from './histogram.js'
import { kernels } from './kernels.js'

export { HISTOGRAM_BINS, HISTOGRAM_EDGES, histogramBin } from './histogram.js'

/** Everything needed to resume or merge an accumulator; plain typed arrays, so it can be checkpointed as is. */
export interface MomentsState {
  nNeurons: number
  count: Float64Array      // [neurons] finite values at valid positions
  mean: Float64Array       // [neurons]
  m2: Float64Array         // [neurons] Σ(x−μ)²
  m3: Float64Array         // [neurons] Σ(x−μ)³
  m4: Float64Array         // [neurons] Σ(x−μ)⁴
  positive: Float64Array   // [neurons] values > 0
  nonFinite: Float64Array  // [neurons] NaN or ±Infinity at valid positions: counted here, excluded elsewhere
  histogram: Float64Array  // [neurons, HISTOGRAM_BINS]
}

/** Derived per-neuron statistics. NaN where undefined: no values (all), or zero variance (skew, kurtosis). */
export interface MomentsSummary {
  count: Float64Array
  mean: Float64Array
  variance: Float64Array   // population variance M2/n
  skew: Float64Array       // E[(x−μ)³]/σ³
  kurtosis: Float64Array   // E[(x−μ)⁴]/σ⁴, not excess: a Gaussian gives 3
  frequency: Float64Array  // share of finite valid values > 0: the paper's "act frequency" (binnedMoments gives
                           // the study code's binned version, which it calls "sparsity")
  nonFinite: Float64Array
}

export class NeuronMoments {
  readonly nNeurons: number
  private readonly s: MomentsState
  private readonly scratch: ChunkSums

  constructor(nNeurons: number) {
    this.nNeurons = nNeurons
    this.scratch = {
      count: new Float64Array(nNeurons), mean: new Float64Array(nNeurons), s1: new Float64Array(nNeurons),
      s2: new Float64Array(nNeurons), s3: new Float64Array(nNeurons), s4: new Float64Array(nNeurons),
    }
    this.s = {
      nNeurons,
      count: new Float64Array(nNeurons),
      mean: new Float64Array(nNeurons),
      m2: new Float64Array(nNeurons),
      m3: new Float64Array(nNeurons),
      m4: new Float64Array(nNeurons),
      positive: new Float64Array(nNeurons),
      nonFinite: new Float64Array(nNeurons),
      histogram: new Float64Array(nNeurons * HISTOGRAM_BINS),
    }
  }

  static fromState(state: MomentsState): NeuronMoments {
    const moments = new NeuronMoments(state.nNeurons)
    moments.merge(state)
    return moments
  }

  /** The live state (not a copy; its histogram is 257 floats per neuron): to write it now. Do not keep or mutate it. */
  get sums(): Readonly<MomentsState> {
    return this.s
  }

  /** A copy of the accumulated state. */
  state(): MomentsState {
    const s = this.s
    return {
      nNeurons: s.nNeurons, count: s.count.slice(), mean: s.mean.slice(), m2: s.m2.slice(), m3: s.m3.slice(),
      m4: s.m4.slice(), positive: s.positive.slice(), nonFinite: s.nonFinite.slice(), histogram: s.histogram.slice(),
    }
  }

  /**
   * Add a token-major chunk `[tokens, width]` covering neurons [neuronOffset, neuronOffset + width).
   * `valid[t]` = 0 skips token t entirely (not counted anywhere). The chunk's own moments are computed exactly
   * (two passes around its mean) and then merged in with Pébay's formulas, as a shard would be.
   */
  add(chunk: Float32Array, tokens: number, options: { valid?: Uint8Array; neuronOffset?: number } = {}): void {
    const { valid, neuronOffset = 0 } = options
    const width = chunkWidth('moments', chunk.length, tokens, valid, neuronOffset, this.nNeurons)
    if (width === 0) return
    addChunk(this.s, chunk, tokens, width, valid, neuronOffset, this.scratch)
  }

  /** Merge another shard's statistics (same neurons, disjoint tokens): exact, not an average of averages. */
  merge(other: MomentsState | NeuronMoments): void {
    const o = other instanceof NeuronMoments ? other.s : other
    if (o.nNeurons !== this.nNeurons) {
      throw new Error(`moments: cannot merge ${o.nNeurons} neurons into ${this.nNeurons}`)
    }
    const s = this.s
    for (let g = 0; g < this.nNeurons; g++) {
      mergeOne(s, g, o.count[g], o.mean[g], o.m2[g], o.m3[g], o.m4[g])
      s.positive[g] += o.positive[g]
      s.nonFinite[g] += o.nonFinite[g]
    }
    addArrays(s.histogram, o.histogram)
  }

  summary(): MomentsSummary {
    const s = this.s
    const n = this.nNeurons
    const out: MomentsSummary = {
      count: s.count.slice(), mean: new Float64Array(n), variance: new Float64Array(n), skew: new Float64Array(n),
      kurtosis: new Float64Array(n), frequency: new Float64Array(n), nonFinite: s.nonFinite.slice(),
    }
    for (let g = 0; g < n; g++) {
      const c = s.count[g]
      if (c === 0) {
        out.mean[g] = out.variance[g] = out.skew[g] = out.kurtosis[g] = out.frequency[g] = NaN
        continue
      }
      const variance = s.m2[g] / c
      // Skew and kurtosis are undefined for a constant neuron; a variance below the float64 rounding of the mean
      // is treated as zero rather than divided by.
      const spread = variance > (8 * Number.EPSILON * s.mean[g]) ** 2
      out.mean[g] = s.mean[g]
      out.variance[g] = variance
      out.skew[g] = spread ? s.m3[g] / c / variance ** 1.5 : NaN
      out.kurtosis[g] = spread ? s.m4[g] / c / (variance * variance) : NaN
      out.frequency[g] = s.positive[g] / c
    }
    return out
  }

  /** One neuron's histogram counts, a view of length {@link HISTOGRAM_BINS}. */
  histogram(neuron: number): Float64Array {
    return this.s.histogram.subarray(neuron * HISTOGRAM_BINS, (neuron + 1) * HISTOGRAM_BINS)
  }
}

/**
 * The study's moments from binned counts (`compute_moments_from_binned_data`), for comparison with its tables:
 * bin centres, with the two end bins centred one bin width beyond ±edge. Its "sparsity" is the share of counts
 * in bins from the first edge ≥ 0 onward, i.e. roughly x > −0.1, not x > 0.
 */
export function binnedMoments(histogram: Float64Array, nNeurons: number): Omit<MomentsSummary, 'nonFinite'> {
  const e = HISTOGRAM_EDGES
  const w = e[1] - e[0]
  const centres = new Float64Array(HISTOGRAM_BINS)
  centres[0] = e[0] - w / 2
  for (let i = 1; i < e.length; i++) centres[i] = (e[i - 1] + e[i]) / 2
  centres[HISTOGRAM_BINS - 1] = e[e.length - 1] + w / 2
  const zeroBin = e.findIndex((edge) => edge >= 0)
  const out = {
    count: new Float64Array(nNeurons), mean: new Float64Array(nNeurons), variance: new Float64Array(nNeurons),
    skew: new Float64Array(nNeurons), kurtosis: new Float64Array(nNeurons), frequency: new Float64Array(nNeurons),
  }
  for (let g = 0; g < nNeurons; g++) {
    const h = histogram.subarray(g * HISTOGRAM_BINS, (g + 1) * HISTOGRAM_BINS)
    let n = 0, s1 = 0, above = 0
    for (let i = 0; i < HISTOGRAM_BINS; i++) {
      n += h[i]
      s1 += h[i] * centres[i]
      if (i >= zeroBin) above += h[i]
    }
    const mean = s1 / n
    let s2 = 0, s3 = 0, s4 = 0
    for (let i = 0; i < HISTOGRAM_BINS; i++) {
      const d = centres[i] - mean
      s2 += h[i] * d * d
      s3 += h[i] * d * d * d
      s4 += h[i] * d * d * d * d
    }
    const variance = s2 / n
    out.count[g] = n
    out.mean[g] = mean
    out.variance[g] = variance
    out.skew[g] = s3 / n / variance ** 1.5
    out.kurtosis[g] = s4 / n / (variance * variance)
    out.frequency[g] = above / n
  }
  return out
}

/**
 * Pébay's pairwise update (Pébay, Sandia report SAND2008-6212): fold (nB, μB, M2B, M3B, M4B) into neuron g.
 * Exact in exact arithmetic for any split of the tokens; the higher moments are updated before the lower
 * ones they read.
 */
function mergeOne(s: MomentsState, g: number, nB: number, meanB: number, m2B: number, m3B: number, m4B: number): void {
  if (nB === 0) return
  const nA = s.count[g]
  if (nA === 0) {
    s.count[g] = nB; s.mean[g] = meanB; s.m2[g] = m2B; s.m3[g] = m3B; s.m4[g] = m4B
    return
  }
  const n = nA + nB
  const d = meanB - s.mean[g]
  const dn = d / n
  const m2A = s.m2[g], m3A = s.m3[g]
  s.m4[g] += m4B + d * dn * dn * dn * nA * nB * (nA * nA - nA * nB + nB * nB)
    + 6 * dn * dn * (nA * nA * m2B + nB * nB * m2A) + 4 * dn * (nA * m3B - nB * m3A)
  s.m3[g] = m3A + m3B + d * dn * dn * nA * nB * (nA - nB) + 3 * dn * (nA * m2B - nB * m2A)
  s.m2[g] = m2A + m2B + d * dn * nA * nB
  s.mean[g] += dn * nB
  s.count[g] = n
}

// A chunk's per-neuron sums, reused from chunk to chunk: a chunk covers at most every neuron.
interface ChunkSums {
  count: Float64Array; mean: Float64Array; s1: Float64Array; s2: Float64Array; s3: Float64Array; s4: Float64Array
}

// Adds a chunk covering neurons [offset, offset + width) with its exact moments: pass 1 sums (and bins, and
// counts), pass 2 takes power sums around the pass-1 mean c, then shifts them to the exact mean μ = c + e,
// e = Σ(x−c)/n (the "corrected two-pass" algorithm, extended to the third and fourth moments by the binomial
// expansion), and Pébay's update merges them in. The positive, non-finite and histogram counts go straight into
// the state: they are integers, exact in float64 whether added per chunk or per value.
function addChunk(
  s: MomentsState, chunk: Float32Array, tokens: number, width: number, valid: Uint8Array | undefined, offset: number, scratch: ChunkSums,
): void {
  const { count, mean, s1, s2, s3, s4 } = scratch
  const positive = s.positive.subarray(offset, offset + width)
  const nonFinite = s.nonFinite.subarray(offset, offset + width)
  const histogram = s.histogram.subarray(offset * HISTOGRAM_BINS, (offset + width) * HISTOGRAM_BINS)
  kernels.chunkMoments(chunk, tokens, width, valid, count, mean, s1, s2, s3, s4, positive, nonFinite, histogram)
  for (let j = 0; j < width; j++) {
    const n = count[j]
    if (n === 0) continue
    const e = s1[j] / n
    const m2 = s2[j] - n * e * e
    const m3 = s3[j] - 3 * e * s2[j] + 2 * n * e * e * e
    const m4 = s4[j] - 4 * e * s3[j] + 6 * e * e * s2[j] - 3 * n * e * e * e * e
    mergeOne(s, offset + j, n, mean[j] + e, m2, m3, m4)
  }
}

/** Validate a token-major chunk against its accumulator and return its width (neurons per token). */
export function chunkWidth(
  what: string, length: number, tokens: number, valid: Uint8Array | undefined, neuronOffset: number, nNeurons: number,
): number {
  if (tokens === 0 && length === 0) return 0
  if (!Number.isInteger(tokens) || tokens <= 0 || length % tokens !== 0) {
    throw new Error(`${what}: chunk of ${length} values is not [tokens=${tokens}, width]`)
  }
  const width = length / tokens
  if (neuronOffset < 0 || neuronOffset + width > nNeurons) {
    const last = neuronOffset + width - 1
    throw new Error(`${what}: chunk covers neurons ${neuronOffset}..${last}, accumulator has ${nNeurons}`)
  }
  if (valid && valid.length !== tokens) {
    throw new Error(`${what}: valid mask has ${valid.length} entries for ${tokens} tokens`)
  }
  return width
}

function addArrays(into: Float64Array, from: Float64Array): void {
  for (let i = 0; i < into.length; i++) into[i] += from[i]
}
