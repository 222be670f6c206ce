// Per-neuron streaming statistics of the pre-activation (SPEC §4): exact float64 moments (mean, M2, M3, M4)
// merged across chunks and shards with Pébay's pairwise formulas, the study's 256-edge histogram on [−10, 15],
// the activation frequency, and a count of non-finite values (excluded from every statistic, never dropped
// silently).
//
// Chunks arrive token-major, [tokens, width], as the model emits `blocks.{l}.mlp.hook_pre` flattened to
// [batch·pos, d_mlp], with an optional valid-position mask (SPEC §2). A chunk may cover a slice of the neurons
// (`neuronOffset`), so one accumulator can hold every layer of a model.

/** The study's bin edges: torch.linspace(−10, 15, 256), here in float64. */
export const HISTOGRAM_EDGES: Float64Array = linspace(-10, 15, 256)

/**
 * Counts per neuron: one more than the edges, as the study's `searchsorted` gives. Bin 0 holds x ≤ −10 (the
 * underflow), bin i (1…255) holds edges[i−1] < x ≤ edges[i], bin 256 holds x > 15 (the overflow). So values
 * outside [−10, 15] land in the end bins, as in the study, and those bins are also the under/overflow counts.
 */
export const HISTOGRAM_BINS = HISTOGRAM_EDGES.length + 1

const LAST_EDGE = HISTOGRAM_EDGES.length - 1
const EDGE_LO = HISTOGRAM_EDGES[0]
const EDGE_HI = HISTOGRAM_EDGES[LAST_EDGE]
const EDGES_PER_UNIT = LAST_EDGE / (EDGE_HI - EDGE_LO)

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

  constructor(nNeurons: number) {
    this.nNeurons = nNeurons
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
    const part = chunkMoments(chunk, tokens, width, valid)
    const s = this.s
    for (let j = 0; j < width; j++) {
      const g = neuronOffset + j
      mergeOne(s, g, part.count[j], part.mean[j], part.m2[j], part.m3[j], part.m4[j])
      s.positive[g] += part.positive[j]
      s.nonFinite[g] += part.nonFinite[j]
    }
    const bins = s.histogram.subarray(neuronOffset * HISTOGRAM_BINS, (neuronOffset + width) * HISTOGRAM_BINS)
    addArrays(bins, part.histogram)
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

/** Histogram bin of a finite value: the number of edges strictly below it (numpy/torch searchsorted, left). */
export function histogramBin(x: number): number {
  if (x <= EDGE_LO) return 0
  if (x > EDGE_HI) return HISTOGRAM_BINS - 1
  // The arithmetic estimate can be one off only for x within rounding of an edge: one step corrects it.
  let i = Math.ceil((x - EDGE_LO) * EDGES_PER_UNIT)
  if (i < 1) i = 1
  else if (i > LAST_EDGE) i = LAST_EDGE
  if (x <= HISTOGRAM_EDGES[i - 1]) i--
  else if (x > HISTOGRAM_EDGES[i]) i++
  return i
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

interface ChunkMoments {
  count: Float64Array; mean: Float64Array; m2: Float64Array; m3: Float64Array; m4: Float64Array
  positive: Float64Array; nonFinite: Float64Array; histogram: Float64Array
}

// A chunk's exact moments: pass 1 sums (and bins, and counts), pass 2 takes power sums around the pass-1 mean c,
// then shifts them to the exact mean μ = c + e, e = Σ(x−c)/n (the "corrected two-pass" algorithm, extended to
// the third and fourth moments by the binomial expansion).
function chunkMoments(chunk: Float32Array, tokens: number, width: number, valid: Uint8Array | undefined): ChunkMoments {
  const count = new Float64Array(width), sum = new Float64Array(width), positive = new Float64Array(width)
  const nonFinite = new Float64Array(width), histogram = new Float64Array(width * HISTOGRAM_BINS)
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
  const mean = new Float64Array(width)
  for (let j = 0; j < width; j++) mean[j] = count[j] > 0 ? sum[j] / count[j] : 0
  const s1 = new Float64Array(width), s2 = new Float64Array(width)
  const s3 = new Float64Array(width), s4 = new Float64Array(width)
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
  const m2 = new Float64Array(width), m3 = new Float64Array(width), m4 = new Float64Array(width)
  for (let j = 0; j < width; j++) {
    const n = count[j]
    if (n === 0) continue
    const e = s1[j] / n
    mean[j] += e
    m2[j] = s2[j] - n * e * e
    m3[j] = s3[j] - 3 * e * s2[j] + 2 * n * e * e * e
    m4[j] = s4[j] - 4 * e * s3[j] + 6 * e * e * s2[j] - 3 * n * e * e * e * e
  }
  return { count, mean, m2, m3, m4, positive, nonFinite, histogram }
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

function linspace(lo: number, hi: number, n: number): Float64Array {
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = lo + ((hi - lo) * i) / (n - 1)
  return out
}
