// Test-only stages shaped like the real ones (tokenize → extract → correlate), computing deterministic bytes
// from their inputs instead of running models. The end-to-end tests select them with SEEDSCOPE_TOY_STAGES=1
// so they can drive the real CLI: kill it mid-run, resume, corrupt an output, hold the lock.
// Two test hooks come from the environment, read here because these stages exist only for tests:
//   SEEDSCOPE_TOY_DELAY_MS   each toy-extract unit takes this long (so a test can kill a run mid-stage)
//   SEEDSCOPE_TOY_WORK_LOG   a file to which every unit appends "<stage> <unit>" when it starts computing
import { createHash } from 'node:crypto'
import { appendFileSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import type { PipelineConfig } from '../config.js'
import type { Stage, StageContext, Unit } from './stage.js'

const TOKENS_PER_SHARD = 1000

interface ShardUnit extends Unit {
  shard: number
  corpus: readonly string[] // files, read whole
}

interface SeedShardUnit extends Unit {
  seed: string
  shard: string // the toy-tokenize unit id it reads
}

interface PairUnit extends Unit {
  a: string
  b: string
}

const shardId = (i: number) => `shard-${String(i).padStart(4, '0')}`

export const toyTokenize: Stage<ShardUnit, { tokenize: PipelineConfig['tokenize'] }> = {
  name: 'toy-tokenize',
  version: 1,
  needs: [],
  params: (cfg) => ({ tokenize: cfg.tokenize }),
  units: (cfg) =>
    Array.from({ length: Math.ceil((cfg.tokenize.max_tokens ?? 4 * TOKENS_PER_SHARD) / TOKENS_PER_SHARD) }, (_, shard) => ({
      id: shardId(shard),
      shard,
      corpus: cfg.corpus.paths,
    })),
  outputs: ({ id }) => [`toy-tokenize/${id}.bin`],
  inputs: ({ corpus }) => ({ files: corpus }),
  async run({ id, shard, corpus }, ctx) {
    noteWork(ctx)
    const text = corpus.map((file) => digest(readFileSync(file))).join(',')
    const seed = `${text}:${ctx.params.tokenize.shuffle_seed}:${shard}`
    await ctx.writeFile(`toy-tokenize/${id}.bin`, bytesFrom(seed, ctx.params.tokenize.ctx, 4096))
  },
}

export const toyExtract: Stage<SeedShardUnit, { extract: PipelineConfig['extract'] }> = {
  name: 'toy-extract',
  version: 1,
  needs: ['toy-tokenize'],
  parallelUnits: true,
  work: 'tok',
  params: (cfg) => ({ extract: cfg.extract }),
  units: (cfg, upstream) =>
    cfg.seeds.flatMap((seed) =>
      upstream.units('toy-tokenize').map(({ id }) => ({ id: `${seed.name}/${id}`, seed: seed.name, shard: id })),
    ),
  inputs: ({ shard }) => ({ units: [{ stage: 'toy-tokenize', unit: shard }] }),
  outputs: ({ id }) => [`toy-extract/${id}.bin`],
  async run({ id, seed, shard }, ctx) {
    noteWork(ctx)
    ctx.progress.setTotal(TOKENS_PER_SHARD)
    const delay = Number(process.env.SEEDSCOPE_TOY_DELAY_MS ?? 0)
    for (let done = 0; done < TOKENS_PER_SHARD; done += TOKENS_PER_SHARD / 4) {
      if (delay) await sleep(delay / 4, undefined, { signal: ctx.signal })
      ctx.progress.advance(TOKENS_PER_SHARD / 4)
    }
    const tokens = readFileSync(ctx.upstream.path(`toy-tokenize/${shard}.bin`))
    const { dtype, site } = ctx.params.extract
    await ctx.writeFile(`toy-extract/${id}.bin`, bytesFrom(`${digest(tokens)}:${seed}:${dtype}:${site}`, 0, 8192))
  },
}

export const toyCorrelate: Stage<PairUnit, { correlate: PipelineConfig['correlate'] }> = {
  name: 'toy-correlate',
  version: 1,
  needs: ['toy-extract'],
  params: (cfg) => ({ correlate: cfg.correlate }),
  units: (cfg) =>
    cfg.seeds.flatMap((a, i) => cfg.seeds.slice(i + 1).map((b) => ({ id: `${a.name}--${b.name}`, a: a.name, b: b.name }))),
  outputs: ({ id }) => [`toy-correlate/${id}.bin`],
  async run({ id, a, b }, ctx) {
    noteWork(ctx)
    const parts = ctx.upstream
      .units('toy-extract')
      .filter((u) => u.id.startsWith(`${a}/`) || u.id.startsWith(`${b}/`))
      .map((u) => digest(readFileSync(ctx.upstream.path(u.outputs[0]))))
    await ctx.writeFile(`toy-correlate/${id}.bin`, bytesFrom(`${parts.join(',')}:${ctx.params.correlate.threshold}`, 0, 1024))
  },
}

export const toyStages = [toyTokenize, toyExtract, toyCorrelate]

function noteWork(ctx: StageContext): void {
  const log = process.env.SEEDSCOPE_TOY_WORK_LOG
  if (log) appendFileSync(log, `${ctx.stage} ${ctx.unit}\n`)
}

function digest(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** `length` deterministic bytes: a sha256 chain seeded by the text. */
function bytesFrom(text: string, salt: number, length: number): Uint8Array {
  const out = new Uint8Array(length)
  let block = createHash('sha256').update(`${text}#${salt}`).digest()
  for (let at = 0; at < length; at += block.length) {
    out.set(block.subarray(0, Math.min(block.length, length - at)), at)
    block = createHash('sha256').update(block).digest()
  }
  return out
}
