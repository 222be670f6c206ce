// The extract stage (SPEC §1, §2, §4): run every seed over the main split's token rows, shard by shard, and keep
// (a) the site's activations at the valid positions, neuron-major, as Parquet (src/io/activation-store.ts) and
// (b) each shard's streaming statistics (float64 moments and histogram of hook_pre, top-k of the site), which
// the stats stage merges exactly per seed. One unit is one seed × one shard: the most a kill can lose.
import type { PipelineConfig } from '../../config.js'
import { UserError } from '../../errors.js'
import { checkpointFiles } from '../../io/checkpoint.js'
import type { Stage, StageContext, Unit, UpstreamView } from '../../runner/stage.js'
import { TOKENIZE_OUTPUTS, readTokenRows, tokenizeSummary } from '../tokenize/stage.js'
import { extractShard } from './shard.js'
import { skipTokenIds } from './valid-positions.js'

export interface ExtractUnit extends Unit {
  seed: string
  checkpoint: string // absolute directory
  shard: number
  rowStart: number // rows [rowStart, rowEnd) of rows.parquet (main rows come first)
  rowEnd: number
  skipIds: number[] // token ids never correlated: BOS plus extract.skip_tokens
}

export type ExtractParams = ReturnType<typeof extractParams>

function extractParams(cfg: PipelineConfig) {
  const { site, dtype, rows_per_shard, batch_rows, skip_tokens, top_k } = cfg.extract
  return { extract: { site, dtype, rows_per_shard, batch_rows, skip_tokens, top_k } }
}

export const shardName = (shard: number) => `shard-${String(shard).padStart(4, '0')}`
export const activationPath = (seed: string, shard: number) => `extract/${seed}/${shardName(shard)}.parquet`
export const shardStatsPath = (seed: string, shard: number) => `extract/${seed}/${shardName(shard)}.stats.safetensors`

export const extract: Stage<ExtractUnit, ExtractParams> = {
  name: 'extract',
  version: 1,
  needs: ['tokenize'],
  work: 'tok',
  parallelUnits: true,
  params: extractParams,
  async units(cfg, upstream) {
    if (cfg.extract.mode !== 'stored') return []
    return extractUnits(cfg, upstream)
  },
  outputs: (u) => [activationPath(u.seed, u.shard), shardStatsPath(u.seed, u.shard)],
  inputs: (u) => ({ units: [{ stage: 'tokenize', unit: 'corpus' }], files: checkpointFiles(u.checkpoint) }),
  run: (u, ctx: StageContext<ExtractParams>) => extractShard(u, ctx),
}

/** Every seed × shard of the main split; refuses seeds whose tokenizer differs from the corpus's. */
export async function extractUnits(cfg: PipelineConfig, upstream: UpstreamView): Promise<ExtractUnit[]> {
  const tokenized = upstream.units('tokenize')
  if (tokenized.length === 0) return []
  const summary = tokenizeSummary(upstream.path(TOKENIZE_OUTPUTS.summary))
  const skipIds = await skipTokenIds(cfg, summary)
  const rowsPerShard = cfg.extract.rows_per_shard
  const mainRows = summary.rows.main
  if (mainRows === 0) throw new UserError(`${upstream.path(TOKENIZE_OUTPUTS.summary)}: the corpus gave no full row of ${cfg.tokenize.ctx} tokens; add documents or lower tokenize.ctx`)
  const units: ExtractUnit[] = []
  for (const seed of cfg.seeds) {
    for (let shard = 0; shard * rowsPerShard < mainRows; shard++) {
      const rowStart = shard * rowsPerShard
      units.push({
        id: `${seed.name}/${shardName(shard)}`,
        seed: seed.name,
        checkpoint: seed.checkpoint,
        shard,
        rowStart,
        rowEnd: Math.min(mainRows, rowStart + rowsPerShard),
        skipIds,
      })
    }
  }
  return units
}

export { readTokenRows }
