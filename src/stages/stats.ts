// The stats stage (SPEC §4): merge each seed's per-shard statistics exactly (Pébay moment merging, histogram
// sums, top-k merge) into one table per seed: stats/<seed>.parquet (a row per neuron: moments of hook_pre,
// activation frequency, the study's binned moments and 256-edge histogram) and stats/<seed>.top.parquet
// (the top-k activating tokens of the site, a row per neuron × rank). It also keeps each seed's within-layer
// second moments (stats/<seed>.within.safetensors), which every pair's rotation baseline needs (SPEC §3):
// computed once per seed here rather than once per pair, from the stored shards in order, or taken as they are
// from streamed mode, which accumulated them the same way.
import type { PipelineConfig } from '../config.js'
import { readModelConfig } from '../model/hf-config.js'
import { writeTable } from '../io/tables.js'
import { readActivationRows, readActivationShardInfo } from '../io/activation-store.js'
import { readStateFile, writeStateFile } from '../io/state-file.js'
import { loadFastGemm } from '../model/gemm.js'
import type { Stage, StageContext, Unit, UpstreamView } from '../runner/stage.js'
import { WithinLayerMoments, type WithinLayerState } from '../stats/baseline.js'
import { binnedMoments, HISTOGRAM_BINS, NeuronMoments } from '../stats/moments.js'
import { TopActivations } from '../stats/top-activations.js'
import type { ChunkRows } from '../stats/pearson.js'
import { activationPath, shardName, shardStatsPath, streamedBlocks } from './extract/index.js'
import { streamStatsPath, streamUnitId, streamWithinPath } from './extract/stream.js'
import { readShardStats } from './extract/shard-stats.js'
import { planStats } from './stage-plans.js'
import { kernels } from '../stats/kernels.js'

interface SeedStatsUnit extends Unit {
  seed: string
  parts: string[] // the seed's statistics files from extract (per shard, or the one of streamed mode), in order
  from: string[] // the extract units that wrote them
  dMlp: number
  within: { shards: string[] } | { streamed: string } // activation shards to accumulate, or streamed mode's sums
}

export const statsPath = (seed: string) => `stats/${seed}.parquet`
export const topPath = (seed: string) => `stats/${seed}.top.parquet`
export const withinPath = (seed: string) => `stats/${seed}.within.safetensors`

export const stats: Stage<SeedStatsUnit, Record<string, never>> = {
  name: 'stats',
  version: 2, // 2: also writes the within-layer moments
  needs: ['extract'],
  work: 'shard',
  params: () => ({}), // everything it depends on arrives through the extract outputs it reads
  plan: planStats,
  units: (cfg, upstream) => seedUnits(cfg, upstream),
  outputs: (u) => [statsPath(u.seed), topPath(u.seed), withinPath(u.seed)],
  inputs: (u) => ({ units: u.from.map((unit) => ({ stage: 'extract', unit })) }),
  async run(u, ctx) {
    ctx.progress.setTotal(2 * u.parts.length)
    let moments: NeuronMoments | undefined
    let top: TopActivations | undefined
    for (const file of u.parts) {
      const part = readShardStats(ctx.upstream.path(file))
      moments ??= new NeuronMoments(part.moments.nNeurons)
      top ??= new TopActivations(part.top.nNeurons, part.top.k)
      moments.merge(part.moments)
      top.merge(part.top)
      ctx.progress.advance(1)
    }
    if (!moments || !top) throw new Error(`stats ${u.seed}: no shards`)
    writeNeuronStats(ctx.outputPath(statsPath(u.seed)), moments, u.dMlp)
    writeTopActivations(ctx.outputPath(topPath(u.seed)), top, u.dMlp)
    writeStateFile(ctx.outputPath(withinPath(u.seed)), await withinLayerState(u, ctx))
  },
}

/** The seed's within-layer second moments, accumulated shard by shard exactly as streamed mode does. */
async function withinLayerState(u: SeedStatsUnit, ctx: StageContext<unknown>): Promise<WithinLayerState> {
  if ('streamed' in u.within) {
    const state = readStateFile<WithinLayerState>(ctx.upstream.path(u.within.streamed))
    if (!state) throw new Error(`stats ${u.seed}: ${u.within.streamed} is missing`)
    ctx.progress.advance(u.parts.length)
    return state
  }
  const { gemm } = loadFastGemm(ctx.execution.threads)
  kernels.setThreads(ctx.execution.threads)
  let within: WithinLayerMoments | undefined
  let rows: ChunkRows | undefined
  for (const file of u.within.shards) {
    const path = ctx.upstream.path(file)
    const info = await readActivationShardInfo(path)
    within ??= new WithinLayerMoments({ nLayers: info.nLayers, dMlp: info.dMlp, gemm })
    rows = await readActivationRows(path, info, 0, info.nLayers * info.dMlp, rows)
    within.add(rows, info.tokens)
    ctx.progress.advance(1)
  }
  return within!.sums   // written at once: no copy
}

function seedUnits(cfg: PipelineConfig, upstream: UpstreamView): SeedStatsUnit[] {
  const done = upstream.units('extract')
  // In streamed mode the first (or only) pass of extract summed the statistics.
  const firstPass = streamUnitId(streamedBlocks(cfg)?.[0])
  const streamed = done.find((u) => u.id === firstPass)
  return cfg.seeds.flatMap((seed): SeedStatsUnit[] => {
    const shards = done.filter((u) => u.id.startsWith(`${seed.name}/`)).map((u) => Number(u.id.split('shard-')[1]))
    if (!streamed && shards.length === 0) return []
    const dMlp = readModelConfig(seed.checkpoint).shape.dMlp
    if (streamed) {
      const within = { streamed: streamWithinPath(seed.name) }
      return [{ id: seed.name, seed: seed.name, parts: [streamStatsPath(seed.name)], from: [streamed.id], dMlp, within }]
    }
    const parts = shards.map((shard) => shardStatsPath(seed.name, shard))
    const within = { shards: shards.map((shard) => activationPath(seed.name, shard)) }
    return [{ id: seed.name, seed: seed.name, parts, from: shards.map((s) => `${seed.name}/${shardName(s)}`), dMlp, within }]
  })
}

function layerAndNeuron(n: number, dMlp: number) {
  return {
    layer: Int32Array.from({ length: n }, (_, g) => Math.floor(g / dMlp)),
    neuron: Int32Array.from({ length: n }, (_, g) => g % dMlp),
  }
}

function writeNeuronStats(path: string, moments: NeuronMoments, dMlp: number): void {
  const n = moments.nNeurons
  const exact = moments.summary()
  const histograms = Array.from({ length: n }, (_, g) => Array.from(moments.histogram(g)))
  const binned = binnedMoments(moments.state().histogram, n)
  const columns = [
    ['layer', 'INT32'], ['neuron', 'INT32'], ['count', 'DOUBLE'], ['mean', 'DOUBLE'], ['variance', 'DOUBLE'],
    ['skew', 'DOUBLE'], ['kurtosis', 'DOUBLE'], ['frequency', 'DOUBLE'], ['non_finite', 'DOUBLE'],
    ['binned_mean', 'DOUBLE'], ['binned_variance', 'DOUBLE'], ['binned_skew', 'DOUBLE'], ['binned_kurtosis', 'DOUBLE'],
    ['binned_sparsity', 'DOUBLE'], ['histogram', 'INT32_LIST'],
  ] as const
  writeTable(
    path,
    {
      columns: columns.map(([name, type]) => ({ name, type })),
      metadata: {
        'seedscope.site': 'blocks.{l}.mlp.hook_pre',
        'seedscope.histogram': `${HISTOGRAM_BINS} counts: x ≤ −10, then (edge[i−1], edge[i]] for torch.linspace(−10, 15, 256), then x > 15`,
        'seedscope.moments': 'exact float64 streaming moments; kurtosis is not excess (Gaussian = 3); NaN where undefined',
      },
    },
    {
      ...layerAndNeuron(n, dMlp),
      count: exact.count,
      mean: exact.mean,
      variance: exact.variance,
      skew: exact.skew,
      kurtosis: exact.kurtosis,
      frequency: exact.frequency,
      non_finite: exact.nonFinite,
      binned_mean: binned.mean,
      binned_variance: binned.variance,
      binned_skew: binned.skew,
      binned_kurtosis: binned.kurtosis,
      binned_sparsity: binned.frequency,
      histogram: histograms,
    },
  )
}

function writeTopActivations(path: string, top: TopActivations, dMlp: number): void {
  const rows: { layer: number; neuron: number; rank: number; row: number; position: number; value: number }[] = []
  for (let g = 0; g < top.nNeurons; g++) {
    top.top(g).forEach((entry, rank) =>
      rows.push({ layer: Math.floor(g / dMlp), neuron: g % dMlp, rank, row: entry.row, position: entry.pos, value: entry.value }),
    )
  }
  const column = <K extends keyof (typeof rows)[number]>(key: K) => rows.map((r) => r[key])
  writeTable(
    path,
    {
      columns: [
        { name: 'layer', type: 'INT32' },
        { name: 'neuron', type: 'INT32' },
        { name: 'rank', type: 'INT32' },
        { name: 'row', type: 'INT32' },
        { name: 'position', type: 'INT32' },
        { name: 'value', type: 'DOUBLE' },
      ],
      metadata: { 'seedscope.top': 'per neuron the k largest site activations at valid positions; rank 0 is the largest' },
    },
    {
      layer: Int32Array.from(column('layer')),
      neuron: Int32Array.from(column('neuron')),
      rank: Int32Array.from(column('rank')),
      row: Int32Array.from(column('row')),
      position: Int32Array.from(column('position')),
      value: Float64Array.from(column('value')),
    },
  )
}
