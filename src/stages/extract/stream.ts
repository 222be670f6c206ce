// Streamed mode (SPEC §7): every seed runs on the same batch of token rows and the activations go straight into
// each pair's cross sums, each seed's within-layer moments and its neuron statistics; nothing per token is
// written. The work is cut into the same shards of rows as stored mode, and each shard's activations enter the
// sums as one chunk, exactly as stored mode reads them back: both modes add the same numbers in the same order,
// so they give identical results. The sums are checkpointed at shard boundaries, by token count or elapsed time.
import { createHash } from 'node:crypto'
import { countValid } from '../../io/activation-store.js'
import { writeSafetensors } from '../../io/safetensors.js'
import { CheckpointClock, readStateFile, writeStateFile } from '../../io/state-file.js'
import { loadFastGemm } from '../../model/gemm.js'
import { type ModelRunner, startModelRunner } from '../../model/model-worker.js'
import { weightsCache } from '../../model/weights-file.js'
import type { StageContext } from '../../runner/stage.js'
import { WithinLayerMoments, type WithinLayerState } from '../../stats/baseline.js'
import { type MomentsState, NeuronMoments } from '../../stats/moments.js'
import { TopActivations, type TopActivationsState } from '../../stats/top-activations.js'
import { PearsonAccumulator, type PearsonState } from '../../stats/pearson.js'
import { addChunk, ALL_LAYERS, crossSums, type LayerBlock, layerBlocks, type ModelLayout, unorderedPairs } from '../correlate/pair-sums.js'
import { readTokenRows } from '../tokenize/stage.js'
import type { Checkpointing } from '../correlate/index.js'
import type { ExtractParams } from './index.js'
import { EXTRACTION_REQUEST } from './shard.js'
import { idsOf, ShardBuffer } from './shard-buffer.js'
import { shardStatsTensors } from './shard-stats.js'
import { validPositions } from './valid-positions.js'
import { kernels } from '../../stats/kernels.js'

/**
 * One pass of every seed over every shard. When all pairs' float64 cross sums do not fit correlate.max_memory_gib,
 * the pass is split by A's layers: unit k of n accumulates layers [first, first + count) of each pair's A against
 * all of B, and runs the forward passes again (SPEC §7: recomputing is cheaper than storing). The first unit also
 * sums the statistics and within-layer moments.
 */
export interface StreamUnit {
  id: string // 'stream', or 'stream-<k>of<n>' when blocked
  kind: 'stream'
  seeds: { name: string; checkpoint: string }[]
  shards: { shard: number; rowStart: number; rowEnd: number }[]
  skipIds: number[]
  block?: StreamBlock
}

export interface StreamBlock extends LayerBlock {
  index: number // 0-based
  total: number
}

export const streamStatsPath = (seed: string) => `extract/${seed}/stream.stats.safetensors`
export const streamWithinPath = (seed: string) => `extract/${seed}/stream.within.safetensors`
export const streamCrossPath = (a: string, b: string, block?: StreamBlock) =>
  `extract/pairs/${a}--${b}.cross${block ? `.layers-${block.first}-${block.first + block.count - 1}` : ''}.safetensors`

/** The stream units' ids: 'stream' unblocked, else 'stream-1of3', 'stream-2of3', … */
export const streamUnitId = (block?: Pick<StreamBlock, 'index' | 'total'>) => (block ? `stream-${block.index + 1}of${block.total}` : 'stream')

/**
 * The layer blocks of a streamed pass: none when every pair's sums fit `maxMemoryGiB` at once, else blocks of A's
 * layers sized for all pairs together. Blocking needs one layout for all seeds (a seed family shares it).
 */
export function streamBlocks(layouts: readonly ModelLayout[], maxMemoryGiB: number): StreamBlock[] | undefined {
  const pairs = (layouts.length * (layouts.length - 1)) / 2
  const [first] = layouts
  if (pairs === 0 || layouts.some((l) => l.nLayers !== first.nLayers || l.dMlp !== first.dMlp)) return undefined
  const blocks = layerBlocks(first, first, (maxMemoryGiB * 2 ** 30) / pairs)
  return blocks.length === 1 ? undefined : blocks.map((b, index) => ({ ...b, index, total: blocks.length }))
}

/** Whether the unit sums each seed's statistics and within-layer moments: only the first (or only) pass does. */
const sumsSeeds = (u: StreamUnit) => !u.block || u.block.index === 0

export function streamOutputs(u: StreamUnit): string[] {
  const sums = sumsSeeds(u) ? u.seeds.flatMap((s) => [streamStatsPath(s.name), streamWithinPath(s.name)]) : []
  return [...sums, ...unorderedPairs(u.seeds).map(([a, b]) => streamCrossPath(a.name, b.name, u.block))]
}

interface SeedSums {
  moments: NeuronMoments
  top: TopActivations
  within: WithinLayerMoments
}

/** A checkpoint: how many shards are in, which rows those were, and every accumulator. */
interface StreamCheckpoint {
  shardsDone: number
  rows: string // hash of the row ranges and skipped ids: a changed corpus or config is refused, not mixed
  seeds: Record<string, { moments: MomentsState; top: TopActivationsState; within: WithinLayerState }>
  pairs: Record<string, PearsonState>
}

export async function extractStream(u: StreamUnit & { checkpointing: Checkpointing }, ctx: StageContext<ExtractParams>): Promise<void> {
  const params = ctx.params.extract
  // correlate.operand_bits applies to the pair sums only; the within-layer moments are the stats stage's, as in stored mode.
  const { gemm } = loadFastGemm(ctx.execution.threads)
  const { gemm: pairGemm } = loadFastGemm(ctx.execution.threads, { operandBits: params.operand_bits })
  kernels.setThreads(ctx.execution.threads)
  const threads = Math.max(1, Math.floor(ctx.execution.threads / u.seeds.length))
  // Later layer blocks only add their layers' cross sums: no statistics, so no hook_pre from the models (the
  // site's values do not depend on which other outputs a graph exposes; checked on GPT-2 and GPT-NeoX graphs).
  const seedSums = sumsSeeds(u)
  const request = seedSums || params.site === 'blocks.{l}.mlp.hook_pre' ? EXTRACTION_REQUEST : { mlpPost: true }
  const runners = await Promise.all(u.seeds.map((s) => startModelRunner(s.checkpoint, request, { threads, provider: ctx.execution.provider, weightsDir: weightsCache(ctx.cacheDir) })))
  try {
    const layouts = runners.map((r) => ({ nLayers: r.config.shape.nLayers, dMlp: r.config.shape.dMlp }))
    const pairs = unorderedPairs(u.seeds.map((s, i) => ({ ...s, index: i })))
    const checkpointPath = ctx.partialPath('stream.safetensors')
    const rowsKey = rowsFingerprint(u)
    const saved = readStateFile<StreamCheckpoint>(checkpointPath)
    if (saved && saved.rows !== rowsKey) {
      throw new Error(`${checkpointPath}: this checkpoint covers other token rows than the current config; delete it to start over`)
    }
    const sums: SeedSums[] | undefined = seedSums ? u.seeds.map((s, i) => {
      const state = saved?.seeds[s.name]
      const n = layouts[i].nLayers * layouts[i].dMlp
      return {
        moments: state ? NeuronMoments.fromState(state.moments) : new NeuronMoments(n),
        top: state ? TopActivations.fromState(state.top) : new TopActivations(n, params.top_k),
        within: state ? WithinLayerMoments.fromState(state.within, gemm) : new WithinLayerMoments({ ...layouts[i], gemm }),
      }
    }) : undefined
    const cross: PearsonAccumulator[] = pairs.map(([a, b]) => {
      const state = saved?.pairs[`${a.name}--${b.name}`]
      return state ? PearsonAccumulator.fromState(state, pairGemm) : crossSums(layouts[a.index], layouts[b.index], u.block ?? ALL_LAYERS(layouts[a.index]), pairGemm)
    })
    if (u.block) ctx.log(`layer block ${u.block.index + 1} of ${u.block.total}: A's layers ${u.block.first}–${u.block.first + u.block.count - 1} against all of B, to fit correlate.max_memory_gib`)
    const firstShard = saved?.shardsDone ?? 0
    const rowsOf = (k: number) => u.shards[k].rowEnd - u.shards[k].rowStart
    const totalRows = u.shards.reduce((sum, _, k) => sum + rowsOf(k), 0)
    if (saved) ctx.log(`resuming from a checkpoint (${firstShard} of ${u.shards.length} shards done)`)

    const clock = new CheckpointClock(u.checkpointing)
    let positions = 0
    const maxShardRows = Math.max(...u.shards.map((_, k) => rowsOf(k)))
    let storage: Float32Array[] | undefined // each seed's activations, reused by every shard
    for (let k = firstShard; k < u.shards.length; k++) {
      if (ctx.signal.aborted) throw new Error('extract: cancelled')
      const shard = u.shards[k]
      const rows = await readTokenRows(ctx.upstream.path('tokenize'), { rowStart: shard.rowStart, rowEnd: shard.rowEnd })
      positions = rows[0].tokens.length
      if (k === firstShard) ctx.progress.setTotal(totalRows * positions * u.seeds.length)
      if (k === firstShard && firstShard > 0) ctx.progress.advance(u.shards.slice(0, k).reduce((sum, _, j) => sum + rowsOf(j), 0) * positions * u.seeds.length)
      const valid = validPositions(rows.map((r) => r.tokens), positions, u.skipIds)
      const tokens = countValid(valid)
      storage ??= layouts.map((l) => new Float32Array(l.nLayers * l.dMlp * maxShardRows * positions))
      const buffers = layouts.map((layout, i) => new ShardBuffer(layout, tokens, params.site, storage![i], seedSums))
      for (let start = 0; start < rows.length; start += params.batch_rows) {
        const batch = rows.slice(start, start + params.batch_rows)
        const ids = { data: idsOf(batch, positions), batch: batch.length, positions }
        const batchValid = valid.subarray(start * positions, (start + batch.length) * positions)
        await Promise.all(runners.map(async (runner: ModelRunner, i) => {
          const outputs = await runner.run(ids)
          buffers[i].absorb(outputs, batchValid, batch[0].row, positions)
          runner.recycle?.(outputs)
          ctx.progress.advance(batch.length * positions)
        }))
      }
      // The shard's activations enter every accumulator as one chunk, as stored mode reads them back.
      pairs.forEach(([a, b], p) => addChunk(cross[p], buffers[a.index].acts, buffers[b.index].acts, tokens))
      if (sums) {
        sums.forEach((s, i) => {
          s.within.add(buffers[i].acts, tokens)
          s.moments.merge(buffers[i].moments)
          s.top.addRows(buffers[i].acts, tokens, buffers[i].places)
        })
      }
      if (clock.count(tokens) && k + 1 < u.shards.length) {
        writeStateFile(checkpointPath, checkpoint(k + 1, rowsKey, u, sums, pairs, cross))
        clock.saved()
      }
    }
    if (sums) {
      u.seeds.forEach((s, i) => {
        writeSafetensors(ctx.outputPath(streamStatsPath(s.name)), shardStatsTensors(sums[i].moments, sums[i].top))
        writeStateFile(ctx.outputPath(streamWithinPath(s.name)), sums[i].within.sums)
      })
    }
    pairs.forEach(([a, b], p) => writeStateFile(ctx.outputPath(streamCrossPath(a.name, b.name, u.block)), cross[p].sums))
  } finally {
    await Promise.all(runners.map((r) => r.close()))
  }
}

/** The pass's state, its big sums as live arrays (not copies): write it at once. */
function checkpoint(
  shardsDone: number,
  rows: string,
  u: StreamUnit,
  sums: SeedSums[] | undefined, // absent in a later layer block
  pairs: [{ name: string }, { name: string }][],
  cross: PearsonAccumulator[],
): StreamCheckpoint {
  return {
    shardsDone,
    rows,
    seeds: sums ? Object.fromEntries(u.seeds.map((s, i) => [s.name, { moments: sums[i].moments.sums, top: sums[i].top.sums, within: sums[i].within.sums }])) : {},
    pairs: Object.fromEntries(pairs.map(([a, b], p) => [`${a.name}--${b.name}`, cross[p].sums])),
  }
}

function rowsFingerprint(u: StreamUnit): string {
  return createHash('sha256').update(JSON.stringify({ shards: u.shards, skip: u.skipIds, seeds: u.seeds.map((s) => s.name), block: u.block })).digest('hex')
}
