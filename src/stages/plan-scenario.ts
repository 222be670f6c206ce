// The scenario `seedscope plan` estimates (plan-estimates.ts): from a config, how many tokens each seed will run
// (tokenize's summary when it has run with these params, else the corpus size at the bytes per token measured on
// its first documents, or the count given with --tokens) and each seed's shape (its config.json); or the
// study's scale (SPEC §7).
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { PipelineConfig } from '../config.js'
import { UserError } from '../errors.js'
import { listCorpusFiles } from '../io/corpus.js'
import { readModelConfig } from '../model/hf-config.js'
import { assumedTokens } from '../runner/plan.js'
import type { PlanEnvironment } from '../runner/stage.js'
import { calibrateBytesPerToken } from './calibrate.js'
import { activationBytes, decimalBytes, GPT2_SMALL, type ModelDims, neuronCount, recommendMode, type Scenario } from './plan-estimates.js'
import { TOKENIZE_OUTPUTS } from './tokenize/stage.js'

const BYTES_PER_TOKEN = 4 // English prose with GPT-2's BPE, when the tokenizer cannot be sampled
const GZIP_RATIO = 3 // text compresses ~3× when the gzip trailer cannot say (multi-member or > 4 GiB files)

export interface TokenCount {
  textTokens?: number // the corpus's text tokens (what tokenize reads), when known or estimated
  rows: number // rows of ctx tokens, both splits
  mainRows: number // rows extract runs through every seed
  source: string // where the numbers come from, for a note
  corpusTokens?: number // estimated from the corpus size, when --tokens replaced it
  encodeRate?: number // tokens per second one tokenizer thread encodes, when sampled
}

export interface ConfigScenario {
  tokens?: TokenCount // absent when neither tokenize's summary nor the corpus could be read
  tokensProblem?: string // why
  scenario?: Scenario // absent when the tokens or every seed's shape are unknown
  seedNotes: string[] // assumptions and problems: a missing checkpoint, ctx beyond a model's positions
}

/** Everything plan needs to know about a config's run, without running anything. */
export async function configScenario(cfg: PipelineConfig, env: PlanEnvironment): Promise<ConfigScenario> {
  const seedNotes: string[] = []
  let tokens: TokenCount | undefined
  let tokensProblem: string | undefined
  try {
    tokens = await tokenCount(cfg, env)
  } catch (error) {
    if (!(error instanceof UserError)) throw error
    tokensProblem = `tokens unknown: ${error.message}`
  }
  const seeds = seedShapes(cfg, seedNotes)
  if (!tokens || seeds.length === 0) return { tokens, tokensProblem, seedNotes }
  const { ctx } = cfg.tokenize
  const rowsPerShard = Math.min(cfg.extract.rows_per_shard, Math.max(1, tokens.mainRows))
  const scenario: Scenario = {
    seeds,
    ctx,
    tokensPerSeed: tokens.mainRows * ctx,
    validPerSeed: tokens.mainRows * (ctx - 1), // at most: skip_tokens ("\n") are left out too
    shardsPerSeed: Math.ceil(tokens.mainRows / cfg.extract.rows_per_shard),
    shardTokens: rowsPerShard * ctx,
    shardValid: rowsPerShard * (ctx - 1),
    extract: cfg.extract,
    modeOrigin: 'in the config',
    maxMemoryGiB: cfg.correlate.max_memory_gib,
    concurrency: cfg.execution.concurrency,
    parallelSpeedup: parallelSpeedup(cfg, env),
  }
  return { tokens, scenario, seedNotes }
}

/** The study's scale (SPEC §7): GPT-2 small, 5 seeds, 1e8 tokens each at ctx 512, float16; knobs from `cfg`. */
export function studyScenario(cfg: PipelineConfig, env: PlanEnvironment): Scenario {
  const ctx = 512
  const tokens = 1e8 // the SPEC's T: tokens correlated per seed (BOS and "\n" positions are a rounding error here)
  const seeds = ['a', 'b', 'c', 'd', 'e'].map((name) => ({ name, dims: GPT2_SMALL }))
  const stored = seeds.length * activationBytes(neuronCount(GPT2_SMALL), tokens, 'float16')
  const rows = cfg.extract.rows_per_shard
  return {
    seeds,
    ctx,
    tokensPerSeed: tokens,
    validPerSeed: tokens,
    shardsPerSeed: Math.ceil(tokens / (rows * ctx)),
    shardTokens: rows * ctx,
    shardValid: rows * (ctx - 1),
    extract: { ...cfg.extract, dtype: 'float16', mode: recommendMode(stored, env.freeDiskBytes, tokens).mode },
    modeOrigin: 'for the projection',
    maxMemoryGiB: cfg.correlate.max_memory_gib,
    concurrency: cfg.execution.concurrency,
    parallelSpeedup: parallelSpeedup(cfg, env),
  }
}

/** Concurrent stored extract units finish faster only while their threads find free cores. */
function parallelSpeedup(cfg: PipelineConfig, env: PlanEnvironment): number {
  return Math.max(1, Math.min(cfg.execution.concurrency, Math.floor(env.cores / cfg.execution.threads)))
}

async function tokenCount(cfg: PipelineConfig, env: PlanEnvironment): Promise<TokenCount> {
  const { ctx, heldout_share } = cfg.tokenize
  const assumed = assumedTokens(env)
  if (assumed !== undefined) {
    const rows = Math.floor(assumed / ctx)
    let corpusTokens: number | undefined
    try {
      corpusTokens = corpusSize(cfg).bytes / (await bytesPerToken(cfg)).value
    } catch (error) {
      if (!(error instanceof UserError)) throw error // no corpus: the projection does not need one
    }
    return { rows, mainRows: rows - Math.round(rows * heldout_share), source: `--tokens ${assumed.toExponential()}: tokenize.max_tokens assumed, tokenize not consulted`, corpusTokens }
  }
  const summary = readSummary(cfg)
  if (summary) {
    const { rows, text_tokens } = summary.counts
    return { textTokens: text_tokens.main + text_tokens.heldout, rows: rows.main + rows.heldout, mainRows: rows.main, source: `${rows.main.toLocaleString('en-US')} main rows from tokenize/summary.json` }
  }
  const corpus = corpusSize(cfg)
  const perToken = await bytesPerToken(cfg)
  const textTokens = corpus.bytes / perToken.value
  let rows = Math.floor(textTokens / (ctx - 1))
  if (cfg.tokenize.max_tokens !== undefined) rows = Math.min(rows, Math.floor(cfg.tokenize.max_tokens / ctx))
  return {
    textTokens,
    rows,
    mainRows: rows - Math.round(rows * heldout_share),
    encodeRate: perToken.encodeRate,
    source: `≈ ${decimalBytes(corpus.bytes)} of corpus in ${corpus.files} file${corpus.files === 1 ? '' : 's'} at ${perToken.value.toFixed(2)} bytes/token ` +
      `(${perToken.how}); tokenize has not run, its summary will give exact counts`,
  }
}

/** Bytes per token measured on the corpus's first documents (cached), else the usual ~4 for English prose. */
async function bytesPerToken(cfg: PipelineConfig): Promise<{ value: number; how: string; encodeRate?: number }> {
  try {
    const { result, cached } = await calibrateBytesPerToken(cfg.output_dir, cfg.corpus, cfg.tokenizer)
    if (result.tokens > 0) {
      return { value: result.bytesPerToken, how: `measured on its first ${result.documents} documents${cached ? ', cached' : ''}`, encodeRate: result.tokensPerSecond }
    }
  } catch (error) {
    if (!(error instanceof UserError)) throw error
    return { value: BYTES_PER_TOKEN, how: `assumed, as the corpus could not be sampled: ${error.message}` }
  }
  return { value: BYTES_PER_TOKEN, how: 'assumed: its first documents are empty' }
}

interface SummaryView {
  params: { ctx: number; seed: number; heldOutFraction: number; maxTokens?: number }
  counts: { text_tokens: { main: number; heldout: number }; rows: { main: number; heldout: number } }
}

/** tokenize/summary.json when tokenize ran with this config's token params; otherwise undefined. */
function readSummary(cfg: PipelineConfig): SummaryView | undefined {
  const path = join(cfg.output_dir, TOKENIZE_OUTPUTS.summary)
  if (!existsSync(path)) return undefined
  try {
    const summary = JSON.parse(readFileSync(path, 'utf8')) as SummaryView
    const p = summary.params
    const t = cfg.tokenize
    const same = p.ctx === t.ctx && p.seed === t.shuffle_seed && p.heldOutFraction === t.heldout_share && p.maxTokens === t.max_tokens
    return same && summary.counts?.rows ? summary : undefined
  } catch {
    return undefined // unreadable: the runner will redo tokenize; estimate from the corpus meanwhile
  }
}

/** Uncompressed bytes of the corpus files (gzip's trailer gives its size mod 2³²). */
function corpusSize(cfg: PipelineConfig): { bytes: number; files: number } {
  const files = listCorpusFiles(cfg.corpus.paths, cfg.corpus.format)
  let bytes = 0
  for (const { path } of files) {
    const size = statSync(path).size
    bytes += path.endsWith('.gz') ? gunzippedSize(path, size) : size
  }
  return { bytes, files: files.length }
}

function gunzippedSize(path: string, size: number): number {
  if (size < 18) return size
  const fd = openSync(path, 'r')
  try {
    const trailer = Buffer.alloc(4)
    readSync(fd, trailer, 0, 4, size - 4)
    const isize = trailer.readUInt32LE(0)
    return isize >= size ? isize : size * GZIP_RATIO // a wrapped or multi-member ISIZE is smaller than the file
  } finally {
    closeSync(fd)
  }
}

/** Each seed's shape from its config.json; a seed whose config cannot be read is assumed to match the first that can. */
function seedShapes(cfg: PipelineConfig, notes: string[]): { name: string; dims: ModelDims }[] {
  const shapes = new Map<string, ModelDims>()
  const missing: { name: string; problem: string }[] = []
  for (const seed of cfg.seeds) {
    try {
      shapes.set(seed.name, readModelConfig(seed.checkpoint).shape)
    } catch (error) {
      if (!(error instanceof UserError)) throw error
      missing.push({ name: seed.name, problem: error.message })
    }
  }
  const [known] = shapes
  if (missing.length) {
    const names = missing.map((m) => m.name).join(', ')
    const why = `${missing[0].problem}${missing.length > 1 ? `, and ${missing.length - 1} more like it` : ''}`
    notes.push(known ? `assuming ${known[0]}'s shape for ${names} until their checkpoints exist (${why})` : `no seed's shape is readable (${why})`)
  }
  if (!known) return []
  for (const [name, dims] of shapes) {
    if (dims.nCtx < cfg.tokenize.ctx) {
      notes.push(`${name} supports ${dims.nCtx} positions but tokenize.ctx is ${cfg.tokenize.ctx}: extract would fail; set tokenize.ctx ≤ ${dims.nCtx}`)
    }
  }
  return cfg.seeds.map((seed) => ({ name: seed.name, dims: shapes.get(seed.name) ?? known[1] }))
}
