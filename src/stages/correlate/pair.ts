// One correlate unit in stored mode: stream a seed pair's activation shards into the cross sums, block by block of
// A's layers when the sums do not fit the memory budget; both seeds' within-layer moments come from the stats
// stage (computed once per seed). The sums are checkpointed every `correlate.checkpoint_every` tokens (or minutes), so a killed run resumes where it stopped and
// ends with identical numbers: the same chunks are added in the same order to the same exact float64 state.
import { readActivationRows, readActivationShardInfo, type ShardInfo } from '../../io/activation-store.js'
import { CheckpointClock, readStateFile, writeStateFile } from '../../io/state-file.js'
import { loadFastGemm } from '../../model/gemm.js'
import type { StageContext } from '../../runner/stage.js'
import { WithinLayerMoments, type WithinLayerState } from '../../stats/baseline.js'
import type { Gemm } from '../../stats/gemm.js'
import { type ChunkRows, PearsonAccumulator, type PearsonState } from '../../stats/pearson.js'
import { activationPath } from '../extract/index.js'
import { withinPath } from '../stats.js'
import type { CorrelateParams, PairUnit } from './index.js'
import { writePairOutput } from './pair-output.js'
import { crossSums, layerBlocks, mergePairResults, type ModelLayout, pairResults, type PairResults, rotatedLayers, rotationKind, rotationSeed } from './pair-sums.js'
import { restorePairResults, serializePairResults, type SerializedPairResults } from './pair-results-state.js'
import { kernels } from '../../stats/kernels.js'

/** Where the pass stood: the open block's sums (absent at a block boundary) and the finished blocks' results. */
interface Checkpoint {
  blockIndex: number
  shardsDone: number
  cross?: PearsonState
  results?: SerializedPairResults
}

export async function correlatePair(u: Extract<PairUnit, { mode: 'stored' }>, ctx: StageContext<CorrelateParams>): Promise<void> {
  const params = ctx.params.correlate
  const { gemm } = loadFastGemm(ctx.execution.threads, { operandBits: params.operand_bits })
  kernels.setThreads(ctx.execution.threads)
  const shardPath = (seed: string, shard: number) => ctx.upstream.path(activationPath(seed, shard))
  const infos = await Promise.all(u.shards.map(async (s) => [await readActivationShardInfo(shardPath(u.a, s)), await readActivationShardInfo(shardPath(u.b, s))] as const))
  infos.forEach(([a, b], i) => checkAligned(a, b, u.id, [u.a, u.b], u.shards[i]))
  const layoutA: ModelLayout = { nLayers: infos[0][0].nLayers, dMlp: infos[0][0].dMlp }
  const layoutB: ModelLayout = { nLayers: infos[0][1].nLayers, dMlp: infos[0][1].dMlp }
  const blocks = layerBlocks(layoutA, layoutB, params.max_memory_gib * 2 ** 30)
  const tokensPerPass = infos.reduce((sum, [a]) => sum + a.tokens, 0)
  ctx.progress.setTotal(blocks.length * tokensPerPass)
  if (blocks.length > 1) ctx.log(`${blocks.length} passes over the shards (A's layers in blocks of ${blocks[0].count}, to fit max_memory_gib ${params.max_memory_gib})`)

  const checkpointPath = ctx.partialPath('sums.safetensors')
  const saved = readStateFile<Checkpoint>(checkpointPath)
  if (saved) ctx.log(`resuming from a checkpoint (layer block ${saved.blockIndex + 1} of ${blocks.length}, ${saved.shardsDone} of ${u.shards.length} shards done)`)
  const rotated = rotatedPair(u, params, seedWithin(ctx, u.a, gemm), seedWithin(ctx, u.b, gemm), gemm)
  let results: PairResults | undefined = saved?.results && restorePairResults(saved.results, layoutA, layoutB)
  if (saved) ctx.progress.advance(saved.blockIndex * tokensPerPass + (saved.cross ? infos.slice(0, saved.shardsDone).reduce((sum, [a]) => sum + a.tokens, 0) : 0))

  let a: ChunkRows | undefined, b: ChunkRows | undefined
  for (let blockIndex = saved?.blockIndex ?? 0; blockIndex < blocks.length; blockIndex++) {
    const resumed = saved?.cross && blockIndex === saved.blockIndex ? saved : undefined
    const cross = resumed ? PearsonAccumulator.fromState(resumed.cross!, gemm) : crossSums(layoutA, layoutB, blocks[blockIndex], gemm)
    const firstShard = resumed?.shardsDone ?? 0
    const clock = new CheckpointClock(u.checkpointing)
    for (let k = firstShard; k < u.shards.length; k++) {
      if (ctx.signal.aborted) throw new Error('correlate: cancelled')
      const [infoA, infoB] = infos[k]
      // Only the block's rows of A; all of B. Each read reuses the previous one's memory.
      a = await readActivationRows(shardPath(u.a, u.shards[k]), infoA, cross.a.start, cross.a.start + cross.a.count, a)
      b = await readActivationRows(shardPath(u.b, u.shards[k]), infoB, 0, layoutB.nLayers * layoutB.dMlp, b)
      cross.add(a, b, infoA.tokens)
      ctx.progress.advance(infoA.tokens)
      if (clock.count(infoA.tokens) && k + 1 < u.shards.length) {
        save(checkpointPath, { blockIndex, shardsDone: k + 1, cross: cross.sums, results })   // written now: no copy
        clock.saved()
      }
    }
    const block = pairResults(cross, layoutA, layoutB, rotated.a, rotated.b)
    results = results ? mergePairResults(results, block) : block
    if (blockIndex + 1 < blocks.length) save(checkpointPath, { blockIndex: blockIndex + 1, shardsDone: 0, results })
  }
  writePairOutput(ctx, u, { layoutA, layoutB, tokens: tokensPerPass, rotation: rotationRecord(u, params), ...results! })
}

function save(path: string, s: Omit<Checkpoint, 'results'> & { results?: PairResults }): void {
  writeStateFile(path, { ...s, results: s.results && serializePairResults(s.results) } satisfies Checkpoint)
}

/** A seed's within-layer second moments, from the stats stage. */
export function seedWithin(ctx: StageContext<unknown>, seed: string, gemm: Gemm): WithinLayerMoments {
  const state = readStateFile<WithinLayerState>(ctx.upstream.path(withinPath(seed)))
  if (!state) throw new Error(`correlate: ${withinPath(seed)} is missing; run the stats stage`)
  return WithinLayerMoments.fromState(state, gemm)
}

/** Each seed's rotated layers, built once per pair from its finished within-layer moments. */
export function rotatedPair(u: { a: string; b: string }, params: CorrelateParams['correlate'], withinA: WithinLayerMoments, withinB: WithinLayerMoments, gemm: Gemm) {
  const kind = rotationKind(params.baseline.kind)
  return {
    a: rotatedLayers(withinA, kind, params.baseline.seed, u.a, gemm),
    b: rotatedLayers(withinB, kind, params.baseline.seed, u.b, gemm),
  }
}

/** What the pair table records about the baseline: the kind and each seed's rotation seed. */
export function rotationRecord(u: { a: string; b: string }, params: CorrelateParams['correlate']) {
  const base = params.baseline.seed
  return { kind: rotationKind(params.baseline.kind), seeds: { [u.a]: rotationSeed(base, u.a), [u.b]: rotationSeed(base, u.b) } }
}

/** Two seeds' copies of a shard must hold the same valid tokens. */
export function checkAligned(a: ShardInfo, b: ShardInfo, unit: string, [seedA, seedB]: [string, string], shard: number): void {
  const same = a.tokens === b.tokens && a.rows.length === b.rows.length && a.rows.every((r, i) => r === b.rows[i]) && a.valid.every((v, i) => v === b.valid[i])
  if (!same) {
    throw new Error(`correlate ${unit}: shard ${shard} of ${seedA} and of ${seedB} cover different tokens; rerun extract (seedscope run --stages extract --force)`)
  }
}
