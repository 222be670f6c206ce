// The correlate stage (SPEC §3): for every unordered pair of seeds, the Pearson correlation of every neuron of
// one with every neuron of the other, all layers × all layers, streamed over the stored activation shards; from
// the one pair's accumulators both directions (row maxima for A's neurons, column maxima for B's) and the
// random-rotation baseline (from the same sums plus each seed's within-layer second moments: no second pass).
// The universal stage then aggregates the pairs of each seed.
import type { PipelineConfig } from '../../config.js'
import type { Stage, Unit } from '../../runner/stage.js'
import { correlatePair } from './pair.js'

export interface PairUnit extends Unit {
  a: string
  b: string
  shards: number[] // extract shards both seeds have, in order
}

export type CorrelateParams = ReturnType<typeof correlateParams>

function correlateParams(cfg: PipelineConfig) {
  const { baseline, max_memory_gib, checkpoint_every } = cfg.correlate
  // The threshold is applied by the universal stage; max_memory_gib and checkpoint_every change how the sums
  // are computed, never their value, but they stay here so a changed budget is visible in status.
  return { correlate: { baseline, max_memory_gib, checkpoint_every } }
}

export const pairName = (a: string, b: string) => `${a}--${b}`
export const pairPath = (a: string, b: string) => `correlate/${pairName(a, b)}.parquet`

export const correlate: Stage<PairUnit, CorrelateParams> = {
  name: 'correlate',
  version: 1,
  needs: ['extract'],
  work: 'tok',
  params: correlateParams,
  units(cfg, upstream) {
    const done = new Set(upstream.units('extract').map((u) => u.id))
    const shardsOf = (seed: string) => [...done].filter((id) => id.startsWith(`${seed}/`)).map((id) => Number(id.split('shard-')[1]))
    const units: PairUnit[] = []
    cfg.seeds.forEach((a, i) => {
      for (const b of cfg.seeds.slice(i + 1)) {
        const shardsA = shardsOf(a.name)
        const shards = shardsA.filter((s) => done.has(`${b.name}/shard-${String(s).padStart(4, '0')}`)).sort((x, y) => x - y)
        if (shards.length === 0) continue
        units.push({ id: pairName(a.name, b.name), a: a.name, b: b.name, shards })
      }
    })
    return units
  },
  outputs: (u) => [pairPath(u.a, u.b)],
  inputs: (u) => ({
    units: [u.a, u.b].flatMap((seed) => u.shards.map((s) => ({ stage: 'extract', unit: `${seed}/shard-${String(s).padStart(4, '0')}` }))),
  }),
  run: (u, ctx) => correlatePair(u, ctx),
}
