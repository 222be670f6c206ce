// Universality of each neuron of an anchor seed (SPEC §3): aggregate its per-seed maximum correlations over the
// other seeds, subtract the rotation baseline aggregated the same way, and flag excess_corr > threshold.

/** One other seed's per-neuron statistics for the anchor's neurons (row or column maxima of the pair). */
export interface SeedMaxima {
  maxCorr: Float64Array   // [neurons] max_j r_ij over every neuron of every layer of that seed
  baseline: Float64Array  // [neurons] the same max against that seed's rotated layers
}

/** Per neuron of the anchor; the fields are the SPEC's Parquet columns in camelCase. */
export interface Universality {
  maxCorr: Float64Array       // max_corr: max over seeds of the per-seed max
  meanCorr: Float64Array      // mean_corr
  minCorr: Float64Array       // min_corr
  maxBaseline: Float64Array   // max_baseline
  meanBaseline: Float64Array  // mean_baseline
  minBaseline: Float64Array   // min_baseline
  excessCorr: Float64Array    // excess_corr = mean_corr − mean_baseline
  isUniversal: Uint8Array     // is_universal = excess_corr > threshold (0 when excess_corr is NaN)
  counts: {
    neurons: number
    universal: number
    undefined: number         // neurons whose excess_corr is NaN (a NaN in some seed's max_corr or baseline)
  }
}

/**
 * Aggregate over the other seeds. A NaN among a neuron's per-seed max_corr values (a dead neuron has NaN for
 * every seed) makes its three corr aggregates NaN, and likewise for the baseline; then excess_corr is NaN, the
 * neuron is not universal, and it is counted in `counts.undefined`. Averaging over only the seeds that happen
 * to be finite would quietly change what the statistic means.
 */
export function universality(seeds: readonly SeedMaxima[], options: { threshold?: number } = {}): Universality {
  const threshold = options.threshold ?? 0.5  // the study's rule: excess_corr > 0.5
  if (seeds.length === 0) throw new Error('universality: needs at least one other seed')
  const n = seeds[0].maxCorr.length
  for (const [m, seed] of seeds.entries()) {
    if (seed.maxCorr.length !== n || seed.baseline.length !== n) {
      throw new Error(`universality: seed ${m} has ${seed.maxCorr.length} max_corr and ${seed.baseline.length} ` +
        `baseline values, expected ${n}`)
    }
  }
  const out: Universality = {
    maxCorr: new Float64Array(n), meanCorr: new Float64Array(n), minCorr: new Float64Array(n),
    maxBaseline: new Float64Array(n), meanBaseline: new Float64Array(n), minBaseline: new Float64Array(n),
    excessCorr: new Float64Array(n), isUniversal: new Uint8Array(n),
    counts: { neurons: n, universal: 0, undefined: 0 },
  }
  for (let i = 0; i < n; i++) {
    const corr = aggregate(seeds, i, 'maxCorr')
    const base = aggregate(seeds, i, 'baseline')
    out.maxCorr[i] = corr.max; out.meanCorr[i] = corr.mean; out.minCorr[i] = corr.min
    out.maxBaseline[i] = base.max; out.meanBaseline[i] = base.mean; out.minBaseline[i] = base.min
    const excess = corr.mean - base.mean
    out.excessCorr[i] = excess
    if (excess !== excess) {
      out.counts.undefined++
    } else if (excess > threshold) {
      out.isUniversal[i] = 1
      out.counts.universal++
    }
  }
  return out
}

function aggregate(
  seeds: readonly SeedMaxima[], i: number, field: keyof SeedMaxima,
): { max: number; mean: number; min: number } {
  let max = -Infinity, min = Infinity, sum = 0
  for (const seed of seeds) {
    const v = seed[field][i]
    if (v !== v) return { max: NaN, mean: NaN, min: NaN }
    if (v > max) max = v
    if (v < min) min = v
    sum += v
  }
  return { max, mean: sum / seeds.length, min }
}
