// `seedscope run` as a library call: take the lock, then per stage in order expand the units, skip those whose
// manifest entry and outputs still match, run the rest (up to execution.concurrency at once where the stage
// allows it) and record each unit in the manifest only once its files are complete.
import { readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import pLimit from 'p-limit'
import type { PipelineConfig } from '../config.js'
import { UserError } from '../errors.js'
import { FileHashCache } from './hash.js'
import { acquireLock, displayPath } from './lock.js'
import { firstReader, selectStages } from './order.js'
import { silentReporter, type Reporter } from './progress.js'
import { Results, type UnitState } from './results.js'
import { type AnyStage, cacheDirOf } from './stage.js'
import { runUnit } from './unit.js'

export interface RunOptions {
  stages?: readonly string[] // only these (--stages); default: all
  force?: boolean // rerun the selected stages' units even when up to date
  reporter?: Reporter // default: silent
  stop?: AbortSignal // when aborted, no new unit starts; running ones finish and are recorded (first Ctrl-C)
  signal?: AbortSignal // when aborted, the run ends now: ctx.signal fires, nothing more is recorded (second Ctrl-C)
}

export interface StageRunSummary {
  stage: string
  ran: number
  skipped: number
  units: number
}

export interface RunSummary {
  stages: StageRunSummary[]
  interrupted: boolean // stopped early by `stop`; rerun to continue
}

/** Thrown when `signal` aborts the run. */
export class RunAborted extends UserError {
  constructor() {
    super('run aborted; finished units are kept, rerun to continue')
  }
}

export async function runPipeline(
  cfg: PipelineConfig,
  stages: readonly AnyStage[],
  options: RunOptions = {},
): Promise<RunSummary> {
  const reporter = options.reporter ?? silentReporter
  const selection = selectStages(stages, options.stages)
  const lock = acquireLock(cfg.output_dir, (m) => reporter.warn(m))
  removeStrayBookkeeping(cfg.output_dir)
  const fileHashes = new FileHashCache(join(cacheDirOf(cfg.output_dir), 'file-hashes.json'), (path, bytes) => {
    if (bytes > 64 << 20) reporter.info(`hashing ${displayPath(path)} (${(bytes / 2 ** 30).toFixed(1)} GiB, once)`)
  })
  const results = new Results(cfg, stages, fileHashes)
  const aborted = options.signal ? abortPromise(options.signal) : undefined
  try {
    const work = runStages(results, selection.selected, selection.required, options, reporter, stages)
    if (!aborted) return await work
    work.catch(() => {}) // after an abort, units still finishing in the background may fail; nobody is listening
    return await Promise.race([work, aborted])
  } finally {
    fileHashes.save()
    lock.release()
    reporter.close()
  }
}

async function runStages(
  results: Results,
  selected: readonly AnyStage[],
  required: readonly AnyStage[],
  options: RunOptions,
  reporter: Reporter,
  stages: readonly AnyStage[],
): Promise<RunSummary> {
  const summary: RunSummary = { stages: [], interrupted: false }
  for (const stage of stages) {
    if (required.includes(stage)) {
      await checkUpToDate(results, stage, selected, stages)
    } else if (selected.includes(stage)) {
      const { complete, ...counts } = await runStage(results, stage, options, reporter)
      summary.stages.push(counts)
      results.fileHashes.save()
      if (!complete) return { ...summary, interrupted: true }
    }
  }
  return summary
}

/** A stage the selection reads but does not run must be up to date. */
async function checkUpToDate(
  results: Results,
  stage: AnyStage,
  selected: readonly AnyStage[],
  stages: readonly AnyStage[],
): Promise<void> {
  const units = await results.expandUnits(stage)
  let behind = 0
  for (const unit of units) {
    const state = await results.assess(stage, unit, 'status')
    results.setState(stage.name, state)
    if (state.state !== 'done') behind += 1
  }
  if (behind === 0 && units.length > 0) return
  const reader = firstReader({ selected: [...selected], required: [] }, stage.name, stages)?.name ?? 'the selection'
  const names = stages.filter((s) => s === stage || selected.includes(s)).map((s) => s.name)
  const state = units.length ? `${behind} of ${units.length} units pending or stale` : 'it has no units yet'
  throw new UserError(
    `${reader} needs ${stage.name}, which is not up to date (${state}); run it too: --stages ${names.join(',')}`,
  )
}

async function runStage(
  results: Results,
  stage: AnyStage,
  options: RunOptions,
  reporter: Reporter,
): Promise<StageRunSummary & { complete: boolean }> {
  const units = await results.expandUnits(stage)
  const states: UnitState[] = []
  for (const unit of units) {
    const state = await results.assess(stage, unit, 'run')
    results.setState(stage.name, state)
    states.push(state)
  }
  const toRun = options.force ? states : states.filter((s) => s.state !== 'done')
  announceStage(results.outputDir, stage, states, toRun, options.force === true, reporter)

  const meter = reporter.stage(stage.name, toRun.length, stage.work)
  const limit = pLimit(stage.parallelUnits ? results.cfg.execution.concurrency * (stage.pipelineDepth ?? 1) : 1)
  let failure: { error: unknown; unit: string } | undefined
  let ran = 0
  await Promise.all(
    toRun.map((state) =>
      limit(async () => {
        if (failure || options.stop?.aborted || options.signal?.aborted) return
        try {
          if (await runUnit(results, stage, state, meter, reporter, options.signal)) ran += 1
        } catch (error) {
          failure ??= { error, unit: state.unit.id }
        }
      }),
    ),
  )
  meter.finish()
  if (failure) throw unitError(stage.name, failure.unit, failure.error)
  const skipped = states.length - toRun.length
  return { stage: stage.name, ran, skipped, units: states.length, complete: ran === toRun.length }
}

/** What run says before it starts a stage: skips, stale reasons (grouped when many), corrupt files. */
function announceStage(
  outputDir: string,
  stage: AnyStage,
  states: readonly UnitState[],
  toRun: readonly UnitState[],
  force: boolean,
  reporter: Reporter,
): void {
  const few = 10
  const skipped = states.filter((s) => !toRun.includes(s))
  if (skipped.length > few) reporter.info(`${stage.name}: ${skipped.length} units up to date, skipping`)
  else for (const s of skipped) reporter.info(`${stage.name} ${s.unit.id}: up to date, skipping`)

  for (const s of toRun) {
    for (const output of s.corrupt) {
      const file = displayPath(join(outputDir, output))
      reporter.warn(`${file} does not match its manifest (corrupt?); recomputing ${stage.name} ${s.unit.id}`)
    }
  }
  if (force) {
    if (toRun.length) reporter.info(`${stage.name}: --force, running all ${toRun.length} units`)
    return
  }
  // Stale units are named one by one while few; units that never ran, and long lists, are counted by reason.
  const stale = toRun.filter((s) => s.state === 'stale')
  const listed = stale.length <= few ? stale : []
  for (const s of listed) reporter.info(`${stage.name} ${s.unit.id}: stale (${s.reasons.join('; ')}), running`)
  const groups = new Map<string, number>()
  for (const s of toRun) {
    if (listed.includes(s)) continue
    const label = `${s.state} (${s.reasons.join('; ')})`
    groups.set(label, (groups.get(label) ?? 0) + 1)
  }
  for (const [label, n] of groups) reporter.info(`${stage.name}: ${n} ${n === 1 ? 'unit' : 'units'} ${label}, running`)
}

/** A unit's failure, named: a UserError stays one line; a bug keeps its stack. */
function unitError(stage: string, unit: string, error: unknown): Error {
  const message = `${stage} ${unit}: ${error instanceof Error ? error.message : String(error)}`
  if (error instanceof UserError) return new UserError(message, { cause: error })
  const wrapped = new Error(message, { cause: error })
  if (error instanceof Error && error.stack) wrapped.stack = `${message}\n${error.stack}`
  return wrapped
}

function abortPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(new RunAborted())
    signal.addEventListener('abort', () => reject(new RunAborted()), { once: true })
  })
}

/**
 * A run killed while it rewrote a manifest or the hash cache leaves their temporary behind (`.<name>.<pid>.tmp`).
 * Under the lock no other writer exists, so every such file is stale.
 */
function removeStrayBookkeeping(outputDir: string): void {
  const stray = /^\.(manifest\.json|file-hashes\.json)\.\d+\.tmp$/
  let dirs: string[]
  try {
    dirs = readdirSync(outputDir)
  } catch {
    return
  }
  for (const dir of dirs) {
    const path = join(outputDir, dir)
    try {
      if (!statSync(path).isDirectory()) continue
      for (const name of readdirSync(path)) if (stray.test(name)) rmSync(join(path, name), { force: true })
    } catch {
      // a directory that vanished or cannot be read holds nothing of ours to clean
    }
  }
}
