// Kill and resume through the real CLI, on the runner's toy stages (SEEDSCOPE_TOY_STAGES=1; no model needed):
// SIGKILL mid-run, rerun, and only the unfinished units are computed, with outputs byte-identical to an
// uninterrupted run. Also: Ctrl-C at a unit boundary, a double Ctrl-C, lock contention and a corrupt output.
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildCli, runCli, startCli } from '../helpers/cli.js'

const SEEDS = ['s0', 's1', 's2']
const SHARDS = 3 // tokenize.max_tokens 3000 at the toy's 1000 tokens per shard
const EXTRACT_UNITS = SEEDS.length * SHARDS
const PAIRS = 3

let root: string
let reference: Map<string, Buffer> // outputs of one uninterrupted run

function project(name: string): string {
  const dir = join(root, name)
  mkdirSync(dir)
  writeFileSync(join(dir, 'corpus.txt'), 'The quick brown fox.\nJumps over the lazy dog.\n')
  writeFileSync(
    join(dir, 'pipeline.config.yaml'),
    [
      'output_dir: out',
      'seeds:',
      ...SEEDS.map((s) => `  - { name: ${s}, checkpoint: models/${s} }`),
      'corpus: { paths: [corpus.txt] }',
      'tokenize: { max_tokens: 3000 }',
      'execution: { concurrency: 2 }',
      '',
    ].join('\n'),
  )
  return dir
}

const toy = (dir: string, delayMs = 0) => ({
  SEEDSCOPE_TOY_STAGES: '1',
  SEEDSCOPE_TOY_DELAY_MS: String(delayMs),
  SEEDSCOPE_TOY_WORK_LOG: join(dir, 'work.log'),
})

/** Run to completion; returns the units computed (from the toy stages' own log) and the CLI's output. */
function runToCompletion(dir: string, args: string[] = []) {
  rmSync(join(dir, 'work.log'), { force: true })
  const result = runCli(['run', ...args], dir, toy(dir))
  const log = existsSync(join(dir, 'work.log')) ? readFileSync(join(dir, 'work.log'), 'utf8') : ''
  return { ...result, computed: log.split('\n').filter(Boolean).sort() }
}

/** Every result file under out/, except the bookkeeping (manifests hold finish times; the hash cache, mtimes). */
function outputs(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>()
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name)
      if (name === 'manifest.json' || name.startsWith('.')) continue // .lock, .cache/, .partial/, temporaries
      if (statSync(path).isDirectory()) walk(path)
      else files.set(relative(join(dir, 'out'), path), readFileSync(path))
    }
  }
  walk(join(dir, 'out'))
  return files
}

function finishedUnits(dir: string, stage: string): string[] {
  try {
    const manifest = JSON.parse(readFileSync(join(dir, 'out', stage, 'manifest.json'), 'utf8'))
    return Object.keys(manifest.units)
  } catch {
    return [] // not written yet
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await sleep(20)
  }
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d) => (stdout += d))
  child.stderr?.on('data', (d) => (stderr += d))
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })))
}

beforeAll(() => {
  buildCli()
  root = mkdtempSync(join(tmpdir(), 'seedscope-resume-'))
  const dir = project('reference')
  const first = runToCompletion(dir)
  expect(first.status).toBe(0)
  expect(first.computed.length).toBe(SHARDS + EXTRACT_UNITS + PAIRS)
  expect(first.stdout).toBe(`run: toy-tokenize ${SHARDS} run, 0 skipped; toy-extract ${EXTRACT_UNITS} run, 0 skipped; toy-correlate ${PAIRS} run, 0 skipped\n`)
  reference = outputs(dir)
  expect(reference.size).toBe(SHARDS + EXTRACT_UNITS + PAIRS)
})

afterAll(() => rmSync(root, { recursive: true, force: true }))

describe('seedscope run, killed and resumed', () => {
  test('SIGKILL mid-stage: the rerun computes only unfinished units, and the bytes match an uninterrupted run', async () => {
    const dir = project('killed')
    const child = startCli(['run'], dir, toy(dir, 500))
    const done = exited(child)
    await until(() => finishedUnits(dir, 'toy-extract').length >= 3, 'three extract units are finished')
    child.kill('SIGKILL')
    expect((await done).signal).toBe('SIGKILL')
    const before = finishedUnits(dir, 'toy-extract')
    expect(before.length).toBeLessThan(EXTRACT_UNITS) // really killed mid-stage
    expect(existsSync(join(dir, 'out', '.lock'))).toBe(true) // a killed run cannot clean up

    const resumed = runToCompletion(dir)
    expect(resumed.status).toBe(0)
    const expected = [
      ...SEEDS.flatMap((s) => Array.from({ length: SHARDS }, (_, i) => `${s}/shard-000${i}`))
        .filter((id) => !before.includes(id))
        .map((id) => `toy-extract ${id}`),
      'toy-correlate s0--s1',
      'toy-correlate s0--s2',
      'toy-correlate s1--s2',
    ].sort()
    expect(resumed.computed).toEqual(expected)
    expect(resumed.stdout).toBe(
      `run: toy-tokenize 0 run, ${SHARDS} skipped; toy-extract ${EXTRACT_UNITS - before.length} run, ` +
        `${before.length} skipped; toy-correlate ${PAIRS} run, 0 skipped\n`,
    )
    expect(resumed.stderr).toMatch(/warning: out: taking over the lock of pid \d+ \(started \d\d:\d\d\), which is no longer running/)
    expect(outputs(dir)).toEqual(reference)

    const again = runToCompletion(dir)
    expect(again.computed).toEqual([])
    expect(again.stdout).toBe(
      `run: toy-tokenize 0 run, ${SHARDS} skipped; toy-extract 0 run, ${EXTRACT_UNITS} skipped; toy-correlate 0 run, ${PAIRS} skipped\n`,
    )
  })

  test('Ctrl-C stops at the next unit boundary (exit 130); a second run finishes the rest', async () => {
    const dir = project('interrupted')
    const child = startCli(['run'], dir, toy(dir, 500))
    const done = exited(child)
    await until(() => finishedUnits(dir, 'toy-extract').length >= 1, 'one extract unit is finished')
    child.kill('SIGINT')
    const result = await done
    expect(result.code).toBe(130)
    expect(result.stderr).toContain('warning: Ctrl-C: stopping after the running units finish (Ctrl-C again to abort now)')
    expect(result.stdout).toMatch(/^run: toy-tokenize 3 run, 0 skipped; toy-extract \d run, 0 skipped; interrupted, rerun to continue\n$/)
    expect(existsSync(join(dir, 'out', '.lock'))).toBe(false) // a clean stop releases the lock
    const finished = finishedUnits(dir, 'toy-extract').length
    expect(finished).toBeLessThan(EXTRACT_UNITS)

    const resumed = runToCompletion(dir)
    expect(resumed.computed.filter((u) => u.startsWith('toy-extract')).length).toBe(EXTRACT_UNITS - finished)
    expect(outputs(dir)).toEqual(reference)
  })

  test('a second Ctrl-C aborts at once, keeps finished units and releases the lock', async () => {
    const dir = project('aborted')
    const child = startCli(['run'], dir, toy(dir, 4000))
    const done = exited(child)
    await until(() => finishedUnits(dir, 'toy-tokenize').length === SHARDS, 'tokenize is done')
    await sleep(200)
    child.kill('SIGINT')
    await sleep(100)
    child.kill('SIGINT')
    const result = await done
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/seedscope: run aborted; finished units are kept, rerun to continue\n$/)
    expect(existsSync(join(dir, 'out', '.lock'))).toBe(false)
    expect(finishedUnits(dir, 'toy-extract')).toEqual([]) // aborted inside the first units: nothing half-done recorded
  })
})

describe('seedscope run, sharing an output directory', () => {
  test('a second run on a locked directory says who holds it, and exits 1', async () => {
    const dir = project('locked')
    const child = startCli(['run'], dir, toy(dir, 1000))
    const done = exited(child)
    await until(() => existsSync(join(dir, 'out', '.lock')), 'the first run holds the lock')
    const second = runCli(['run'], dir, toy(dir))
    expect(second.stderr).toMatch(
      new RegExp(`^seedscope: out is locked by pid ${child.pid} \\(started \\d\\d:\\d\\d\\); wait for it, or remove out/.lock if that process is gone\\n$`),
    )
    expect(second.status).toBe(1)
    child.kill('SIGKILL')
    await done
  })

  test('a corrupt output: one warning naming the file, only its unit recomputed, bytes restored', () => {
    const dir = project('corrupt')
    expect(runToCompletion(dir).status).toBe(0)
    const victim = join(dir, 'out', 'toy-extract', 's1', 'shard-0002.bin')
    const bytes = readFileSync(victim)
    bytes[100] ^= 1
    writeFileSync(victim, bytes)

    const status = runCli(['status'], dir, toy(dir))
    expect(status.stdout).toContain(
      '  toy-extract s1/shard-0002: stale (output corrupt: toy-extract/s1/shard-0002.bin (content hash differs from the manifest))',
    )
    const rerun = runToCompletion(dir)
    expect(rerun.computed).toEqual(['toy-extract s1/shard-0002'])
    const warnings = rerun.stderr.split('\n').filter((l) => l.includes('warning:'))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/warning: out\/toy-extract\/s1\/shard-0002.bin does not match its manifest \(corrupt\?\); recomputing toy-extract s1\/shard-0002$/)
    expect(outputs(dir)).toEqual(reference)
  })
})
