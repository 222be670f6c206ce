// The universal stage (SPEC §3): per seed, aggregate its best correlation with each other seed (from the pair
// tables) into max_corr, mean_corr and min_corr, subtract the rotation baseline aggregated the same way, and flag
// excess_corr > threshold. Every seed gets its table, not only the first (the study computed one seed only).
import type { PipelineConfig } from '../config.js'
import { writeTable, type ColumnSpec } from '../io/tables.js'
import type { Stage, Unit } from '../runner/stage.js'
import { type Universality, universality } from '../stats/universality.js'
import { pairPath } from './correlate/index.js'
import { exactWhereEqual, readPairSide, type PairSide } from './correlate/pair-table.js'
import { planUniversal } from './stage-plans.js'

interface SeedUnit extends Unit {
  seed: string
  pairs: { a: string; b: string; unit: string }[] // every pair involving the seed, in config order of the other seed; unit: the correlate unit that wrote it
}

export const universalPath = (seed: string) => `universal/${seed}.parquet`

function universalParams(cfg: PipelineConfig) {
  return { correlate: { threshold: cfg.correlate.threshold } }
}

export const universal: Stage<SeedUnit, ReturnType<typeof universalParams>> = {
  name: 'universal',
  version: 1,
  needs: ['correlate'],
  work: 'seed',
  params: universalParams,
  units(cfg, upstream) {
    // A pair table comes from its pair's unit, or from the screened mode's one unit for the family.
    const writer = new Map(upstream.units('correlate').flatMap((u) => u.outputs.map((output) => [output, u.id] as const)))
    return cfg.seeds.flatMap((seed): SeedUnit[] => {
      const pairs = cfg.seeds
        .filter((other) => other.name !== seed.name)
        .map((other) => (seedIndex(cfg, seed.name) < seedIndex(cfg, other.name) ? { a: seed.name, b: other.name } : { a: other.name, b: seed.name }))
        .filter((p) => writer.has(pairPath(p.a, p.b)))
        .map((p) => ({ ...p, unit: writer.get(pairPath(p.a, p.b))! }))
      return pairs.length ? [{ id: seed.name, seed: seed.name, pairs }] : []
    })
  },
  outputs: (u) => [universalPath(u.seed)],
  plan: planUniversal,
  inputs: (u) => ({ units: [...new Set(u.pairs.map((p) => p.unit))].map((unit) => ({ stage: 'correlate', unit })) }),
  async run(u, ctx) {
    const { threshold } = ctx.params.correlate
    const sides = await Promise.all(u.pairs.map((p) => readPairSide(ctx.upstream.path(pairPath(p.a, p.b)), u.seed)))
    const result = boundedUniversality(sides, threshold, u.seed)
    const { neurons, universal: count, undefined: dead } = result.counts
    writeUniversalTable(ctx.outputPath(universalPath(u.seed)), sides, result, threshold)
    ctx.log(`${count} of ${neurons} neurons universal (${((100 * count) / neurons).toFixed(2)}%)${dead ? `; ${dead} dead (NaN, not universal)` : ''}`)
    ctx.progress.advance(1)
  },
}

type SeedUniversality = Universality & { bounds?: { meanBaselineLo: Float64Array; meanBaselineHi: Float64Array } }

/**
 * universality() over the pair tables. Where a table gives some baselines only as intervals (screened mode), the
 * flag is decided from both ends, which the screened unit guarantees agree; the exact columns are NaN where only
 * bounded, and the bounds of mean_baseline are kept.
 */
function boundedUniversality(sides: PairSide[], threshold: number, seed: string): SeedUniversality {
  const low = universality(sides.map((s) => ({ maxCorr: s.maxCorr, baseline: s.baselineLo })), { threshold })
  const bounded = sides.some((s) => s.baselineLo.some((v, i) => v !== s.baselineHi[i] && v === v))
  if (!bounded) return low
  const high = universality(sides.map((s) => ({ maxCorr: s.maxCorr, baseline: s.baselineHi })), { threshold })
  const open = low.isUniversal.findIndex((flag, i) => flag !== high.isUniversal[i])
  if (open >= 0) {
    throw new Error(`universal ${seed}: neuron ${open}'s baseline interval straddles the threshold ${threshold}; the pair tables were screened at another threshold, rerun correlate`)
  }
  return {
    ...high,
    maxBaseline: exactWhereEqual(low.maxBaseline, high.maxBaseline),
    meanBaseline: exactWhereEqual(low.meanBaseline, high.meanBaseline),
    minBaseline: exactWhereEqual(low.minBaseline, high.minBaseline),
    excessCorr: exactWhereEqual(low.excessCorr, high.excessCorr),
    bounds: { meanBaselineLo: low.meanBaseline, meanBaselineHi: high.meanBaseline },
  }
}

function seedIndex(cfg: PipelineConfig, name: string): number {
  return cfg.seeds.findIndex((s) => s.name === name)
}

function writeUniversalTable(path: string, sides: PairSide[], r: SeedUniversality, threshold: number): void {
  const columns: ColumnSpec[] = [
    { name: 'layer', type: 'INT32' },
    { name: 'neuron', type: 'INT32' },
    { name: 'max_corr', type: 'DOUBLE' },
    { name: 'mean_corr', type: 'DOUBLE' },
    { name: 'min_corr', type: 'DOUBLE' },
    { name: 'max_baseline', type: 'DOUBLE' },
    { name: 'mean_baseline', type: 'DOUBLE' },
    { name: 'min_baseline', type: 'DOUBLE' },
    { name: 'excess_corr', type: 'DOUBLE' },
    { name: 'is_universal', type: 'BOOLEAN' },
  ]
  const values: Record<string, ArrayLike<unknown>> = {
    layer: sides[0].layer,
    neuron: sides[0].neuron,
    max_corr: r.maxCorr,
    mean_corr: r.meanCorr,
    min_corr: r.minCorr,
    max_baseline: r.maxBaseline,
    mean_baseline: r.meanBaseline,
    min_baseline: r.minBaseline,
    excess_corr: r.excessCorr,
    is_universal: Array.from(r.isUniversal, (v) => v === 1),
  }
  if (r.bounds) {
    const { meanBaselineLo: lo, meanBaselineHi: hi } = r.bounds
    columns.push(
      { name: 'mean_baseline_lo', type: 'DOUBLE' },
      { name: 'mean_baseline_hi', type: 'DOUBLE' },
      { name: 'excess_corr_lo', type: 'DOUBLE' },
      { name: 'excess_corr_hi', type: 'DOUBLE' },
    )
    Object.assign(values, {
      mean_baseline_lo: lo,
      mean_baseline_hi: hi,
      excess_corr_lo: r.meanCorr.map((c, i) => c - hi[i]),
      excess_corr_hi: r.meanCorr.map((c, i) => c - lo[i]),
    })
  }
  for (const side of sides) {
    columns.push(
      { name: `max_corr_${side.other}`, type: 'DOUBLE' },
      { name: `max_layer_${side.other}`, type: 'INT32' },
      { name: `max_neuron_${side.other}`, type: 'INT32' },
      { name: `baseline_${side.other}`, type: 'DOUBLE' },
    )
    values[`max_corr_${side.other}`] = side.maxCorr
    values[`max_layer_${side.other}`] = side.maxLayer
    values[`max_neuron_${side.other}`] = side.maxNeuron
    values[`baseline_${side.other}`] = side.baseline
  }
  writeTable(path, {
    columns,
    metadata: {
      'seedscope.threshold': String(threshold),
      'seedscope.counts': JSON.stringify(r.counts),
      'seedscope.definition': 'max/mean/min over the other seeds of max_corr; excess_corr = mean_corr − mean_baseline; is_universal = excess_corr > threshold; NaN (dead neuron) is never universal' +
        (r.bounds ? '. Screened mode: where a baseline is only bounded, the baseline and excess columns are NaN and *_lo/*_hi bound them; is_universal is proven from the bounds' : ''),
    },
  }, values)
}
