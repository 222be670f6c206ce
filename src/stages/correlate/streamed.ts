// A correlate unit in streamed mode: the extract stage already summed the pair over every token; read the sums,
// compute both directions' maxima and the baselines, and write the same pair table as stored mode.
import { readStateFile } from '../../io/state-file.js'
import { loadFastGemm } from '../../model/gemm.js'
import type { StageContext } from '../../runner/stage.js'
import { PearsonAccumulator, type PearsonState } from '../../stats/pearson.js'
import { streamCrossPath } from '../extract/stream.js'
import type { CorrelateParams, PairUnit } from './index.js'
import { rotatedPair, rotationRecord, seedWithin } from './pair.js'
import { writePairOutput } from './pair-output.js'
import { mergePairResults, pairResults, type PairResults } from './pair-sums.js'
import { kernels } from '../../stats/kernels.js'

export async function finishStreamedPair(u: PairUnit, ctx: StageContext<CorrelateParams>): Promise<void> {
  const params = ctx.params.correlate
  const { gemm } = loadFastGemm(ctx.execution.threads)
  kernels.setThreads(ctx.execution.threads)
  const read = <T,>(relative: string): T => {
    const state = readStateFile<T>(ctx.upstream.path(relative))
    if (!state) throw new Error(`correlate ${u.id}: ${relative} is missing`)
    return state
  }
  if (u.mode !== 'streamed') throw new Error(`correlate ${u.id}: not a streamed unit`)
  const withinA = seedWithin(ctx, u.a, gemm)
  const withinB = seedWithin(ctx, u.b, gemm)
  const layoutA = { nLayers: withinA.nLayers, dMlp: withinA.dMlp }
  const layoutB = { nLayers: withinB.nLayers, dMlp: withinB.dMlp }
  const rotated = rotatedPair(u, params, withinA, withinB, gemm)
  // One block at a time (the sums of one need not fit beside another's), merged as stored mode merges its blocks.
  const blocks = u.blocks ?? [undefined]
  let results: PairResults | undefined
  let tokens = 0
  for (const block of blocks) {
    const cross = PearsonAccumulator.fromState(read<PearsonState>(streamCrossPath(u.a, u.b, block)), gemm)
    if (!results) ctx.progress.setTotal(cross.n * blocks.length)
    const part = pairResults(cross, layoutA, layoutB, rotated.a, rotated.b)
    results = results ? mergePairResults(results, part) : part
    tokens = cross.n
    ctx.progress.advance(cross.n)
  }
  writePairOutput(ctx, u, { layoutA, layoutB, tokens, rotation: rotationRecord(u, params), ...results! })
}
