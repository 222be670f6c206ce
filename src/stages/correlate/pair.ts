// One correlate unit in stored mode: stream a seed pair's activation shards through PairSums, block by block of
// A's layers when the cross sums do not fit the memory budget, checkpointing the sums every `checkpoint_every`
// tokens so a killed run resumes where it stopped (and ends with identical numbers: the same chunks are added
// in the same order to the same exact float64 state).
import { readActivationBlock, readActivationShardInfo, type ShardInfo } from '../../io/activation-store.js'
import { readStateFile, writeStateFile } from '../../io/state-file.js'
import { gemmFallback } from '../../stats/gemm.js'
import type { StageContext } from '../../runner/stage.js'
import { BaselineMaxima, type RotatedLayers, WithinLayerMoments } from '../../stats/baseline.js'
import { PairMaxima } from '../../stats/maxima.js'
import type { RotationKind } from '../../stats/rotation.js'
import { activationPath } from '../extract/index.js'
import type { CorrelateParams, PairUnit } from './index.js'
import { pairPath } from './index.js'
import { writePairTable } from './pair-table.js'
import { layerBlocks, type ModelLayout, PairSums, type PairSumsState, rotatedLayers, rotationSeed } from './pair-sums.js'

/** What a checkpoint holds: where the pass stood, the open block's sums, and the finished blocks' maxima. */
interface Checkpoint {
  blockIndex: number
  shardsDone: number
  sums?: PairSumsState // absent at a block boundary
  within?: { a: PairSumsState['withinA']; b: PairSumsState['withinB'] }
  results?: SerializedResults
}

interface SerializedResults {
  rows: PairMaxima['rows']
  cols: PairMaxima['cols']
  baselineA: { value: Float64Array; layerValue: Float64Array }
  baselineB: { value: Float64Array; layerValue: Float64Array }
}

export async function correlatePair(u: PairUnit, ctx: StageContext<CorrelateParams>): Promise<void> {
  const params = ctx.params.correlate
  const gemm = gemmFallback // TODO(lead): the fast backend
  const shardPath = (seed: string, shard: number) => ctx.upstream.path(activationPath(seed, shard))
  const infos = await Promise.all(u.shards.map(async (s) => [await readActivationShardInfo(shardPath(u.a, s)), await readActivationShardInfo(shardPath(u.b, s))] as const))
  for (const [i, [a, b]] of infos.entries()) checkAligned(a, b, u, u.shards[i])
  const layoutA: ModelLayout = { nLayers: infos[0][0].nLayers, dMlp: infos[0][0].dMlp }
  const layoutB: ModelLayout = { nLayers: infos[0][1].nLayers, dMlp: infos[0][1].dMlp }
  const blocks = layerBlocks(layoutA, layoutB, params.max_memory_gib * 2 ** 30)
  const rotationKindName = rotationKind(params.baseline.kind)
  const rotation = { kind: rotationKindName, seeds: { [u.a]: rotationSeed(params.baseline.seed, u.a), [u.b]: rotationSeed(params.baseline.seed, u.b) } }
  let rotated: { a: RotatedLayers; b: RotatedLayers } | undefined
  const tokensPerPass = infos.reduce((sum, [a]) => sum + a.tokens, 0)
  ctx.progress.setTotal(blocks.length * tokensPerPass)
  if (blocks.length > 1) ctx.log(`${u.id}: ${blocks.length} passes over the shards (A's layers in blocks of ${blocks[0].count}, to fit max_memory_gib ${params.max_memory_gib})`)

  const checkpointPath = ctx.partialPath('sums.safetensors')
  const saved = readStateFile<Checkpoint>(checkpointPath)
  if (saved) ctx.log(`${u.id}: resuming from a checkpoint (block ${saved.blockIndex + 1}, ${saved.shardsDone} shards done)`)
  let results = saved?.results ? restoreResults(saved.results, layoutA, layoutB) : undefined
  let within = saved?.within

  for (let blockIndex = saved?.blockIndex ?? 0; blockIndex < blocks.length; blockIndex++) {
    const resumed = saved?.sums && blockIndex === saved.blockIndex ? saved.sums : undefined
    const sums = resumed
      ? PairSums.fromState(layoutA, layoutB, resumed, gemm, blockIndex > 0)
      : new PairSums(layoutA, layoutB, blocks[blockIndex], gemm, within && {
          a: WithinLayerMoments.fromState(within.a, gemm),
          b: WithinLayerMoments.fromState(within.b, gemm),
          complete: true,
        })
    const firstShard = resumed ? saved!.shardsDone : 0
    ctx.progress.advance(infos.slice(0, firstShard).reduce((sum, [a]) => sum + a.tokens, 0))
    let sinceCheckpoint = 0
    for (let k = firstShard; k < u.shards.length; k++) {
      if (ctx.signal.aborted) throw new Error('correlate: cancelled')
      const [infoA, infoB] = infos[k]
      const a = await readActivationBlock(shardPath(u.a, u.shards[k]), infoA, 0, layoutA.nLayers * layoutA.dMlp)
      const b = await readActivationBlock(shardPath(u.b, u.shards[k]), infoB, 0, layoutB.nLayers * layoutB.dMlp)
      sums.add(a, b, infoA.tokens)
      ctx.progress.advance(infoA.tokens)
      sinceCheckpoint += infoA.tokens
      if (sinceCheckpoint >= params.checkpoint_every && k + 1 < u.shards.length) {
        const state: Checkpoint = { blockIndex, shardsDone: k + 1, sums: sums.state(), within, results: results && serialize(results) }
        writeStateFile(checkpointPath, state)
        sinceCheckpoint = 0
      }
    }
    rotated ??= {
      a: rotatedLayers(sums.withinA, rotationKindName, params.baseline.seed, u.a, gemm),
      b: rotatedLayers(sums.withinB, rotationKindName, params.baseline.seed, u.b, gemm),
    }
    const block = sums.maxima(rotated.a, rotated.b)
    results = results ? mergeResults(results, block) : block
    within = { a: sums.withinA.state(), b: sums.withinB.state() }
    if (blockIndex + 1 < blocks.length) {
      writeStateFile(checkpointPath, { blockIndex: blockIndex + 1, shardsDone: 0, within, results: serialize(results) } satisfies Checkpoint)
    }
  }
  if (!results) throw new Error(`correlate ${u.id}: no blocks`)
  const dead = { a: countDead(results.maxima.rows.value), b: countDead(results.maxima.cols.value) }
  writePairTable(ctx.outputPath(pairPath(u.a, u.b)), u, { layoutA, layoutB, tokens: tokensPerPass, rotation, ...results })
  if (dead.a || dead.b) ctx.warn(`${u.id}: ${dead.a} neurons of ${u.a} and ${dead.b} of ${u.b} have zero variance (dead) over these tokens; their correlations are NaN`)
}

function checkAligned(a: ShardInfo, b: ShardInfo, u: PairUnit, shard: number): void {
  const same = a.tokens === b.tokens && a.rows.length === b.rows.length && a.rows.every((r, i) => r === b.rows[i]) && a.valid.every((v, i) => v === b.valid[i])
  if (!same) {
    throw new Error(`correlate ${u.id}: shard ${shard} of ${u.a} and of ${u.b} cover different tokens; rerun extract (seedscope run --stages extract --force)`)
  }
}

function rotationKind(kind: 'gaussian_rows' | 'orthogonal'): RotationKind {
  return kind === 'orthogonal' ? 'orthogonal' : 'gaussian-unit-rows'
}

type BlockResults = ReturnType<PairSums['maxima']>

function mergeResults(into: BlockResults, from: BlockResults): BlockResults {
  into.maxima.merge(from.maxima)
  into.baselineA.merge(from.baselineA)
  into.baselineB.merge(from.baselineB)
  return into
}

function serialize(r: BlockResults): SerializedResults {
  return {
    rows: r.maxima.rows,
    cols: r.maxima.cols,
    baselineA: { value: r.baselineA.value, layerValue: r.baselineA.layerValue },
    baselineB: { value: r.baselineB.value, layerValue: r.baselineB.layerValue },
  }
}

function restoreResults(s: SerializedResults, a: ModelLayout, b: ModelLayout): BlockResults {
  const maxima = new PairMaxima(a.nLayers * a.dMlp, b.nLayers * b.dMlp)
  maxima.rows.value.set(s.rows.value)
  maxima.rows.index.set(s.rows.index)
  maxima.cols.value.set(s.cols.value)
  maxima.cols.index.set(s.cols.index)
  const baselineA = new BaselineMaxima(a.nLayers * a.dMlp, b.nLayers)
  baselineA.value.set(s.baselineA.value)
  baselineA.layerValue.set(s.baselineA.layerValue)
  const baselineB = new BaselineMaxima(b.nLayers * b.dMlp, a.nLayers)
  baselineB.value.set(s.baselineB.value)
  baselineB.layerValue.set(s.baselineB.layerValue)
  return { maxima, baselineA, baselineB }
}

function countDead(values: Float64Array): number {
  let n = 0
  for (const v of values) if (v !== v) n++
  return n
}
