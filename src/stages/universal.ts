// The universal stage (SPEC §3): per seed, aggregate its best correlation with each other seed (from the pair
// tables) into max_corr, mean_corr and min_corr, subtract the rotation baseline aggregated the same way, and flag
// excess_corr > threshold. Every seed gets its table, not only the first (the study computed one seed only).
import type { PipelineConfig } from '../config.js'
import { writeTable, type ColumnSpec } from '../io/tables.js'
import type { Stage, Unit } from '../runner/stage.js'
import { universality } from '../stats/universality.js'
import { pairName, pairPath } from './correlate/index.js'
import { readPairSide, type PairSide } from './correlate/pair-table.js'
import { planUniversal } from './stage-plans.js'

interface SeedUnit extends Unit {
  seed: string
  pairs: { a: string; b: string }[] // every pair involving the seed, in config order of the other seed
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
    const done = new Set(upstream.units('correlate').map((u) => u.id))
    return cfg.seeds.flatMap((seed): SeedUnit[] => {
      const pairs = cfg.seeds
        .filter((other) => other.name !== seed.name)
        .map((other) => (seedIndex(cfg, seed.name) < seedIndex(cfg, other.name) ? { a: seed.name, b: other.name } : { a: other.name, b: seed.name }))
        .filter((p) => done.has(pairName(p.a, p.b)))
      return pairs.length ? [{ id: seed.name, seed: seed.name, pairs }] : []
    })
  },
  outputs: (u) => [universalPath(u.seed)],
  plan: planUniversal,
  inputs: (u) => ({ units: u.pairs.map((p) => ({ stage: 'correlate', unit: pairName(p.a, p.b) })) }),
  async run(u, ctx) {
    const { threshold } = ctx.params.correlate
    const sides = await Promise.all(u.pairs.map((p) => readPairSide(ctx.upstream.path(pairPath(p.a, p.b)), u.seed)))
    const result = universality(sides.map((s) => ({ maxCorr: s.maxCorr, baseline: s.baseline })), { threshold })
    const { neurons, universal: count, undefined: dead } = result.counts
    writeUniversalTable(ctx.outputPath(universalPath(u.seed)), sides, result, threshold)
    ctx.log(`${count} of ${neurons} neurons universal (${((100 * count) / neurons).toFixed(2)}%)${dead ? `; ${dead} dead (NaN, not universal)` : ''}`)
    ctx.progress.advance(1)
  },
}

function seedIndex(cfg: PipelineConfig, name: string): number {
  return cfg.seeds.findIndex((s) => s.name === name)
}

function writeUniversalTable(path: string, sides: PairSide[], r: ReturnType<typeof universality>, threshold: number): void {
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
      'seedscope.definition': 'max/mean/min over the other seeds of max_corr; excess_corr = mean_corr − mean_baseline; is_universal = excess_corr > threshold; NaN (dead neuron) is never universal',
    },
  }, values)
}
