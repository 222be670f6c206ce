// The correlate stage's screened mode (correlate.mode: screened): one unit for the whole family, since the seeds
// share one basis. It writes the same pair tables as the full computation, with the same maxima, argmaxes and
// universality flags; a baseline the flags do not need exactly is given as an interval (baseline_lo/_hi). The
// method is src/stats/screen/family.ts; its state is checkpointed after each pass over the shards, and within a
// pass every correlate.checkpoint_every tokens (or checkpoint_minutes), as the full mode's sums are.
import { readActivationRows, readActivationShardInfo, type ShardInfo } from '../../io/activation-store.js'
import { readStateFile, writeStateFile } from '../../io/state-file.js'
import { loadFastGemm } from '../../model/gemm.js'
import type { StageContext } from '../../runner/stage.js'
import { kernels } from '../../stats/kernels.js'
import type { ChunkRows } from '../../stats/pearson.js'
import { fullFlops, screenFamily, screeningOverheadFlops, type ScreenReport, type ScreenState } from '../../stats/screen/family.js'
import { activationPath } from '../extract/index.js'
import { unorderedPairs } from './pair-sums.js'
import { type CorrelateParams, type FamilyUnit, pairName, screenReportPath } from './index.js'
import { checkAligned, correlatePair, rotationRecord, seedWithin } from './pair.js'
import { exactWhereEqual } from './pair-table.js'
import { writePairOutput } from './pair-output.js'
import { rotatedLayers, rotationKind } from './pair-sums.js'

export async function correlateScreened(u: FamilyUnit, ctx: StageContext<CorrelateParams>): Promise<void> {
  const params = ctx.params.correlate
  const { screen, threshold } = params
  if (!screen || threshold === undefined) throw new Error('correlate: the screened unit needs correlate.mode: screened')
  const { gemm, gemmNN } = loadFastGemm(ctx.execution.threads)
  kernels.setThreads(ctx.execution.threads)
  const shardPath = (seed: string, shard: number) => ctx.upstream.path(activationPath(seed, shard))
  const infos: ShardInfo[][] = await Promise.all(u.seeds.map((seed) => Promise.all(u.shards.map((shard) => readActivationShardInfo(shardPath(seed, shard))))))
  u.seeds.slice(1).forEach((seed, s) => infos[s + 1].forEach((info, k) => checkAligned(infos[0][k], info, u.id, [u.seeds[0], seed], u.shards[k])))
  const layouts = infos.map(([first]) => ({ nLayers: first.nLayers, dMlp: first.dMlp }))
  const shardTokens = infos[0].map((info) => info.tokens)
  const tokens = shardTokens.reduce((sum, t) => sum + t, 0)

  const overhead = screeningOverheadFlops(layouts, tokens, screen.directions, screen.basis)
  const full = fullFlops(layouts, tokens)
  if (overhead > full / 2) {
    ctx.warn(`screening would cost ${(overhead / full).toFixed(2)}× the full computation before pruning anything (${Math.max(...layouts.map((l) => l.nLayers * l.dMlp))} neurons per seed against a basis of ${screen.basis}); computing every pair in full instead`)
    await correlateInFull(u, ctx, tokens)
    await ctx.writeFile(screenReportPath, `${JSON.stringify({ fallback: 'full', overheadFlops: overhead, fullFlops: full }, null, 2)}\n`)
    return
  }

  const within = u.seeds.map((seed) => seedWithin(ctx, seed, gemm))
  const kind = rotationKind(params.baseline.kind)
  const rotated = within.map((w, s) => rotatedLayers(w, kind, params.baseline.seed, u.seeds[s], gemm))
  const checkpointPath = ctx.partialPath('screen.safetensors')
  const resume = readStateFile<ScreenState>(checkpointPath)
  if (resume) ctx.log(`resuming from a checkpoint (${describeResume(resume)})`)
  // Three passes, then refinement rounds (usually one or two): the bar assumes four and its ETA adjusts.
  ctx.progress.setTotal(4 * tokens)
  const lastRead: (ChunkRows | undefined)[] = []
  const { pairs, report } = await screenFamily(
    {
      layouts,
      shardTokens,
      // A seed's rows are centred before its next shard is read, so each seed reuses its read buffer.
      read: async (s, k) => (lastRead[s] = await readActivationRows(shardPath(u.seeds[s], u.shards[k]), infos[s][k], 0, layouts[s].nLayers * layouts[s].dMlp, lastRead[s])),
    },
    {
      directions: screen.directions,
      basis: screen.basis,
      threshold,
      gemm,
      gemmNN,
      within,
      rotated,
      memoryBytes: params.max_memory_gib * 2 ** 30,
      progress: (t) => ctx.progress.advance(t),
      signal: ctx.signal,
      checkpoint: (state) => writeStateFile(checkpointPath, state),
      checkpointEvery: u.checkpointing,
      resume,
    },
  )
  for (const p of pairs) {
    const [a, b] = [u.seeds[p.a], u.seeds[p.b]]
    const exact = ({ lo, hi }: { lo: Float64Array; hi: Float64Array }) => ({ value: exactWhereEqual(lo, hi), interval: { lo, hi } })
    writePairOutput(ctx, { id: u.id, a, b }, {
      layoutA: layouts[p.a], layoutB: layouts[p.b], tokens, rotation: rotationRecord({ a, b }, params),
      maxima: { rows: p.rows, cols: p.cols }, baselineA: exact(p.baselineA), baselineB: exact(p.baselineB),
    })
  }
  const summary = reportJson(report)
  await ctx.writeFile(screenReportPath, `${JSON.stringify(summary, null, 2)}\n`)
  ctx.log(describe(summary))
}

/** Every pair as the full mode computes it, each with its own checkpoint; the tables are the full mode's. */
async function correlateInFull(u: FamilyUnit, ctx: StageContext<CorrelateParams>, tokens: number): Promise<void> {
  const pairs = unorderedPairs(u.seeds)
  ctx.progress.setTotal(pairs.length * tokens)
  for (const [a, b] of pairs) {
    const id = pairName(a, b)
    const pairCtx: StageContext<CorrelateParams> = {
      ...ctx,
      partialPath: (name) => ctx.partialPath(`${id}.${name}`),
      progress: { setTotal: () => {}, advance: (n) => ctx.progress.advance(n) },
      log: (message) => ctx.log(`${id}: ${message}`),
      warn: (message) => ctx.warn(`${id}: ${message}`),
    }
    await correlatePair({ id, a, b, mode: 'stored', shards: u.shards, checkpointing: u.checkpointing }, pairCtx)
  }
}

/** What a checkpoint holds: the passes done, and how far the open one got. */
function describeResume(state: ScreenState): string {
  const done = Object.keys(state).filter((key) => key !== 'inPass')
  const open = state.inPass && `${state.inPass.pass} pass: ${state.inPass.shards} shards done`
  return [done.length ? `${done.join(', ')} done` : '', open ?? ''].filter(Boolean).join('; ')
}

function reportJson(r: ScreenReport) {
  const total = Object.values(r.flops).reduce((sum, f) => sum + f, 0)
  return { ...r, totalFlops: total, fewerFlopsThanFull: r.fullFlops / total }
}

/** One line: how much the screen saved and what it had to compute exactly. */
function describe(r: ReturnType<typeof reportJson>): string {
  return `screened: ${(r.totalFlops / 1e12).toFixed(3)} TFLOP, ${r.fewerFlopsThanFull.toFixed(1)}× fewer than the full computation; ` +
    `${r.candidatesPerNeuron.toFixed(1)} candidate partners per neuron per pair, ${r.undecided} flags refined exactly (${r.refinedLayers} layer baselines, ${r.rounds} rounds)`
}
