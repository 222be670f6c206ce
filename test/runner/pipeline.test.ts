// The runner on toy stages defined here (no model): count work, not time. Which units a run computes after a
// change (hash coverage, DVC-style), corrupt and missing outputs, the lock, --stages, Ctrl-C at a unit boundary,
// failures, and resumable partial state.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { formatPlan } from '../../src/commands/plan-format.js'
import { formatStatus } from '../../src/commands/status.js'
import type { PipelineConfig } from '../../src/config.js'
import { loadConfig } from '../../src/config-load.js'
import { UserError } from '../../src/errors.js'
import { createReporter, type Reporter } from '../../src/runner/progress.js'
import { runPipeline, type RunOptions } from '../../src/runner/run.js'
import type { AnyStage, Stage, Unit } from '../../src/runner/stage.js'
import { planPipeline } from '../../src/runner/plan.js'
import { pipelineStatus } from '../../src/runner/status.js'
import { contentHashOf } from '../../src/io/content-hash.js'

// ---- toy stages: tokenize (2 shards) → extract (seed × shard) → correlate (seed pairs) ----

let computed: string[] // "<stage> <unit>" for every unit a stage actually computed

const tokenize: Stage<Unit & { corpus: string }, { tokenize: PipelineConfig['tokenize'] }> = {
  name: 'tokenize',
  version: 1,
  needs: [],
  params: (cfg) => ({ tokenize: cfg.tokenize }),
  units: (cfg) => ['shard-0', 'shard-1'].map((id) => ({ id, corpus: cfg.corpus.paths[0] })),
  inputs: ({ corpus }) => ({ files: [corpus] }),
  outputs: ({ id }) => [`tokenize/${id}.txt`],
  async run({ id, corpus }, ctx) {
    computed.push(`tokenize ${id}`)
    const text = readFileSync(corpus, 'utf8')
    await ctx.writeFile(`tokenize/${id}.txt`, `${text}|${id}|${ctx.params.tokenize.shuffle_seed}`)
  },
}

const extract: Stage<Unit & { seed: string; shard: string }, { extract: PipelineConfig['extract'] }> = {
  name: 'extract',
  version: 1,
  needs: ['tokenize'],
  parallelUnits: true,
  work: 'tok',
  params: (cfg) => ({ extract: cfg.extract }),
  units: (cfg, upstream) =>
    cfg.seeds.flatMap((s) => upstream.units('tokenize').map((t) => ({ id: `${s.name}/${t.id}`, seed: s.name, shard: t.id }))),
  inputs: ({ shard }) => ({ units: [{ stage: 'tokenize', unit: shard }] }),
  outputs: ({ id }) => [`extract/${id}.txt`],
  async run({ id, seed, shard }, ctx) {
    computed.push(`extract ${id}`)
    ctx.progress.setTotal(10)
    ctx.progress.advance(10)
    const tokens = readFileSync(ctx.upstream.path(`tokenize/${shard}.txt`), 'utf8')
    // batch_rows is in the params (so a change reruns extract) but, as in the real stage, not in the bytes.
    await ctx.writeFile(`extract/${id}.txt`, `${tokens}|${seed}|${ctx.params.extract.dtype}`)
  },
}

const correlate: Stage<Unit & { a: string; b: string }, { correlate: PipelineConfig['correlate'] }> = {
  name: 'correlate',
  version: 1,
  needs: ['extract'],
  params: (cfg) => ({ correlate: cfg.correlate }),
  units: (cfg) =>
    cfg.seeds.flatMap((a, i) => cfg.seeds.slice(i + 1).map((b) => ({ id: `${a.name}--${b.name}`, a: a.name, b: b.name }))),
  inputs: ({ a, b }) => ({
    units: ['shard-0', 'shard-1'].flatMap((shard) => [a, b].map((seed) => ({ stage: 'extract', unit: `${seed}/${shard}` }))),
  }),
  outputs: ({ id }) => [`correlate/${id}.txt`],
  async run({ id, a, b }, ctx) {
    computed.push(`correlate ${id}`)
    const mine = ctx.upstream.units('extract').filter((u) => u.id.startsWith(`${a}/`) || u.id.startsWith(`${b}/`))
    const all = mine.map((u) => readFileSync(ctx.upstream.path(u.outputs[0]), 'utf8'))
    await ctx.writeFile(`correlate/${id}.txt`, `${all.join('\n')}|${ctx.params.correlate.threshold}`)
  },
}

const STAGES: AnyStage[] = [tokenize, extract, correlate]

// ---- a config in a temporary directory ----

let dir: string
let messages: string[]

const reporter: Reporter = {
  info: (m) => messages.push(m),
  warn: (m) => messages.push(`warning: ${m}`),
  stage: () => ({ unit: () => ({ setTotal() {}, advance() {}, done() {} }), finish() {} }),
  close() {},
}

function config(...overrides: string[]): PipelineConfig {
  return loadConfig(join(dir, 'pipeline.config.yaml'), { overrides }).config
}

async function run(cfg: PipelineConfig, options: RunOptions = {}, stages = STAGES) {
  computed = []
  messages = []
  const summary = await runPipeline(cfg, stages, { reporter, ...options })
  return { summary, computed: [...computed].sort() }
}

/** Units each stage computed, e.g. { tokenize: 0, extract: 4, correlate: 1 }. */
function counts(units: string[]): Record<string, number> {
  const out: Record<string, number> = { tokenize: 0, extract: 0, correlate: 0 }
  for (const u of units) out[u.split(' ')[0]] += 1
  return out
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'seedscope-runner-'))
  writeFileSync(join(dir, 'corpus.txt'), 'some documents')
  writeFileSync(
    join(dir, 'pipeline.config.yaml'),
    [
      'output_dir: out',
      'seeds: [{ name: alpha, checkpoint: m/a }, { name: beta, checkpoint: m/b }]',
      'corpus: { paths: [corpus.txt] }',
      'execution: { concurrency: 2 }',
      '',
    ].join('\n'),
  )
})

afterEach(() => rmSync(dir, { recursive: true, force: true }))

describe('count work, not time', () => {
  test('a complete run computes every unit once; a second run computes none', async () => {
    const first = await run(config())
    expect(counts(first.computed)).toEqual({ tokenize: 2, extract: 4, correlate: 1 })
    expect(first.summary.stages.map((s) => [s.stage, s.ran, s.skipped])).toEqual([
      ['tokenize', 2, 0],
      ['extract', 4, 0],
      ['correlate', 1, 0],
    ])
    const second = await run(config())
    expect(second.computed).toEqual([])
    expect(second.summary.stages.map((s) => [s.stage, s.ran, s.skipped])).toEqual([
      ['tokenize', 0, 2],
      ['extract', 0, 4],
      ['correlate', 0, 1],
    ])
    expect(messages).toContain('correlate alpha--beta: up to date, skipping')
    const status = await pipelineStatus(config(), STAGES)
    expect(formatStatus(status)).toEqual([
      'tokenize: done (2 units)',
      'extract: done (4 units)',
      'correlate: done (1 unit)',
      'status: 3 of 3 stages done',
    ])
  })

  test('--force reruns the selected stages only', async () => {
    await run(config())
    const forced = await run(config(), { force: true, stages: ['extract', 'correlate'] })
    expect(counts(forced.computed)).toEqual({ tokenize: 0, extract: 4, correlate: 1 })
  })
})

describe('hash coverage: a change makes its stage stale, and downstream only when bytes change', () => {
  // [change, units each stage recomputes, the reason status gives for the first changed stage]
  const CASES: [string, string[], Record<string, number>, string][] = [
    ['extract.dtype', ['extract.dtype=float16'], { tokenize: 0, extract: 4, correlate: 1 }, 'params changed: extract.dtype'],
    ['correlate.threshold', ['correlate.threshold=0.6'], { tokenize: 0, extract: 0, correlate: 1 }, 'params changed: correlate.threshold'],
    ['tokenize.shuffle_seed', ['tokenize.shuffle_seed=7'], { tokenize: 2, extract: 4, correlate: 1 }, 'params changed: tokenize.shuffle_seed'],
    // In extract's params, so extract reruns; its bytes come out the same, so correlate does not.
    ['extract.batch_rows', ['extract.batch_rows=4'], { tokenize: 0, extract: 4, correlate: 0 }, 'params changed: extract.batch_rows'],
    ['execution.threads (speed only)', ['execution.threads=1'], { tokenize: 0, extract: 0, correlate: 0 }, ''],
  ]

  test.each(CASES)('%s', async (_name, overrides, expected, reason) => {
    await run(config())
    const status = await pipelineStatus(config(...overrides), STAGES)
    const firstStale = status.flatMap((s) => s.units).find((u) => u.state !== 'done')
    expect(firstStale?.reasons.join('; ') ?? '').toBe(reason)
    const rerun = await run(config(...overrides))
    expect(counts(rerun.computed)).toEqual(expected)
  })

  test('status names the changed key, and downstream units point at their stale inputs', async () => {
    await run(config())
    const lines = formatStatus(await pipelineStatus(config('extract.dtype=float16'), STAGES))
    expect(lines).toEqual([
      'tokenize: done (2 units)',
      'extract: 4 of 4 units stale',
      '  extract alpha/shard-0: stale (params changed: extract.dtype)',
      '  extract alpha/shard-1: stale (params changed: extract.dtype)',
      '  extract beta/shard-0: stale (params changed: extract.dtype)',
      '  extract beta/shard-1: stale (params changed: extract.dtype)',
      'correlate: 1 of 1 unit stale (waiting for extract)',
      '  correlate alpha--beta: stale (upstream not up to date: extract alpha/shard-0, extract beta/shard-0, ' +
        'extract alpha/shard-1 and 1 more)',
      'status: 1 of 3 stages done',
    ])
  })

  test('units that come from a stale upstream are not listed until it is current', async () => {
    await run(config())
    const lines = formatStatus(await pipelineStatus(config('tokenize.shuffle_seed=3'), STAGES))
    expect(lines.slice(0, 3)).toEqual([
      'tokenize: 2 of 2 units stale',
      '  tokenize shard-0: stale (params changed: tokenize.shuffle_seed)',
      '  tokenize shard-1: stale (params changed: tokenize.shuffle_seed)',
    ])
    expect(lines).toContain('extract: no units yet (waiting for tokenize)')
  })

  test('an edited input file makes its readers stale', async () => {
    await run(config())
    writeFileSync(join(dir, 'corpus.txt'), 'other documents, same idea')
    const status = await pipelineStatus(config(), STAGES)
    expect(status[0].units[0].reasons).toEqual([`inputs changed: ${join(dir, 'corpus.txt')}`])
    expect(counts((await run(config())).computed)).toEqual({ tokenize: 2, extract: 4, correlate: 1 })
  })

  test('a new stage version makes every unit of that stage stale', async () => {
    await run(config())
    const bumped = [tokenize, extract, { ...correlate, version: 2 }]
    const status = await pipelineStatus(config(), bumped)
    expect(status[2].units[0].reasons).toEqual(['stage version changed: 1 → 2'])
    expect(counts((await run(config(), {}, bumped)).computed)).toEqual({ tokenize: 0, extract: 0, correlate: 1 })
  })

  test('a new seed adds units and leaves the others done', async () => {
    await run(config())
    const three = config('seeds=[{name: alpha, checkpoint: a}, {name: beta, checkpoint: b}, {name: gamma, checkpoint: c}]')
    const rerun = await run(three)
    expect(rerun.computed).toEqual([
      'correlate alpha--gamma',
      'correlate beta--gamma',
      'extract gamma/shard-0',
      'extract gamma/shard-1',
    ])
  })
})

describe('outputs checked against the manifest', () => {
  const output = () => join(dir, 'out', 'extract', 'beta', 'shard-1.txt')

  test('a corrupt output (same size) gets one warning naming the file, and only its unit recomputes', async () => {
    await run(config())
    const good = readFileSync(output())
    const bad = Buffer.from(good)
    bad[0] ^= 0xff
    writeFileSync(output(), bad)
    const status = await pipelineStatus(config(), STAGES)
    expect(status[1].units[3].reasons).toEqual(['output corrupt: extract/beta/shard-1.txt (content hash differs from the manifest)'])
    const rerun = await run(config())
    expect(rerun.computed).toEqual(['extract beta/shard-1'])
    const warnings = messages.filter((m) => m.startsWith('warning:'))
    expect(warnings).toEqual([
      `warning: ${output()} does not match its manifest (corrupt?); recomputing extract beta/shard-1`,
    ])
    expect(readFileSync(output())).toEqual(good)
  })

  test('a truncated output is corrupt by size; a deleted one is missing', async () => {
    await run(config())
    truncateSync(output(), 3)
    rmSync(join(dir, 'out', 'extract', 'alpha', 'shard-0.txt'))
    const status = await pipelineStatus(config(), STAGES)
    expect(status[1].units[3].reasons[0]).toMatch(/^output corrupt: extract\/beta\/shard-1.txt \(3 bytes, manifest says \d+\)$/)
    expect(status[1].units[0].reasons).toEqual(['output missing: extract/alpha/shard-0.txt'])
    // Recomputed bytes equal the recorded ones, so correlate's inputs are unchanged and it is not rerun.
    expect((await run(config())).computed).toEqual(['extract alpha/shard-0', 'extract beta/shard-1'])
  })

  test("an older seedscope's manifest (format 1, sha256 hashes) makes its stage's units run again, saying why", async () => {
    await run(config())
    const manifestFile = join(dir, 'out', 'extract', 'manifest.json')
    writeFileSync(manifestFile, JSON.stringify({ format: 1, stage: 'extract', units: { 'alpha/shard-0': {} } }))
    const status = await pipelineStatus(config(), STAGES)
    expect(status[1].units[0].reasons).toEqual(['its manifest is from an older seedscope (format 1, sha256 hashes)'])
    expect((await run(config())).computed.filter((u) => u.startsWith('extract'))).toHaveLength(4)
    expect(JSON.parse(readFileSync(manifestFile, 'utf8')).format).toBe(2)
  })
})

describe('the lock', () => {
  test('a live holder stops the run with a message naming its pid, start time and the lock file', async () => {
    const holder = spawn('sleep', ['30'])
    try {
      const started = new Date(2030, 0, 1, 2, 14)
      const outputs = join(dir, 'out')
      mkdirSync(outputs)
      writeFileSync(join(outputs, '.lock'), JSON.stringify({ pid: holder.pid, started: started.toISOString(), host: hostname() }))
      await expect(run(config())).rejects.toThrow(
        new UserError(
          `${outputs} is locked by pid ${holder.pid} (started 2030-01-01 02:14); wait for it, or remove ${outputs}/.lock if that process is gone`,
        ),
      )
      expect(existsSync(join(outputs, '.lock'))).toBe(true) // someone else's lock is left alone
    } finally {
      holder.kill()
    }
  })

  test("a dead holder's lock is taken over with a warning, and released at the end", async () => {
    const gone = spawnSync('true').pid
    mkdirSync(join(dir, 'out'))
    writeFileSync(join(dir, 'out', '.lock'), JSON.stringify({ pid: gone, started: new Date().toISOString(), host: hostname() }))
    await run(config())
    expect(messages.filter((m) => m.startsWith('warning:'))[0]).toMatch(
      new RegExp(`taking over the lock of pid ${gone} \\(started \\d\\d:\\d\\d\\), which is no longer running$`),
    )
    expect(existsSync(join(dir, 'out', '.lock'))).toBe(false)
  })
})

describe('choosing and stopping', () => {
  test('--stages runs only the named stages, and refuses when what they read is not up to date', async () => {
    await expect(run(config(), { stages: ['correlate'] })).rejects.toThrow(
      'correlate needs tokenize, which is not up to date (2 of 2 units pending or stale); run it too: --stages tokenize,correlate',
    )
    expect(counts((await run(config(), { stages: ['tokenize'] })).computed)).toEqual({ tokenize: 2, extract: 0, correlate: 0 })
    await expect(run(config(), { stages: ['extrct'] })).rejects.toThrow(
      '--stages: unknown stage "extrct" (stages: tokenize, extract, correlate)',
    )
  })

  test('a stop request (first Ctrl-C) ends the run at the next unit boundary; the rerun does the rest', async () => {
    const stop = new AbortController()
    const stopping: AnyStage = {
      ...extract,
      parallelUnits: false,
      async run(unit, ctx) {
        await extract.run(unit, ctx)
        stop.abort() // as if Ctrl-C came during the first unit
      },
    }
    const first = await run(config(), { stop: stop.signal }, [tokenize, stopping, correlate])
    expect(first.summary.interrupted).toBe(true)
    expect(counts(first.computed)).toEqual({ tokenize: 2, extract: 1, correlate: 0 })
    const second = await run(config())
    expect(counts(second.computed)).toEqual({ tokenize: 0, extract: 3, correlate: 1 })
  })

  test('a failing unit: the error names stage and unit, the units that finished are kept', async () => {
    const failing: AnyStage = {
      ...extract,
      parallelUnits: false,
      async run(unit, ctx) {
        if (unit.id === 'beta/shard-0') throw new UserError('model.safetensors: truncated')
        await extract.run(unit, ctx)
      },
    }
    await expect(run(config(), {}, [tokenize, failing, correlate])).rejects.toThrow(
      new UserError('extract beta/shard-0: model.safetensors: truncated'),
    )
    expect(counts((await run(config())).computed)).toEqual({ tokenize: 0, extract: 2, correlate: 1 })
  })

  test('a unit that does not write a declared output, or writes an undeclared one, is a bug', async () => {
    const lazy: AnyStage = { ...correlate, run: async () => {} }
    await expect(run(config(), {}, [tokenize, extract, lazy])).rejects.toThrow(
      'correlate alpha--beta: correlate alpha--beta finished without writing correlate/alpha--beta.txt',
    )
    const stray: AnyStage = { ...correlate, run: async (_u, ctx) => ctx.writeFile('correlate/other.txt', 'x') }
    await expect(run(config(), {}, [tokenize, extract, stray])).rejects.toThrow('which is not among its declared outputs')
  })
})

describe('inputs outside output_dir', () => {
  test('a missing input file: status says so, run stops with the file named', async () => {
    rmSync(join(dir, 'corpus.txt'))
    const status = await pipelineStatus(config(), STAGES)
    expect(status[0].units[0]).toMatchObject({ state: 'pending', reasons: [`input missing: ${join(dir, 'corpus.txt')}`] })
    await expect(run(config())).rejects.toThrow(new UserError(`${join(dir, 'corpus.txt')}: not found (an input of tokenize shard-0)`))
  })

  test("a stage's own complaint about its inputs is a status reason, and stops a run", async () => {
    const picky: AnyStage = {
      ...tokenize,
      inputs: () => {
        throw new UserError('m/a: no such tokenizer file or model directory')
      },
    }
    const status = await pipelineStatus(config(), [picky, extract, correlate])
    expect(formatStatus(status).slice(0, 3)).toEqual([
      'tokenize: 2 of 2 units pending',
      '  tokenize shard-0: pending (inputs unavailable: m/a: no such tokenizer file or model directory)',
      '  tokenize shard-1: pending (inputs unavailable: m/a: no such tokenizer file or model directory)',
    ])
    await expect(run(config(), {}, [picky, extract, correlate])).rejects.toThrow(
      new UserError('m/a: no such tokenizer file or model directory'),
    )
  })

  test('are hashed once and then remembered by size and mtime', async () => {
    await run(config())
    const cache = JSON.parse(readFileSync(join(dir, 'out', '.cache', 'file-hashes.json'), 'utf8'))
    expect(cache[join(dir, 'corpus.txt')].hash).toBe(contentHashOf('some documents'))
    // Besides the input: the outputs, recorded from their writes so that the next run need not read them.
    const others = Object.keys(cache).filter((path) => path !== join(dir, 'corpus.txt'))
    expect(others.length).toBeGreaterThan(0)
    for (const path of others) expect([path.startsWith(join(dir, 'out') + '/'), cache[path].written]).toEqual([true, true])
  })
})

describe('seedscope plan', () => {
  test("stage estimates are scaled to the units still to run, and disk and memory shortfalls are warned", async () => {
    const huge: AnyStage = {
      ...correlate,
      plan: () => ({ tokens: 1e8, flops: 2.7e17, diskBytes: 2 ** 70, memoryBytes: 2 ** 60, seconds: 7200, notes: ['streamed: say why'] }),
    }
    const plan = await planPipeline(config(), [tokenize, extract, huge])
    expect(plan.stages.map((s) => [s.stage, s.units, s.toRun, s.waitingFor])).toEqual([
      ['tokenize', 2, 2, []],
      ['extract', 0, 0, ['tokenize']], // units known once tokenize ran
      ['correlate', 1, 1, ['extract']],
    ])
    expect(plan.stages[2].estimate).toMatchObject({ tokens: 1e8, flops: 2.7e17, seconds: 7200 })
    expect(plan.warnings).toEqual([
      expect.stringMatching(new RegExp(`^${join(dir, 'out')} needs about 1024\\.0 EiB more, but its file system has .* free$`)),
      expect.stringMatching(/^correlate needs about 1\.0 EiB of memory at its peak; this machine has .*$/),
    ])
    const lines = formatPlan(plan, 'out')
    expect(lines[1]).toMatch(/^stage +units +to run +tokens +FLOPs +disk +memory +time$/)
    expect(lines[4]).toMatch(/^correlate +1 +1 +100\.0M +2\.7e\+17 .* 2\.0 h$/)
    expect(lines).toContain('correlate: streamed: say why')

    await run(config())
    const done = await planPipeline(config(), [tokenize, extract, huge])
    expect(done.stages[2].estimate.flops).toBe(0) // nothing left to run
    expect(done.warnings).toEqual([])
  })
})

describe('partial state', () => {
  test('is offered again to the same unit after a failure, and removed once the unit is done', async () => {
    const seen: string[] = []
    let fail = true
    const resumable: AnyStage = {
      ...correlate,
      async run(unit, ctx) {
        const path = ctx.partialPath('accumulators.bin')
        seen.push(existsSync(path) ? readFileSync(path, 'utf8') : 'fresh')
        writeFileSync(path, 'half done')
        if (fail) throw new Error('killed')
        await correlate.run(unit, ctx)
      },
    }
    await expect(run(config(), {}, [tokenize, extract, resumable])).rejects.toThrow('killed')
    fail = false
    await run(config(), {}, [tokenize, extract, resumable])
    expect(seen).toEqual(['fresh', 'half done'])
    expect(existsSync(join(dir, 'out', 'correlate', '.partial'))).toBe(true)
    expect(existsSync(join(dir, 'out', 'correlate', '.partial', 'alpha--beta'))).toBe(false)
  })
})

describe('progress on a log file', () => {
  test('plain timestamped lines at each unit end: units, throughput, ETA', () => {
    let now = new Date(2030, 0, 1, 12, 3, 1).getTime()
    const lines: string[] = []
    const stream = { write: (s: string) => lines.push(s), isTTY: false } as unknown as NodeJS.WritableStream
    const reporter = createReporter(stream, { now: () => now })
    const meter = reporter.stage('extract', 4, 'tok')
    const unit = meter.unit('alpha/shard-0')
    unit.setTotal(5000)
    now += 10_000
    unit.advance(5000)
    unit.done()
    const half = meter.unit('alpha/shard-1')
    half.setTotal(5000)
    now += 5_000
    half.advance(2500)
    reporter.warn('something odd')
    meter.finish()
    reporter.close()
    expect(lines).toEqual(['[12:03:11] extract 1/4 units, 500 tok/s, ETA 00:00:30\n', '[12:03:16] warning: something odd\n'])
  })
})
