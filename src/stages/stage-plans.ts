// The stages' `plan` hooks for `seedscope plan` (SPEC §7), and the projection at the study's scale: a scenario
// (plan-scenario.ts) and this machine's calibrated rates (calibrate.ts) through the arithmetic of
// plan-estimates.ts. Every problem a user can fix (no model yet, no corpus) becomes a note, never a failure.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { PipelineConfig } from '../config.js'
import { UserError } from '../errors.js'
import { displayPath } from '../runner/lock.js'
import { resourceWarnings, type PipelinePlan, type StagePlan } from '../runner/plan.js'
import type { PlanEnvironment, PlanEstimate } from '../runner/stage.js'
import { type Calibrated, calibrateForward, calibrateGemm, calibrationPath, type ForwardCalibration } from './calibrate.js'
import {
  estimateCorrelate, estimateExtract, estimateStats, estimateUniversal, forwardFlopsPerToken, GPT2_SMALL,
  neuronCount, type Rates, type Scenario,
} from './plan-estimates.js'
import { unorderedPairs } from './correlate/pair-sums.js'
import { configScenario, studyScenario } from './plan-scenario.js'

export async function planTokenize(cfg: PipelineConfig, env: PlanEnvironment): Promise<PlanEstimate> {
  const { tokens, tokensProblem } = await configScenario(cfg, env)
  if (!tokens) return { notes: [tokensProblem ?? 'tokens unknown'] }
  const { ctx } = cfg.tokenize
  const textTokens = tokens.textTokens ?? tokens.rows * (ctx - 1)
  const notes = [tokens.source]
  if (tokens.corpusTokens !== undefined && tokens.corpusTokens < tokens.rows * (ctx - 1)) {
    notes.push(`the corpus holds only ≈ ${tokens.corpusTokens.toExponential(1)} tokens; a real run would stop there`)
  }
  // Encoding dominates: one encoder per thread (reading, shuffling and writing rows are not counted).
  const seconds = tokens.encodeRate && textTokens / (tokens.encodeRate * Math.max(1, cfg.execution.threads))
  if (seconds !== undefined) {
    notes.push(`time: encoding only, at ${Math.round(tokens.encodeRate!).toLocaleString('en-US')} tok/s per thread × ${cfg.execution.threads} threads; reading and writing come on top`)
  }
  // rows.parquet: ctx int32 ids and a few segment entries per row; the ids of every document stay in memory to be shuffled.
  return { tokens: textTokens, diskBytes: tokens.rows * (ctx * 4 + 16), memoryBytes: textTokens * 4, seconds, notes }
}

export async function planExtract(cfg: PipelineConfig, env: PlanEnvironment): Promise<PlanEstimate> {
  const { scenario, tokens, tokensProblem, seedNotes } = await configScenario(cfg, env)
  if (!scenario) return unknownShapes(tokens && tokens.mainRows * cfg.tokenize.ctx * cfg.seeds.length, tokensProblem, seedNotes)
  const forward = await forwardRate(cfg, scenario)
  // Streamed mode adds the pair sums to extract's work; correlate's notes say how the GEMM was calibrated.
  const gemm = scenario.extract.mode === 'streamed' ? await gemmRate(cfg, scenario) : undefined
  const estimate = estimateExtract(scenario, { forward: forward.rate, gemmFlopsPerSecond: gemm?.rate }, env.freeDiskBytes)
  const shards = `${scenario.seeds.length} seeds × ${scenario.shardsPerSeed} shards of ${cfg.extract.rows_per_shard} rows`
  return { ...estimate, notes: [...seedNotes, shards, ...(estimate.notes ?? []), forward.note] }
}

export async function planStats(cfg: PipelineConfig, env: PlanEnvironment): Promise<PlanEstimate> {
  const { scenario } = await configScenario(cfg, env)
  return scenario ? estimateStats(scenario) : {}
}

export async function planCorrelate(cfg: PipelineConfig, env: PlanEnvironment): Promise<PlanEstimate> {
  const { scenario, seedNotes } = await configScenario(cfg, env)
  if (!scenario) return unknownShapes(undefined, undefined, seedNotes.length ? ['no seed shape: see extract'] : [])
  const gemm = await gemmRate(cfg, scenario)
  const estimate = estimateCorrelate(scenario, { gemmFlopsPerSecond: gemm.rate })
  // What the screen saves depends on how low-rank the activations are, which only the run finds out.
  const screened = cfg.correlate.mode === 'screened'
    ? ['screened mode: the FLOPs and time shown are the full computation\'s, an upper bound (the bundled demo family needed 11.6× fewer); the run writes correlate/screened.json with what it did']
    : []
  return { ...estimate, notes: [...(estimate.notes ?? []), ...screened, gemm.note] }
}

export async function planUniversal(cfg: PipelineConfig, env: PlanEnvironment): Promise<PlanEstimate> {
  const { scenario } = await configScenario(cfg, env)
  return scenario ? estimateUniversal(scenario) : {}
}

function unknownShapes(tokens: number | undefined, problem: string | undefined, notes: string[]): PlanEstimate {
  return { tokens, notes: [...(problem ? [problem] : []), ...notes] }
}

/**
 * The study's scale on this machine (SPEC §7): GPT-2 small, 5 seeds, 1e8 tokens each, ctx 512, float16, in the
 * mode it calls for; the forward rate calibrated on the config's first seed and scaled by FLOPs.
 */
export async function planStudy(cfg: PipelineConfig, env: PlanEnvironment): Promise<{ title: string; plan: PipelinePlan }> {
  const s = studyScenario(cfg, env)
  const [forward, gemm] = [await forwardRate(cfg, s), await gemmRate(cfg, s)]
  const rates: Rates = { forward: forward.rate, gemmFlopsPerSecond: gemm.rate }
  const extract = estimateExtract(s, rates, env.freeDiskBytes)
  const correlate = estimateCorrelate(s, rates)
  const n = s.seeds.length
  const stage = (name: string, units: number, estimate: PlanEstimate, notes: string[] = []): StagePlan =>
    ({ stage: name, units, toRun: units, waitingFor: [], estimate: { ...estimate, notes: [...(estimate.notes ?? []), ...notes] } })
  const stages = [
    stage('extract', s.extract.mode === 'stored' ? n * s.shardsPerSeed : 1, extract, [forward.note]),
    stage('stats', n, estimateStats(s)),
    stage('correlate', unorderedPairs(s.seeds).length, correlate, [gemm.note]),
    stage('universal', n, estimateUniversal(s)),
  ]
  const title =
    `projection at the study's scale (SPEC §7): GPT-2 small (${GPT2_SMALL.nLayers} layers, d_model ${GPT2_SMALL.dModel}, ` +
    `d_mlp ${GPT2_SMALL.dMlp}; N = ${neuronCount(GPT2_SMALL).toLocaleString('en-US')}), ${n} seeds × 1e8 tokens, ctx ${s.ctx}, ` +
    `${s.extract.dtype}, ${s.extract.mode} mode, on this machine`
  return { title, plan: { stages, env, warnings: resourceWarnings(cfg.output_dir, stages, env) } }
}

// ---- calibrated rates, each with the note that says what was measured and when ----

async function forwardRate(cfg: PipelineConfig, scenario: Scenario): Promise<{ rate?: Rates['forward']; note: string }> {
  const seed = cfg.seeds.find((s) => existsSync(join(s.checkpoint, 'config.json')))
  if (!seed) return { note: 'forward not calibrated: no seed checkpoint exists yet, so extract time is unknown' }
  let calibrated: Calibrated<ForwardCalibration>
  try {
    calibrated = await calibrateForward(cfg.output_dir, seed, cfg.tokenize.ctx, cfg.execution)
  } catch (error) {
    if (!(error instanceof UserError)) throw error
    return { note: `forward not calibrated (${error.message}), so extract time is unknown` }
  }
  const c = calibrated.result
  const flopsPerSecond = c.tokensPerSecond * c.flopsPerToken
  const same = scenario.seeds.every(({ dims }) => forwardFlopsPerToken(dims, scenario.ctx) === c.flopsPerToken)
  const scaledNote = same
    ? ''
    : `; other shapes scaled by FLOPs (forward), neurons (statistics) and parameters (loading): a small model uses the cores less well, so larger ones likely run faster than this`
  const note =
    `calibrated forward of ${c.seed}'s extraction graph (${c.shape.nLayers} layers × ${c.shape.dMlp} neurons, d_model ${c.shape.dModel}, ` +
    `${c.rows} rows × ${c.ctx} tokens, ${cfg.execution.threads} threads): ${Math.round(c.tokensPerSecond).toLocaleString('en-US')} tok/s ` +
    `(${(flopsPerSecond / 1e9).toPrecision(3)} GFLOP/s effective), statistics ${c.statisticsPerSecond.toExponential(1)} neuron·tok/s, ` +
    `writing ${(c.writeBytesPerSecond / 1e6).toFixed(0)} MB/s, loading ${c.loadSeconds.toFixed(2)} s; ` +
    `${when(calibrated, cfg)}${scaledNote}`
  return { rate: { flopsPerSecond, statisticsPerSecond: c.statisticsPerSecond, writeBytesPerSecond: c.writeBytesPerSecond, loadSecondsPerParameter: c.loadSeconds / c.parameters }, note }
}

/** The pair sums' speed on the chunks a scenario multiplies: a shard's dtype in stored mode, float32 in streamed. */
async function gemmRate(cfg: PipelineConfig, scenario: Pick<Scenario, 'extract'>): Promise<{ rate: number; note: string }> {
  const dtype = scenario.extract.mode === 'streamed' ? 'float32' : scenario.extract.dtype
  const calibrated = await calibrateGemm(cfg.output_dir, cfg.execution.threads, { dtype, operandBits: cfg.correlate.operand_bits })
  const c = calibrated.result
  const note = `calibrated correlate pair sums: ${c.backend} ${c.gflops.toPrecision(3)} GFLOP/s on ${c.dtype} chunks of ` +
    `${c.m}×${c.n} neurons × ${c.k} tokens (shift, product, float64 add; ${c.detail}); ${when(calibrated, cfg)}`
  return { rate: c.gflops * 1e9, note }
}

function when(c: Calibrated<unknown>, cfg: PipelineConfig): string {
  const where = displayPath(calibrationPath(cfg.output_dir))
  return c.cached
    ? `cached, measured ${c.measuredAt.slice(0, 16).replace('T', ' ')} UTC (in ${where}; plan --recalibrate measures again)`
    : `measured now, cached in ${where}`
}
