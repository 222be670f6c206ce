// The correlate stage (SPEC §3): for every unordered pair of seeds, the Pearson correlation of every neuron of
// one with every neuron of the other, all layers × all layers; from the one pair's sums both directions (row
// maxima for A's neurons, column maxima for B's) and the random-rotation baseline (from the same sums plus each
// seed's within-layer second moments: no second pass). Stored mode streams the activation shards here; streamed
// mode (extract.mode: streamed) already accumulated the sums during extraction and this stage only finishes them.
// The universal stage then aggregates the pairs of each seed.
import type { PipelineConfig } from '../../config.js'
import type { Stage, Unit } from '../../runner/stage.js'
import { shardName, streamedBlocks } from '../extract/index.js'
import { type StreamBlock, streamUnitId } from '../extract/stream.js'
import { correlatePair } from './pair.js'
import { correlateScreened } from './screened.js'
import { finishStreamedPair } from './streamed.js'
import { unorderedPairs } from './pair-sums.js'
import { planCorrelate } from '../stage-plans.js'

/** How often sums are saved; it changes nothing in the results, so it travels on the unit, outside the hash. */
export interface Checkpointing {
  tokens: number
  minutes: number
}

export type PairUnit = Unit & { a: string; b: string; checkpointing: Checkpointing } & (
    | { mode: 'stored'; shards: number[] } // extract shards both seeds have, in order
    | { mode: 'streamed'; blocks?: StreamBlock[] } // the layer blocks of the streamed pass, if it was split
  )

/** The screened mode's one unit: every pair of the family at once, since the seeds share one basis. */
export type FamilyUnit = Unit & { mode: 'screened'; seeds: string[]; shards: number[]; checkpointing: Checkpointing }

export type CorrelateUnit = PairUnit | FamilyUnit

export type CorrelateParams = ReturnType<typeof correlateParams>

function correlateParams(cfg: PipelineConfig) {
  const { baseline, max_memory_gib, mode, screen, threshold, operand_bits } = cfg.correlate
  // The threshold is the universal stage's, except in screened mode: which baselines it computes exactly
  // depends on it. Full mode leaves mode out, and the default operand_bits is left out, so results keep their keys.
  return {
    correlate: { baseline, max_memory_gib, ...(mode === 'screened' ? { mode, screen, threshold } : {}), ...(operand_bits === 16 ? { operand_bits } : {}) },
  }
}

export const pairName = (a: string, b: string) => `${a}--${b}`
export const pairPath = (a: string, b: string) => `correlate/${pairName(a, b)}.parquet`
export const SCREENED_UNIT = 'screened'
export const screenReportPath = 'correlate/screened.json'

export const checkpointing = (cfg: PipelineConfig): Checkpointing => ({
  tokens: cfg.correlate.checkpoint_every,
  minutes: cfg.correlate.checkpoint_minutes,
})

export const correlate: Stage<CorrelateUnit, CorrelateParams> = {
  name: 'correlate',
  version: 2, // 2: within-layer moments from the stats stage
  needs: ['extract', 'stats'], // stats: each seed's within-layer moments, for the baseline
  work: 'tok',
  params: correlateParams,
  units(cfg, upstream) {
    const done = new Set(upstream.units('extract').map((u) => u.id))
    if (cfg.correlate.mode === 'screened') {
      const seeds = cfg.seeds.map((s) => s.name)
      const shards = commonShards(done, seeds)
      return shards.length ? [{ id: SCREENED_UNIT, mode: 'screened', seeds, shards, checkpointing: checkpointing(cfg) }] : []
    }
    const streamed = cfg.extract.mode === 'streamed'
    const blocks = streamed ? streamedBlocks(cfg) : undefined
    const streamDone = (blocks?.map(streamUnitId) ?? [streamUnitId()]).every((id) => done.has(id))
    const units: PairUnit[] = []
    for (const [a, b] of unorderedPairs(cfg.seeds.map((s) => s.name))) {
      const base = { id: pairName(a, b), a, b, checkpointing: checkpointing(cfg) }
      if (streamed) {
        if (streamDone) units.push({ ...base, mode: 'streamed', ...(blocks ? { blocks } : {}) })
        continue
      }
      const shards = commonShards(done, [a, b])
      if (shards.length) units.push({ ...base, mode: 'stored', shards })
    }
    return units
  },
  outputs: (u) => (u.mode === 'screened' ? [...unorderedPairs(u.seeds).map(([a, b]) => pairPath(a, b)), screenReportPath] : [pairPath(u.a, u.b)]),
  inputs: (u) => {
    const seeds = u.mode === 'screened' ? u.seeds : [u.a, u.b]
    const within = seeds.map((seed) => ({ stage: 'stats', unit: seed }))
    const activations = u.mode === 'streamed'
      ? (u.blocks?.map(streamUnitId) ?? [streamUnitId()]).map((unit) => ({ stage: 'extract', unit }))
      : seeds.flatMap((seed) => u.shards.map((s) => ({ stage: 'extract', unit: `${seed}/${shardName(s)}` })))
    return { units: [...activations, ...within] }
  },
  run: (u, ctx) => (u.mode === 'screened' ? correlateScreened(u, ctx) : u.mode === 'streamed' ? finishStreamedPair(u, ctx) : correlatePair(u, ctx)),
  plan: planCorrelate,
}

/** The extract shards every one of `seeds` has finished (done holds `<seed>/shard-NNNN` ids), in order. */
function commonShards(done: ReadonlySet<string>, seeds: readonly string[]): number[] {
  const [first] = seeds
  return [...done]
    .filter((id) => id.startsWith(`${first}/`) && seeds.every((seed) => done.has(`${seed}/${id.slice(first.length + 1)}`)))
    .map((id) => Number(id.split('shard-')[1]))
    .sort((x, y) => x - y)
}
