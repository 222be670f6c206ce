// Benchmark projects under .bench/ (git-ignored): a pipeline.config.yaml over the bundled corpus and models,
// rewritten only when it changes, so the runner's manifests keep an earlier run's tokenize (and extract) outputs
// and a benchmark pays for them once, outside its timings.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO } from './cli-run.js'

export const BENCH_DIR = join(REPO, '.bench')
const CORPUS = join(REPO, 'data/corpus/corpus.jsonl.gz')

export interface Seed {
  name: string
  checkpoint: string // absolute directory
}

export interface ProjectOptions {
  seeds: readonly Seed[]
  tokens: number // tokenize.max_tokens
  ctx: number // tokenize.ctx
  rowsPerShard: number
  batchRows: number
  mode: 'stored' | 'streamed'
  threads: number // execution.threads
  dtype?: 'float16' | 'float32' // extract.dtype (the config default when left out)
  correlate?: string // the correlate section as a YAML flow mapping, e.g. '{ threshold: 0.25 }'
}

/**
 * `.bench/projects/<name>/<config>` (pipeline.config.yaml unless named) for these options; returns the project
 * directory. Two configs in one project share its outputs: the same extraction, correlated two ways.
 */
export function writeProject(name: string, o: ProjectOptions, config = 'pipeline.config.yaml'): string {
  const dir = join(BENCH_DIR, 'projects', name)
  mkdirSync(dir, { recursive: true })
  const yaml = [
    `# written by bench/lib/project.ts; outputs in ./out`,
    'output_dir: out',
    'seeds:',
    ...o.seeds.map((s) => `  - { name: ${s.name}, checkpoint: ${s.checkpoint} }`),
    `corpus: { paths: [${CORPUS}] }`,
    `tokenize: { ctx: ${o.ctx}, max_tokens: ${o.tokens} }`,
    `extract: { rows_per_shard: ${o.rowsPerShard}, batch_rows: ${o.batchRows}, mode: ${o.mode}${o.dtype ? `, dtype: ${o.dtype}` : ''} }`,
    ...(o.correlate ? [`correlate: ${o.correlate}`] : []),
    `execution: { threads: ${o.threads} }`,
    '',
  ].join('\n')
  const path = join(dir, config)
  if (!existsSync(path) || readFileSync(path, 'utf8') !== yaml) writeFileSync(path, yaml)
  return dir
}

/** Delete the projects named `<prefix>…` other than `keep` (a benchmark whose seeds changed leaves its old ones behind). */
export function removeOtherProjects(prefix: string, keep: readonly string[]): void {
  const dir = join(BENCH_DIR, 'projects')
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (name.startsWith(prefix) && !keep.includes(path)) rmSync(path, { recursive: true, force: true })
  }
}

/** A copy of a bundled model under .bench/models/<name> (two copies of one seed make a two-seed project). */
export function modelCopy(bundled: string, name: string): Seed {
  const from = join(REPO, 'data/models', bundled)
  const to = join(BENCH_DIR, 'models', name)
  mkdirSync(to, { recursive: true })
  for (const file of readdirSync(from)) {
    const source = join(from, file)
    const target = join(to, file)
    if (!existsSync(target) || statSync(target).size !== statSync(source).size) copyFileSync(source, target)
  }
  return { name, checkpoint: to }
}

/** The bundled GPT-2 seeds present now (data/models/gpt2-s<n>; each appears atomically when trained). */
export function bundledGpt2Seeds(): Seed[] {
  return readdirSync(join(REPO, 'data/models'))
    .filter((name) => /^gpt2-s\d+$/.test(name))
    .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
    .map((name) => ({ name: name.slice(5), checkpoint: join(REPO, 'data/models', name) }))
}

/** Main-split rows and tokens (rows × ctx: every position goes through the model) of a tokenized project. */
export function mainTokens(project: string): { rows: number; ctx: number; tokens: number } {
  const summary = JSON.parse(readFileSync(join(project, 'out/tokenize/summary.json'), 'utf8'))
  const rows: number = summary.counts.rows.main
  const ctx: number = summary.params.ctx
  return { rows, ctx, tokens: rows * ctx }
}

/**
 * A stored-mode extract run's steady rate, from its manifest's finish times: the forward tokens of every unit but
 * the first to finish, over the time from the first finish to the last. Start-up, the first unit's ramp (its model
 * load, the first touch of the buffers) and the process's exit fall outside; what each further shard costs in an
 * overnight run stays in (seed switches included), measured within one run, not as a difference of two.
 */
export function steadyRate(project: string, rowsPerShard: number): { tokensPerSecond: number; units: number } | undefined {
  const { rows, ctx } = mainTokens(project)
  const manifest = JSON.parse(readFileSync(join(project, 'out/extract/manifest.json'), 'utf8')) as { units: Record<string, { finished: string }> }
  const finished = Object.entries(manifest.units)
    .map(([id, unit]) => {
      const shard = Number(/shard-(\d+)$/.exec(id)?.[1])
      return { at: Date.parse(unit.finished) / 1000, tokens: Math.min(rowsPerShard, rows - shard * rowsPerShard) * ctx }
    })
    .sort((a, b) => a.at - b.at)
  if (finished.length < 3) return undefined
  const seconds = finished.at(-1)!.at - finished[0].at
  const tokens = finished.slice(1).reduce((sum, unit) => sum + unit.tokens, 0)
  return { tokensPerSecond: tokens / seconds, units: finished.length - 1 }
}

/** The activation shards of one seed in a stored-mode project, in order. */
export function activationShards(project: string, seed: string): string[] {
  const dir = join(project, 'out/extract', seed)
  return readdirSync(dir)
    .filter((f) => /^shard-\d{4}\.parquet$/.test(f))
    .sort()
    .map((f) => join(dir, f))
}
