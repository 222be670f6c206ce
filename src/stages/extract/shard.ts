// One stored-mode extract unit: a seed's forward passes over one shard of token rows, batch by batch, into a
// ShardBuffer; then the shard's activation Parquet file and its statistics state.
import { countValid, writeActivationShard } from '../../io/activation-store.js'
import { writeSafetensors } from '../../io/safetensors.js'
import { borrowModelRunner } from '../../model/model-worker.js'
import type { StageContext } from '../../runner/stage.js'
import { readTokenRows, type TokenRow } from '../tokenize/stage.js'
import type { ExtractParams, ShardUnit } from './index.js'
import { activationPath, shardStatsPath } from './index.js'
import { idsOf, ShardBuffer, type Site } from './shard-buffer.js'
import { shardStatsTensors } from './shard-stats.js'
import { validPositions } from './valid-positions.js'

export const EXTRACTION_REQUEST = { mlpPre: true, mlpPost: true } // hook_pre feeds the moments (SPEC §4)

export async function extractShard(unit: ShardUnit, ctx: StageContext<ExtractParams>): Promise<void> {
  const { extract: params } = ctx.params
  const shard = await forwardShard(unit, ctx, { site: params.site, topK: params.top_k, batchRows: params.batch_rows })
  const { buffer, rows, positions, valid } = shard
  const layout = { ...shard.layout, rows: rows.map((r) => r.row), positions, valid, dtype: params.dtype, site: params.site }
  writeActivationShard(ctx.outputPath(activationPath(unit.seed, unit.shard)), layout, buffer.acts)
  writeSafetensors(ctx.outputPath(shardStatsPath(unit.seed, unit.shard)), shardStatsTensors(buffer.moments, buffer.top))
}

export interface ForwardedShard {
  rows: TokenRow[]
  positions: number
  valid: Uint8Array // [rows · positions]
  layout: { nLayers: number; dMlp: number }
  buffer: ShardBuffer
}

/** Rows [rowStart, rowEnd) through one seed's extraction graph (in a worker thread), batch by batch. */
export async function forwardShard(
  unit: { checkpoint: string; rowStart: number; rowEnd: number; skipIds: number[] },
  ctx: StageContext<unknown>,
  options: { site: Site; topK: number; batchRows: number },
): Promise<ForwardedShard> {
  const rows = await readTokenRows(ctx.upstream.path('tokenize'), { rowStart: unit.rowStart, rowEnd: unit.rowEnd })
  const positions = rows[0].tokens.length
  const valid = validPositions(rows.map((r) => r.tokens), positions, unit.skipIds)
  ctx.progress.setTotal(rows.length * positions)
  const model = await borrowModelRunner(unit.checkpoint, EXTRACTION_REQUEST, { threads: ctx.execution.threads, provider: ctx.execution.provider })
  try {
    const layout = { nLayers: model.config.shape.nLayers, dMlp: model.config.shape.dMlp }
    const buffer = new ShardBuffer(layout, countValid(valid), options.topK, options.site)
    for (let start = 0; start < rows.length; start += options.batchRows) {
      if (ctx.signal.aborted) throw new Error(`${ctx.stage}: cancelled`)
      const batch = rows.slice(start, start + options.batchRows)
      const outputs = await model.run({ data: idsOf(batch, positions), batch: batch.length, positions })
      buffer.absorb(outputs, valid.subarray(start * positions, (start + batch.length) * positions), batch[0].row, positions)
      ctx.progress.advance(batch.length * positions)
    }
    return { rows, positions, valid, layout, buffer }
  } finally {
    await model.close()
  }
}
