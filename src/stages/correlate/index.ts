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
import { finishStreamedPair } from './streamed.js'
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

export type CorrelateParams = ReturnType<typeof correlateParams>

function correlateParams(cfg: PipelineConfig) {
  const { baseline, max_memory_gib } = cfg.correlate // the threshold is the universal stage's
  return { correlate: { baseline, max_memory_gib } }
}

export const pairName = (a: string, b: string) => `${a}--${b}`
export const pairPath = (a: string, b: string) => `correlate/${pairName(a, b)}.parquet`

export const checkpointing = (cfg: PipelineConfig): Checkpointing => ({
  tokens: cfg.correlate.checkpoint_every,
  minutes: cfg.correlate.checkpoint_minutes,
})

export const correlate: Stage<PairUnit, CorrelateParams> = {
  name: 'correlate',
  version: 2, // 2: within-layer moments from the stats stage
  needs: ['extract', 'stats'], // stats: each seed's within-layer moments, for the baseline
  work: 'tok',
  params: correlateParams,
  units(cfg, upstream) {
    const done = new Set(upstream.units('extract').map((u) => u.id))
    const streamed = cfg.extract.mode === 'streamed'
    const blocks = streamed ? streamedBlocks(cfg) : undefined
    const streamDone = (blocks?.map(streamUnitId) ?? [streamUnitId()]).every((id) => done.has(id))
    const units: PairUnit[] = []
    cfg.seeds.forEach((a, i) => {
      for (const b of cfg.seeds.slice(i + 1)) {
        const base = { id: pairName(a.name, b.name), a: a.name, b: b.name, checkpointing: checkpointing(cfg) }
        if (streamed) {
          if (streamDone) units.push({ ...base, mode: 'streamed', ...(blocks ? { blocks } : {}) })
          continue
        }
        const shards = [...done]
          .filter((id) => id.startsWith(`${a.name}/`) && done.has(`${b.name}/${id.slice(a.name.length + 1)}`))
          .map((id) => Number(id.split('shard-')[1]))
          .sort((x, y) => x - y)
        if (shards.length) units.push({ ...base, mode: 'stored', shards })
      }
    })
    return units
  },
  outputs: (u) => [pairPath(u.a, u.b)],
  inputs: (u) => {
    const within = [u.a, u.b].map((seed) => ({ stage: 'stats', unit: seed }))
    return u.mode === 'streamed'
      ? { units: [...(u.blocks?.map(streamUnitId) ?? [streamUnitId()]).map((unit) => ({ stage: 'extract', unit })), ...within] }
      : { units: [...[u.a, u.b].flatMap((seed) => u.shards.map((s) => ({ stage: 'extract', unit: `${seed}/${shardName(s)}` }))), ...within] }
  },
  run: (u, ctx) => (u.mode === 'streamed' ? finishStreamedPair(u, ctx) : correlatePair(u, ctx)),
  plan: planCorrelate,
}

