// Kill and resume on the real stages, through the real CLI, on two small random GPT-2 checkpoints and real text:
// SIGKILL during extract and during a checkpointed correlate unit, corrupt extract shards, and seeds whose
// tokenizers differ. Every run is compared byte for byte with one uninterrupted run of the same config in
// another directory (test/e2e/resume.test.ts does the same on the runner's toy stages).
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { buildCli, repo, runCli, startCli } from '../helpers/cli.js'
import { differingFiles, finishedUnits, outputFiles, strayTemporaries } from '../helpers/output-dir.js'
import { TINY, writeTinyGpt2 } from '../helpers/tiny-models.js'
import { until, watchChild } from '../helpers/wait.js'

const SEEDS = ['s0', 's1']
// 64-token rows, 2 rows a shard: about 24 shards a seed from 3,200 tokens, so extract has dozens of units; a
// d_mlp of 256 makes each correlate shard a GEMM of 512 × 512 neurons, and checkpoint_every 64 tokens (a shard
// has ~110 valid tokens) makes the correlate unit save its sums after every shard but the last.
const SHAPE = { ...TINY, dMlp: 256 }
const CONFIG = [
  'output_dir: out',
  'seeds:',
  ...SEEDS.map((s) => `  - { name: ${s}, checkpoint: ../models/${s} }`),
  `corpus: { paths: [${join(repo, 'test/fixtures/corpus/sample.jsonl')}] }`,
  'tokenize: { ctx: 64, max_tokens: 3200 }',
  'extract: { rows_per_shard: 2, batch_rows: 2, top_k: 5 }',
  'correlate: { checkpoint_every: 64 }',
  'execution: { threads: 1 }',
  '',
].join('\n')
const PAIR = 's0--s1'

let root: string
let reference: Map<string, Buffer> // result files of one uninterrupted run
let extractUnits: number // from the reference run's manifest
const out = (dir: string, ...parts: string[]) => join(dir, 'out', ...parts)

function project(name: string, config = CONFIG): string {
  const dir = join(root, name)
  mkdirSync(dir)
  writeFileSync(join(dir, 'pipeline.config.yaml'), config)
  return dir
}

/** A project whose out/ starts as a copy of the reference run's (a copied output directory is up to date). */
function projectFromReference(name: string): string {
  const dir = project(name)
  cpSync(out(join(root, 'reference')), out(dir), { recursive: true })
  return dir
}

/** The `run:` summary line of a run with every stage, given units run and skipped per stage. */
function summary(counts: Record<'tokenize' | 'extract' | 'stats' | 'correlate' | 'universal', [ran: number, skipped: number]>): string {
  const stages = { ...counts, reextract: [0, 0] } // reextract is off (reextract.enabled: false)
  return `run: ${Object.entries(stages).map(([stage, [ran, skipped]]) => `${stage} ${ran} run, ${skipped} skipped`).join('; ')}\n`
}

/** Units of `stage` the run's log says it skipped: named one by one while few, else counted. */
function skippedInLog(stderr: string, stage: string): string[] | number {
  const counted = stderr.match(new RegExp(`\\] ${stage}: (\\d+) units up to date, skipping$`, 'm'))
  if (counted) return Number(counted[1])
  return [...stderr.matchAll(new RegExp(`\\] ${stage} (\\S+): up to date, skipping$`, 'gm'))].map((m) => m[1])
}

/** The correlate unit's checkpoint file, if one is on disk: `correlate/.partial/<unit>/<key>/sums.safetensors`. */
function correlateCheckpoint(dir: string): string | undefined {
  const unitDir = out(dir, 'correlate', '.partial', PAIR)
  if (!existsSync(unitDir)) return undefined
  for (const key of readdirSync(unitDir)) {
    const path = join(unitDir, key, 'sums.safetensors')
    if (existsSync(path)) return path
  }
  return undefined
}

/** Start `seedscope run` in dir and SIGKILL it once the streamed unit `unit` has saved a checkpoint. */
async function killAtStreamCheckpoint(dir: string, unit: string): Promise<void> {
  const checkpoint = () => {
    const unitDir = out(dir, 'extract', '.partial', unit)
    return existsSync(unitDir) && readdirSync(unitDir).some((key) => existsSync(join(unitDir, key, 'stream.safetensors')))
  }
  const child = startCli(['run'], dir)
  const { exited } = watchChild(child)
  let ended = false
  void exited.then(() => (ended = true))
  const caught = await until(checkpoint, `${unit} saves a checkpoint`, { stop: () => ended })
  child.kill('SIGKILL')
  const killed = await exited
  expect(caught, `the run ended before ${unit} saved a checkpoint:\n${killed.stderr}`).toBe(true)
}

beforeAll(() => {
  buildCli()
  root = mkdtempSync(join(tmpdir(), 'seedscope-stage-resume-'))
  SEEDS.forEach((s, i) => writeTinyGpt2(join(root, 'models', s), i, SHAPE))
  const dir = project('reference')
  const run = runCli(['run'], dir)
  expect(run.status, run.stderr).toBe(0)
  extractUnits = finishedUnits(out(dir), 'extract').size
  expect(extractUnits).toBeGreaterThanOrEqual(40)
  expect(run.stdout).toBe(summary({ tokenize: [1, 0], extract: [extractUnits, 0], stats: [2, 0], correlate: [1, 0], universal: [2, 0] }))
  reference = outputFiles(out(dir))
  expect([...reference.keys()].filter((p) => p.startsWith('extract/'))).toHaveLength(2 * extractUnits) // Parquet + stats
}, 300_000)

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true })
})

describe('seedscope run on the real stages, killed and resumed', () => {
  test('SIGKILL during extract: the rerun computes only the unfinished units, and the bytes match an uninterrupted run', async () => {
    const dir = project('extract-killed')
    const child = startCli(['run'], dir)
    const { output, exited } = watchChild(child)
    let ended = false
    void exited.then(() => (ended = true))
    // The plain progress line at each unit's end: `[12:03:11] extract 3/48 units, 835 tok/s, ETA 00:00:03`.
    const unitsDone = () => Math.max(0, ...[...output.stderr.matchAll(/\] extract (\d+)\/\d+ units/g)].map((m) => Number(m[1])))
    const caught = await until(() => unitsDone() >= 3, 'the log shows three extract units finished', { stop: () => ended })
    child.kill('SIGKILL')
    const killed = await exited
    expect(caught, `the run ended before three extract units were logged:\n${killed.stderr}`).toBe(true)
    expect(killed.signal).toBe('SIGKILL')

    const before = finishedUnits(out(dir), 'extract')
    expect(before.size).toBeGreaterThanOrEqual(3) // a unit is recorded before its progress line
    expect(before.size, 'the kill landed after extract had finished').toBeLessThan(extractUnits)
    const toRun = extractUnits - before.size

    const resumed = runCli(['run'], dir)
    expect(resumed.status, resumed.stderr).toBe(0)
    expect(resumed.stdout).toBe(summary({ tokenize: [0, 1], extract: [toRun, before.size], stats: [2, 0], correlate: [1, 0], universal: [2, 0] }))
    expect(resumed.stderr).toMatch(/warning: out: taking over the lock of pid \d+ \(started \d\d:\d\d\), which is no longer running/)
    const skipped = skippedInLog(resumed.stderr, 'extract')
    expect(typeof skipped === 'number' ? skipped : skipped.sort()).toEqual(typeof skipped === 'number' ? before.size : [...before.keys()].sort())
    expect(resumed.stderr).toContain(`extract: ${toRun} units pending (not run yet), running`)
    // Recorded units kept their manifest entries (finish times); exactly the others were computed.
    const after = finishedUnits(out(dir), 'extract')
    expect(after.size).toBe(extractUnits)
    for (const [id, finished] of before) expect(after.get(id), id).toBe(finished)
    expect([...after].filter(([id, finished]) => before.get(id) !== finished)).toHaveLength(toRun)
    expect(differingFiles(outputFiles(out(dir)), reference)).toEqual([])
    expect(strayTemporaries(out(dir))).toEqual([])

    const again = runCli(['run'], dir)
    expect(again.status, again.stderr).toBe(0)
    expect(again.stdout).toBe(summary({ tokenize: [0, 1], extract: [0, extractUnits], stats: [0, 2], correlate: [0, 1], universal: [0, 2] }))
  })

  test('SIGKILL during correlate: the rerun resumes from the checkpoint, and the bytes match an uninterrupted run', async () => {
    // The reference run's tokenize, extract and stats results stand in for computing them again (~10 s); the
    // `--stages` run confirms they are complete here.
    const dir = projectFromReference('correlate-killed')
    rmSync(out(dir, 'correlate'), { recursive: true })
    rmSync(out(dir, 'universal'), { recursive: true })
    const upstream = runCli(['run', '--stages', 'tokenize,extract,stats'], dir)
    expect(upstream.status, upstream.stderr).toBe(0)
    expect(upstream.stdout).toBe(`run: tokenize 0 run, 1 skipped; extract 0 run, ${extractUnits} skipped; stats 0 run, 2 skipped\n`)

    // Kill as soon as a checkpoint is on disk. The unit has ~20 shards left then; if it still finishes first
    // (a very fast GEMM, a stalled test process), start it again from nothing, twice at most.
    const attempts: string[] = []
    let checkpoint: string | undefined
    while (!checkpoint && attempts.length < 3) {
      rmSync(out(dir, 'correlate'), { recursive: true, force: true })
      rmSync(out(dir, 'universal'), { recursive: true, force: true })
      const child = startCli(['run'], dir)
      const { exited } = watchChild(child)
      let ended = false
      void exited.then(() => (ended = true))
      const caught = await until(() => correlateCheckpoint(dir) !== undefined, 'the correlate unit saves a checkpoint', { stop: () => ended })
      child.kill('SIGKILL')
      const killed = await exited
      const finished = finishedUnits(out(dir), 'correlate').has(PAIR)
      if (caught && !finished && killed.signal === 'SIGKILL') checkpoint = correlateCheckpoint(dir)
      attempts.push(`attempt ${attempts.length + 1}: ${caught ? 'saw a checkpoint' : 'saw none'}, unit ${finished ? 'finished' : 'unfinished'}, exit ${killed.code ?? killed.signal}\n${killed.stderr}`)
    }
    if (!checkpoint) {
      throw new Error(`never killed the correlate unit while it had a checkpoint; if it finishes too fast now, give it more shards or a larger d_mlp:\n${attempts.join('\n')}`)
    }

    const resumed = runCli(['run'], dir)
    expect(resumed.status, resumed.stderr).toBe(0)
    expect(resumed.stdout).toBe(summary({ tokenize: [0, 1], extract: [0, extractUnits], stats: [0, 2], correlate: [1, 0], universal: [2, 0] }))
    const shards = extractUnits / 2
    // e.g. `[12:03:11] correlate s0--s1: resuming from a checkpoint (layer block 1 of 1, 3 of 24 shards done)`
    const resumedAt = resumed.stderr.match(new RegExp(`\\] correlate ${PAIR}: resuming from a checkpoint \\([^)]*?\\b(\\d+) (?:of ${shards} )?shards done\\)$`, 'm'))
    expect(resumedAt, resumed.stderr).not.toBeNull()
    expect(Number(resumedAt![1])).toBeGreaterThanOrEqual(1)
    expect(Number(resumedAt![1])).toBeLessThan(shards)
    expect(existsSync(out(dir, 'correlate', '.partial', PAIR))).toBe(false) // a finished unit's state is removed
    const differing = differingFiles(outputFiles(out(dir)), reference)
    expect(differing.filter((p) => p.startsWith('correlate/') || p.startsWith('universal/'))).toEqual([])
    expect(differing).toEqual([])
    expect(strayTemporaries(out(dir))).toEqual([])
  })
})

describe('streamed mode, killed and resumed', () => {
  test('SIGKILL mid-stream: the rerun resumes from the checkpoint and ends with the stored run\'s bytes (SPEC §7)', async () => {
    const config = CONFIG.replace('extract: { rows_per_shard: 2, batch_rows: 2, top_k: 5 }', 'extract: { rows_per_shard: 2, batch_rows: 2, top_k: 5, mode: streamed }')
    const dir = project('streamed-killed', config)
    await killAtStreamCheckpoint(dir, 'stream')
    expect(finishedUnits(out(dir), 'extract').size).toBe(0)

    const resumed = runCli(['run'], dir)
    expect(resumed.status, resumed.stderr).toBe(0)
    const at = resumed.stderr.match(/\] extract stream: resuming from a checkpoint \((\d+) of (\d+) shards done\)$/m)
    expect(at, resumed.stderr).not.toBeNull()
    expect(Number(at![1])).toBeGreaterThanOrEqual(1)
    expect(Number(at![1])).toBeLessThan(Number(at![2]))
    const results = outputFiles(out(dir))
    const compared = [...reference.keys()].filter((p) => /^(stats|correlate|universal)\//.test(p))
    expect(compared.length).toBeGreaterThanOrEqual(7)
    for (const path of compared) expect(results.get(path)?.equals(reference.get(path)!), path).toBe(true)
    expect(existsSync(out(dir, 'extract', '.partial', 'stream'))).toBe(false)
    expect(strayTemporaries(out(dir))).toEqual([])
  })
})

describe('streamed mode over layer blocks, killed and resumed', () => {
  test('SIGKILL in the second layer block: the first stays done, the second resumes from its checkpoint, bytes as uninterrupted', async () => {
    // A pair's cross sums (2 layers × 256 neurons a side, float64) take 2 MiB: a budget of 1.5 MiB makes two blocks.
    const config = CONFIG.replace('extract: { rows_per_shard: 2, batch_rows: 2, top_k: 5 }', 'extract: { rows_per_shard: 2, batch_rows: 2, top_k: 5, mode: streamed }')
      .replace('correlate: { checkpoint_every: 64 }', 'correlate: { checkpoint_every: 64, max_memory_gib: 0.0015 }')
    const uninterrupted = runCli(['run'], project('blocked-reference', config))
    expect(uninterrupted.status, uninterrupted.stderr).toBe(0)
    expect(uninterrupted.stderr).toMatch(/\] extract stream-2of2: layer block 2 of 2/)
    const blockedReference = outputFiles(out(join(root, 'blocked-reference')))

    const dir = project('blocked-killed', config)
    await killAtStreamCheckpoint(dir, 'stream-2of2')
    expect([...finishedUnits(out(dir), 'extract').keys()]).toEqual(['stream-1of2'])

    const resumed = runCli(['run'], dir)
    expect(resumed.status, resumed.stderr).toBe(0)
    expect(skippedInLog(resumed.stderr, 'extract')).toEqual(['stream-1of2'])
    expect(resumed.stderr).toMatch(/\] extract stream-2of2: resuming from a checkpoint \((\d+) of \d+ shards done\)$/m)
    const results = outputFiles(out(dir))
    expect(differingFiles(results, blockedReference)).toEqual([])
    expect(strayTemporaries(out(dir))).toEqual([])
  })
})

describe('seedscope run on the real stages, with corrupt outputs', () => {
  test('a truncated and a bit-flipped extract shard: only their units rerun, downstream stays skipped, bytes restored', () => {
    const dir = projectFromReference('corrupted')
    const truncated = 'extract/s0/shard-0003.parquet'
    const flipped = 'extract/s1/shard-0010.parquet'
    const size = reference.get(truncated)!.length
    truncateSync(out(dir, truncated), size >> 1)
    const bytes = readFileSync(out(dir, flipped))
    bytes[bytes.length >> 1] ^= 0x10
    writeFileSync(out(dir, flipped), bytes)
    const stages = ['tokenize', 'extract', 'stats', 'correlate', 'universal']
    const before = new Map(stages.map((s) => [s, finishedUnits(out(dir), s)]))

    const rerun = runCli(['run'], dir)
    expect(rerun.status, rerun.stderr).toBe(0)
    expect(rerun.stdout).toBe(summary({ tokenize: [0, 1], extract: [2, extractUnits - 2], stats: [0, 2], correlate: [0, 1], universal: [0, 2] }))
    const warnings = rerun.stderr.split('\n').filter((line) => line.includes('warning:'))
    expect(warnings).toHaveLength(2)
    expect(warnings[0]).toMatch(/\] warning: out\/extract\/s0\/shard-0003\.parquet does not match its manifest \(corrupt\?\); recomputing extract s0\/shard-0003$/)
    expect(warnings[1]).toMatch(/\] warning: out\/extract\/s1\/shard-0010\.parquet does not match its manifest \(corrupt\?\); recomputing extract s1\/shard-0010$/)
    expect(rerun.stderr).toContain(`] extract s0/shard-0003: stale (output corrupt: ${truncated} (${size >> 1} bytes, manifest says ${size})), running\n`)
    expect(rerun.stderr).toContain(`] extract s1/shard-0010: stale (output corrupt: ${flipped} (content hash differs from the manifest)), running\n`)

    for (const stage of stages) {
      const after = finishedUnits(out(dir), stage)
      const rerunUnits = [...after].filter(([id, finished]) => before.get(stage)!.get(id) !== finished).map(([id]) => id)
      expect(rerunUnits, stage).toEqual(stage === 'extract' ? ['s0/shard-0003', 's1/shard-0010'] : [])
    }
    expect(differingFiles(outputFiles(out(dir)), reference)).toEqual([])
  })
})

describe('seedscope run with seeds that ship different tokenizers', () => {
  const neox = join(repo, 'test/fixtures/tokenizers/neox/tokenizer.json')
  // The tiny models ship the bundled GPT-2 tokenizer (gpt2-4k); the tokenize stage uses the first seed's tokenizer
  // and refuses before tokenizing anything.
  test.each([
    { neoxSeed: 's1', names: /\(gpt2-4k \(bundled\) vs gpt-neox-20b\)/.source },
    { neoxSeed: 's0', names: /\(gpt-neox-20b vs gpt2-4k \(bundled\)\)/.source },
  ])('NeoX tokenizer in $neoxSeed: one line naming both seeds and both tokenizers, exit 1', ({ neoxSeed, names }) => {
    const dir = project(`tokenizer-${neoxSeed}`, [
      'output_dir: out',
      'seeds:',
      ...SEEDS.map((s) => `  - { name: ${s}, checkpoint: models/${s} }`),
      `corpus: { paths: [${join(repo, 'test/fixtures/corpus/sample.jsonl')}] }`,
      'tokenize: { ctx: 64, max_tokens: 640 }',
      'execution: { threads: 1 }',
      '',
    ].join('\n'))
    SEEDS.forEach((s, i) => writeTinyGpt2(join(dir, 'models', s), i))
    copyFileSync(neox, join(dir, 'models', neoxSeed, 'tokenizer.json'))

    const run = runCli(['run'], dir)
    expect(run.status, run.stderr).toBe(1)
    expect(run.stdout).toBe('')
    const lines = run.stderr.trimEnd().split('\n')
    expect(lines.at(-1), run.stderr).toMatch(new RegExp(`^seedscope: tokenize corpus: seeds s0 and s1 use different tokenizers ${names}; only seeds that share a tokenizer can be compared$`))
    expect(lines.filter((line) => line.startsWith('seedscope:'))).toHaveLength(1)
    expect(lines.filter((line) => !/^\[\d\d:\d\d:\d\d\] tokenize[ :]/.test(line))).toHaveLength(1) // no stack, nothing else
    expect(finishedUnits(out(dir), 'tokenize').size).toBe(0)
    expect(finishedUnits(out(dir), 'extract').size).toBe(0)
  })
})
