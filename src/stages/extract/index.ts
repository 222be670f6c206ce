// The extract stage (SPEC §1, §2, §4, §7): run every seed over the main split's token rows, shard by shard.
// Stored mode (one unit per seed × shard, the most a kill can lose) keeps the site's activations at the valid
// positions as neuron-major Parquet (src/io/activation-store.ts) plus each shard's statistics, which the stats
// stage merges per seed. Streamed mode (one unit, or one per layer block when the sums do not fit
// correlate.max_memory_gib) runs all seeds on the same rows and feeds the correlation sums and statistics in
// memory, checkpointed, writing no activations (src/stages/extract/stream.ts).
import type { PipelineConfig } from '../../config.js'
import { UserError } from '../../errors.js'
import { checkpointFiles } from '../../io/checkpoint.js'
import { readModelConfig } from '../../model/hf-config.js'
import type { Stage, StageContext, Unit, UpstreamView } from '../../runner/stage.js'
import { planExtract } from '../stage-plans.js'
import { type Checkpointing, checkpointing } from '../correlate/index.js'
import { TOKENIZE_OUTPUTS, tokenizeSummary } from '../tokenize/stage.js'
import { extractShard, forwardSlot } from './shard.js'
import { extractStream, type StreamBlock, streamBlocks, streamOutputs, streamUnitId, type StreamUnit } from './stream.js'
import { skipTokenIds } from './valid-positions.js'

export interface ShardUnit extends Unit {
  kind: 'shard'
  seed: string
  checkpoint: string // absolute directory
  shard: number
  rowStart: number // rows [rowStart, rowEnd) of rows.parquet (main rows come first)
  rowEnd: number
  skipIds: number[] // token ids never correlated: BOS plus extract.skip_tokens
}

export type ExtractUnit = ShardUnit | (StreamUnit & { checkpointing: Checkpointing })

export type ExtractParams = ReturnType<typeof extractParams>

function extractParams(cfg: PipelineConfig) {
  const { site, dtype, rows_per_shard, batch_rows, skip_tokens, top_k, mode } = cfg.extract
  // Streamed mode computes the pair sums here, so correlate.operand_bits is an input (left out at its default).
  const operandBits = mode === 'streamed' && cfg.correlate.operand_bits === 16 ? { operand_bits: 16 as const } : {}
  return { extract: { site, dtype, rows_per_shard, batch_rows, skip_tokens, top_k, mode, ...operandBits } }
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
  pipelineDepth: 2, // per forward slot: one unit in its forward passes, the one before writing its shard
  params: extractParams,
  units: (cfg, upstream) => extractUnits(cfg, upstream),
  outputs: (u) => (u.kind === 'stream' ? streamOutputs(u) : [activationPath(u.seed, u.shard), shardStatsPath(u.seed, u.shard)]),
  inputs: (u) => ({
    units: [{ stage: 'tokenize', unit: 'corpus' }],
    files: u.kind === 'stream' ? u.seeds.flatMap((s) => checkpointFiles(s.checkpoint)) : checkpointFiles(u.checkpoint),
  }),
  run: (u, ctx: StageContext<ExtractParams>) => (u.kind === 'stream' ? forwardSlot(ctx.execution.concurrency, () => extractStream(u, ctx)) : extractShard(u, ctx)),
  plan: planExtract,
}

/** The layer blocks of the streamed pass for this config, or undefined when it is one pass (see streamBlocks). */
export function streamedBlocks(cfg: PipelineConfig): StreamBlock[] | undefined {
  return streamBlocks(seedLayouts(cfg), cfg.correlate.max_memory_gib)
}

/** Each seed's layers and d_mlp from its config.json; [] when one cannot be read (the unit's inputs then say why). */
function seedLayouts(cfg: PipelineConfig): { nLayers: number; dMlp: number }[] {
  try {
    return cfg.seeds.map((s) => readModelConfig(s.checkpoint).shape)
  } catch {
    return []
  }
}

/** Stored: every seed × shard of the main split. Streamed: one unit over every shard (one per layer block). */
export async function extractUnits(cfg: PipelineConfig, upstream: UpstreamView): Promise<ExtractUnit[]> {
  if (upstream.units('tokenize').length === 0) return []
  const summaryPath = upstream.path(TOKENIZE_OUTPUTS.summary)
  const summary = tokenizeSummary(summaryPath)
  const skipIds = await skipTokenIds(cfg, summary)
  const rowsPerShard = cfg.extract.rows_per_shard
  const mainRows = summary.rows.main
  if (mainRows === 0) {
    throw new UserError(`${summaryPath}: the corpus gave no full row of ${cfg.tokenize.ctx} tokens; add documents or lower tokenize.ctx`)
  }
  const shards = Array.from({ length: Math.ceil(mainRows / rowsPerShard) }, (_, shard) => ({
    shard,
    rowStart: shard * rowsPerShard,
    rowEnd: Math.min(mainRows, (shard + 1) * rowsPerShard),
  }))
  if (cfg.extract.mode === 'streamed') {
    const seeds = cfg.seeds.map((s) => ({ name: s.name, checkpoint: s.checkpoint }))
    const unit = { kind: 'stream' as const, seeds, shards, skipIds, checkpointing: checkpointing(cfg) }
    const blocks = streamedBlocks(cfg)
    return blocks ? blocks.map((block) => ({ ...unit, id: streamUnitId(block), block })) : [{ ...unit, id: streamUnitId() }]
  }
  return cfg.seeds.flatMap((seed) =>
    shards.map((s): ShardUnit => ({ id: `${seed.name}/${shardName(s.shard)}`, kind: 'shard', seed: seed.name, checkpoint: seed.checkpoint, ...s, skipIds })),
  )
}
