// One unit of a stage: clear what a killed run left behind, hand the stage its StageContext, and once run()
// resolves, hash the outputs and record the unit in the manifest. A unit is "done" only from that moment.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { commitTemporary, temporaryPath, writeFileAtomic } from '../io/atomic-write.js'
import { writeManifest, type ManifestEntry } from './manifest.js'
import type { Reporter, StageMeter, UnitMeter } from './progress.js'
import type { Results, UnitState } from './results.js'
import { type AnyStage, cacheDirOf, type StageContext } from './stage.js'

/** Run one unit; true when it finished and was recorded, false when the run was aborted under it. */
export async function runUnit(
  results: Results,
  stage: AnyStage,
  state: UnitState,
  meter: StageMeter,
  reporter: Reporter,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  const { unit } = state
  const outputDir = results.outputDir
  const outputs = stage.outputs(unit)
  if (state.key === undefined) throw new Error(`${stage.name} ${unit.id}: inputs not available when it was due to run`)
  for (const output of outputs) clearOutput(join(outputDir, output))

  const unitMeter = meter.unit(unit.id)
  const ctx = unitContext(results, stage, state, outputs, unitMeter, reporter, signal)
  await stage.run(unit, ctx)
  if (signal?.aborted) return false

  const records = []
  for (const output of outputs) {
    const path = join(outputDir, output)
    const size = fileSizeOrUndefined(path)
    if (size === undefined) throw new Error(`${stage.name} ${unit.id} finished without writing ${output}`)
    // Files written through src/io/atomic-write.ts were hashed as they were written; others are read again. The
    // hash cache keeps them, so that the next process (a resumed run, `status`) does not read them again either.
    records.push({ path: output, size, hash: await results.fileHashes.output(path) })
  }
  const entry: ManifestEntry = {
    key: state.key,
    version: stage.version,
    params: state.params,
    inputs: [...(state.inputs ?? [])],
    outputs: records,
    finished: new Date().toISOString(),
  }
  const manifest = results.manifest(stage.name)
  const current = new Set(results.statesOf(stage.name).map((s) => s.unit.id))
  for (const id of Object.keys(manifest.units)) if (!current.has(id)) delete manifest.units[id] // units no longer in the config
  manifest.units[unit.id] = entry
  writeManifest(outputDir, manifest)
  results.fileHashes.save() // a kill after this point must not cost the next run a re-read of this unit's outputs
  rmSync(partialDir(outputDir, stage.name, unit.id), { recursive: true, force: true })
  results.setState(stage.name, { ...state, state: 'done', reasons: [], corrupt: [] })
  unitMeter.done()
  return true
}

function unitContext(
  results: Results,
  stage: AnyStage,
  state: UnitState,
  outputs: readonly string[],
  meter: UnitMeter,
  reporter: Reporter,
  signal: AbortSignal | undefined,
): StageContext {
  const { outputDir } = results
  const id = state.unit.id
  const declared = (relative: string): string => {
    if (!outputs.includes(relative)) {
      throw new Error(`${stage.name} ${id} writes ${relative}, which is not among its declared outputs`)
    }
    return join(outputDir, relative)
  }
  return {
    stage: stage.name,
    unit: id,
    params: state.params,
    execution: results.cfg.execution,
    signal: signal ?? new AbortController().signal,
    progress: { setTotal: (n) => meter.setTotal(n), advance: (n) => meter.advance(n) },
    upstream: results.upstreamFor(stage),
    outputPath: declared,
    writeFile: async (relative, data) => writeFileAtomic(declared(relative), data),
    temporaryOutput: (relative) => {
      const path = declared(relative)
      mkdirSync(dirname(path), { recursive: true })
      const tmp = temporaryPath(path)
      return { path: tmp, commit: () => commitDurably(tmp, path) }
    },
    partialPath: (name) => {
      // Keyed by the unit's key: state saved under other params or inputs is never offered back.
      const dir = join(partialDir(outputDir, stage.name, id), state.key!.slice(0, 16))
      mkdirSync(dir, { recursive: true })
      return join(dir, name)
    },
    cacheDir: cacheDirOf(outputDir),
    log: (message) => reporter.info(`${stage.name} ${id}: ${message}`),
    warn: (message) => reporter.warn(`${stage.name} ${id}: ${message}`),
  }
}

/** `<output_dir>/<stage>/.partial/<unit id, made a file name>`: the unit's resumable state, all keys. */
function partialDir(outputDir: string, stage: string, id: string): string {
  return join(outputDir, stage, '.partial', id.replace(/[^A-Za-z0-9._-]/g, '_'))
}

/** Before a unit (re)runs: its old outputs go (they are stale), and so do temporaries a killed run left behind. */
function clearOutput(path: string): void {
  rmSync(path, { force: true })
  const dir = dirname(path)
  const stray = `.${basename(path)}.`
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    mkdirSync(dir, { recursive: true })
    return
  }
  for (const name of names) if (name.startsWith(stray) && name.endsWith('.tmp')) rmSync(join(dir, name), { force: true })
}

function commitDurably(tmp: string, path: string): void {
  const fd = openSync(tmp, 'r+')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  commitTemporary(tmp, path)
}

function fileSizeOrUndefined(path: string): number | undefined {
  try {
    return statSync(path).size
  } catch {
    return undefined
  }
}
