// One stored-mode extract unit: a seed's forward passes over one shard of token rows, batch by batch, into a
// ShardBuffer; then the shard's activation Parquet file and its statistics state.
import pLimit, { type LimitFunction } from 'p-limit'
import { countValid, writeActivationShard } from '../../io/activation-store.js'
import { writeSafetensors } from '../../io/safetensors.js'
import { readModelConfig } from '../../model/hf-config.js'
import { borrowModelRunner, prefetchModelRunner, prepareHookBuffers } from '../../model/model-worker.js'
import { weightsCache } from '../../model/weights-file.js'
import type { StageContext } from '../../runner/stage.js'
import { BufferPool } from '../../stats/buffer-pool.js'
import { TopActivations } from '../../stats/top-activations.js'
import { readTokenRows, type TokenRow } from '../tokenize/stage.js'
import type { ExtractParams, ShardUnit } from './index.js'
import { activationPath, shardStatsPath } from './index.js'
import { idsOf, ShardBuffer, type Site } from './shard-buffer.js'
import { shardStatsTensors } from './shard-stats.js'
import { validPositions } from './valid-positions.js'

export const EXTRACTION_REQUEST = { mlpPre: true, mlpPost: true } // hook_pre feeds the moments (SPEC §4)

export async function extractShard(unit: ShardUnit, ctx: StageContext<ExtractParams>): Promise<void> {
  const { extract: params } = ctx.params
  const shard = await forwardShard(unit, ctx, { site: params.site, batchRows: params.batch_rows })
  const { buffer, rows, positions, valid } = shard
  // Taken here, off the forward slot, while the next unit's model runs.
  const top = new TopActivations(shard.layout.nLayers * shard.layout.dMlp, params.top_k)
  top.addRows(buffer.acts, buffer.tokens, buffer.places)
  const layout = { ...shard.layout, rows: rows.map((r) => r.row), positions, valid, dtype: params.dtype, site: params.site }
  // The next unit's forward passes run meanwhile: the write yields to them between row groups.
  await writeActivationShard(ctx.outputPath(activationPath(unit.seed, unit.shard)), layout, buffer.acts)
  writeSafetensors(ctx.outputPath(shardStatsPath(unit.seed, unit.shard)), shardStatsTensors(buffer.moments, top))
  spareBuffers.giveBack(buffer.acts)
}

/**
 * Shard buffers of finished units, for the next ones: a fresh buffer costs a page fault (and the kernel's
 * zeroing) per 4 KiB of its ~600 MB at GPT-2-small size, and unmapping one interrupts the model's threads. At
 * most two wait here.
 */
const spareBuffers = new BufferPool(2)

export interface ForwardedShard {
  rows: TokenRow[]
  positions: number
  valid: Uint8Array // [rows · positions]
  layout: { nLayers: number; dMlp: number }
  buffer: ShardBuffer
}

/**
 * Rows [rowStart, rowEnd) through one seed's extraction graph (in a worker thread), batch by batch, holding one of
 * the stage's forward slots meanwhile.
 */
export async function forwardShard(
  unit: { checkpoint: string; rowStart: number; rowEnd: number; skipIds: number[] },
  ctx: StageContext<unknown>,
  options: { site: Site; batchRows: number },
): Promise<ForwardedShard> {
  const rows = await readTokenRows(ctx.upstream.path('tokenize'), { rowStart: unit.rowStart, rowEnd: unit.rowEnd })
  const positions = rows[0].tokens.length
  const valid = validPositions(rows.map((r) => r.tokens), positions, unit.skipIds)
  ctx.progress.setTotal(rows.length * positions)
  const session = { threads: ctx.execution.threads, provider: ctx.execution.provider, weightsDir: weightsCache(ctx.cacheDir) }
  prefetchModelRunner(unit.checkpoint, EXTRACTION_REQUEST, session) // the next seed's model loads while this one runs
  // Memory for the activations, sized for every token of the shard, not just its valid ones, so that any shard of
  // this many rows fits a spare buffer (valid counts differ from shard to shard; one a little too small meant a
  // fresh one). Fresh memory is touched now: the first units get here while the model loads in its worker, on a
  // core that is otherwise idle, and the kernel's zeroing of ~600 MB (GPT-2 small) then no longer competes with the
  // forward passes. The hook buffers the model writes into are prepared the same way.
  const { shape } = readModelConfig(unit.checkpoint)
  const capacity = shape.nLayers * shape.dMlp * rows.length * positions
  const storage = spareBuffers.take(capacity) ?? new Float32Array(capacity).fill(0)
  prepareHookBuffers(shape, EXTRACTION_REQUEST, Math.min(options.batchRows, rows.length), positions)
  return forwardSlot(ctx.execution.concurrency, async () => {
    const model = await borrowModelRunner(unit.checkpoint, EXTRACTION_REQUEST, session)
    try {
      const layout = { nLayers: model.config.shape.nLayers, dMlp: model.config.shape.dMlp }
      const tokens = countValid(valid)
      const buffer = new ShardBuffer(layout, tokens, options.site, storage)
      // The next batch waits in the worker's queue while this thread absorbs the current one, so the model never
      // idles while this thread is busy (absorbing, or writing the previous unit's shard).
      type Pending = { start: number; batch: TokenRow[]; outputs: ReturnType<typeof model.run> }
      const forward = (start: number): Pending => {
        const batch = rows.slice(start, start + options.batchRows)
        const outputs = model.run({ data: idsOf(batch, positions), batch: batch.length, positions })
        outputs.catch(() => {}) // awaited below; must not count as unhandled while the batch before is absorbed
        return { start, batch, outputs }
      }
      let next: Pending | undefined = forward(0)
      while (next) {
        const { start, batch, outputs }: Pending = next
        next = start + options.batchRows < rows.length && !ctx.signal.aborted ? forward(start + options.batchRows) : undefined
        const absorbed = await outputs
        if (ctx.signal.aborted) {
          await next?.outputs.catch(() => {})
          throw new Error(`${ctx.stage}: cancelled`)
        }
        buffer.absorb(absorbed, valid.subarray(start * positions, (start + batch.length) * positions), batch[0].row, positions)
        model.recycle?.(absorbed)
        ctx.progress.advance(batch.length * positions)
      }
      return { rows, positions, valid, layout, buffer }
    } finally {
      await model.close()
    }
  })
}

// At most execution.concurrency units run forward passes at once (each model already uses `threads` cores). The
// stage keeps twice as many units in flight (pipelineDepth 2): while one unit's model works through its batches,
// the unit before it writes its shard. A streamed unit holds a slot throughout.
let slots: { size: number; limit: LimitFunction } | undefined

export function forwardSlot<T>(concurrency: number, work: () => Promise<T>): Promise<T> {
  if (slots?.size !== concurrency) slots = { size: concurrency, limit: pLimit(concurrency) }
  return slots.limit(work)
}
