// Short measurements for `seedscope plan` (SPEC §7): how fast the first seed's extraction graph runs on this
// machine (with the per-neuron statistics extract keeps beside it and the writing of its shards), how fast the
// pair-sums GEMM is, and how many bytes of the corpus make a token. Each result is cached in
// <output_dir>/.cache/calibration.json under a key naming the machine (CPU model, cores), the build, and what was
// measured (files, shape, threads), so a second plan measures nothing and a changed key measures again.
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CorpusConfig, ExecutionConfig } from '../config.js'
import { writeFileAtomic } from '../io/atomic-write.js'
import { writeActivationShard } from '../io/activation-store.js'
import { checkpointFiles } from '../io/checkpoint.js'
import { listCorpusFiles, readCorpus } from '../io/corpus.js'
import { loadFastGemm } from '../model/gemm.js'
import { readModelConfig } from '../model/hf-config.js'
import { hookBuffers, loadInstrumentedModel } from '../model/instrumented.js'
import { weightsCache } from '../model/weights-file.js'
import { cacheDirOf } from '../runner/stage.js'
import { findTokenizerFiles, loadTokenizer } from '../model/tokenizer.js'
import { kernels } from '../stats/kernels.js'
import { type ChunkRows, PearsonAccumulator } from '../stats/pearson.js'
import { TopActivations } from '../stats/top-activations.js'
import { EXTRACTION_REQUEST } from './extract/shard.js'
import { ShardBuffer } from './extract/shard-buffer.js'
import { forwardFlopsPerToken, parameterCount } from './plan-estimates.js'

const CACHE_VERSION = 3
const FORWARD_ROWS = 2 // a batch of 2 rows × ctx: long enough to time, short enough for GPT-2 small in ~1 s
const BUDGET_MS = 400 // timed runs continue until this much time has passed (after the minimum runs)
const MIN_RUNS = 2
const MAX_RUNS = 50
// The pair sums' chunk step (shift, product, float64 add) of 2048 neurons against 2048 over 4096 tokens: 34 GFLOP,
// ~0.1 s on a native backend, wide enough that AMX and BLAS run as they do in the stage. The pure-JS fallback gets
// 512 × 512 × 1024 (0.5 GFLOP, ~0.3 s).
const GEMM_SHAPE = { m: 2048, n: 2048, k: 4096 }
const GEMM_SHAPE_JS = { m: 512, n: 512, k: 1024 }
const TOP_K = 50 // extract.top_k's default; the heaps' cost hardly depends on it
const SAMPLE_DOCUMENTS = 64 // bytes per token from the corpus's first documents, up to this many
const SAMPLE_BYTES = 256 * 1024 // or this much text

export interface Machine {
  cpu: string
  cores: number
}

export interface ForwardCalibration {
  seed: string
  checkpoint: string
  shape: { nLayers: number; dModel: number; dMlp: number }
  rows: number
  ctx: number // positions per row: tokenize.ctx, or fewer when the model supports fewer
  tokensPerSecond: number // forward passes of the extraction graph
  flopsPerToken: number // of that graph (plan-estimates.ts), to scale the rate to other models
  statisticsPerSecond: number // neuron·tokens per second through moments, top-k and the neuron-major copy
  writeBytesPerSecond: number // activation shards (float32 Parquet, hashed, fsynced) written under output_dir
  loadSeconds: number // checkpoint → weights → graph → session: paid once per seed
  parameters: number // of the loaded model (plan-estimates.ts's count), to scale the load time to other models
}

export interface GemmCalibration extends ChunkKind {
  backend: string
  detail: string
  m: number
  n: number
  k: number
  gflops: number // 2·m·n·k per second of the whole chunk step
}

/** What the pair sums multiply: their chunks' element type and correlate.operand_bits. */
export interface ChunkKind {
  dtype: 'float16' | 'float32' // of the chunks (a shard's, or float32 in streamed mode)
  operandBits: 16 | 24 // correlate.operand_bits
}

export interface TextCalibration {
  documents: number // sampled from the start of the first corpus file
  textBytes: number // their text, UTF-8
  tokens: number
  bytesPerToken: number
  tokensPerSecond: number // encoding on one thread (tokenize runs one encoder per thread)
}

export interface Calibrated<T> {
  result: T
  measuredAt: string // ISO time
  cached: boolean // read from the cache file, not measured by this call
}

interface CacheFile {
  version: number
  entries: { key: object; measuredAt: string; result: unknown }[]
}

export const calibrationPath = (outputDir: string) => join(cacheDirOf(outputDir), 'calibration.json')

export function thisMachine(): Machine {
  return { cpu: cpus()[0]?.model.trim() ?? 'unknown', cores: availableParallelism() }
}

/**
 * The cached result under `key`, or `measure()`'s, stored for next time. Keys are compared as JSON (callers
 * build them in a fixed order), so a key must name everything the number depends on.
 */
export async function cachedCalibration<T>(outputDir: string, key: object, measure: () => Promise<T>): Promise<Calibrated<T>> {
  const path = calibrationPath(outputDir)
  const id = JSON.stringify(key)
  const cache = readCache(path)
  const hit = cache.entries.find((e) => JSON.stringify(e.key) === id)
  if (hit) return { result: hit.result as T, measuredAt: hit.measuredAt, cached: true }
  const result = await measure()
  const measuredAt = new Date().toISOString()
  const entries = [...readCache(path).entries.filter((e) => JSON.stringify(e.key) !== id), { key, measuredAt, result }]
  writeFileAtomic(path, JSON.stringify({ version: CACHE_VERSION, entries } satisfies CacheFile, null, 2) + '\n')
  return { result, measuredAt, cached: false }
}

/** Forget every calibration of this output directory (`plan --recalibrate`). */
export function forgetCalibration(outputDir: string): void {
  rmSync(calibrationPath(outputDir), { force: true })
}

function readCache(path: string): CacheFile {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as CacheFile
    if (parsed.version === CACHE_VERSION && Array.isArray(parsed.entries)) return parsed
  } catch {
    // absent or unreadable: the cache only saves a few seconds, so measure again
  }
  return { version: CACHE_VERSION, entries: [] }
}

/** UTF-8 bytes per token of the corpus's first documents under the run's tokenizer, and how fast it encodes. */
export function calibrateBytesPerToken(outputDir: string, corpus: CorpusConfig, tokenizerPath: string): Promise<Calibrated<TextCalibration>> {
  const first = listCorpusFiles(corpus.paths, corpus.format)[0].path
  const tokenizer = findTokenizerFiles(tokenizerPath)
  const tokenizerFiles = tokenizer.kind === 'tokenizer.json' ? [tokenizer.path] : [tokenizer.vocab, tokenizer.merges]
  const key = {
    what: 'bytes-per-token', machine: thisMachine(), files: [first, ...tokenizerFiles].map(fileStamp), format: corpus.format, text_field: corpus.text_field,
  }
  return cachedCalibration(outputDir, key, async () => {
    const encoder = await loadTokenizer(tokenizerPath)
    let documents = 0, textBytes = 0, tokens = 0, encodeMs = 0
    for await (const doc of readCorpus([first], { format: corpus.format, textField: corpus.text_field })) {
      documents++
      textBytes += Buffer.byteLength(doc.text)
      const start = performance.now()
      tokens += (await encoder.encode(doc.text)).length
      encodeMs += performance.now() - start
      if (documents >= SAMPLE_DOCUMENTS || textBytes >= SAMPLE_BYTES) break
    }
    return { documents, textBytes, tokens, bytesPerToken: tokens ? textBytes / tokens : NaN, tokensPerSecond: tokens / (encodeMs / 1000) }
  })
}

/** Forward and statistics rates of `seed`'s extraction graph on rows of `ctx` random tokens. */
export function calibrateForward(
  outputDir: string,
  seed: { name: string; checkpoint: string },
  ctx: number,
  execution: Pick<ExecutionConfig, 'threads' | 'provider'>,
): Promise<Calibrated<ForwardCalibration>> {
  const { shape } = readModelConfig(seed.checkpoint)
  const positions = Math.min(ctx, shape.nCtx)
  const files = checkpointFiles(seed.checkpoint).map(fileStamp)
  const key = {
    what: 'forward', machine: thisMachine(), code: buildStamps(), files, rows: FORWARD_ROWS, ctx: positions,
    threads: execution.threads, provider: execution.provider, request: EXTRACTION_REQUEST,
  }
  return cachedCalibration(outputDir, key, async () => {
    const rates = await measureForward(seed.checkpoint, positions, execution, cacheDirOf(outputDir))
    const { nLayers, dModel, dMlp } = shape
    return {
      parameters: parameterCount(shape),
      seed: seed.name,
      checkpoint: seed.checkpoint,
      shape: { nLayers, dModel, dMlp },
      rows: FORWARD_ROWS,
      ctx: positions,
      flopsPerToken: forwardFlopsPerToken(shape, positions),
      ...rates,
    }
  })
}

async function measureForward(dir: string, positions: number, execution: Pick<ExecutionConfig, 'threads' | 'provider'>, cacheDir: string) {
  const scratchShard = join(cacheDir, 'calibration-shard.parquet')
  const loadStart = performance.now()
  const session = { threads: execution.threads, provider: execution.provider, weightsDir: weightsCache(cacheDir) }
  const model = await loadInstrumentedModel(dir, EXTRACTION_REQUEST, session)
  const loadSeconds = (performance.now() - loadStart) / 1000
  try {
    const { nLayers, dMlp, dVocab } = model.config.shape
    const tokens = randomTokens(FORWARD_ROWS, positions, dVocab)
    let out!: Awaited<ReturnType<typeof model.run>> // the last run's outputs feed the statistics below
    const into = hookBuffers(model, FORWARD_ROWS, positions) // reused from run to run, as the stage's model worker does
    const forwardSeconds = await timePerRun(async () => {
      out = await model.run(tokens, [], into)
    })
    // The rest of extract's per-batch work (extract/shard-buffer.ts): moments of hook_pre, top-k and the
    // neuron-major copy of the site, at every position but BOS. A fresh buffer per run, made outside the clock.
    const batchTokens = FORWARD_ROWS * positions
    const valid = new Uint8Array(batchTokens).fill(1)
    for (let r = 0; r < FORWARD_ROWS; r++) valid[r * positions] = 0
    const layout = { nLayers, dMlp }
    const fresh = () => new ShardBuffer(layout, batchTokens - FORWARD_ROWS, 'blocks.{l}.mlp.hook_post')
    let buffer!: ShardBuffer
    const statisticsSeconds = await timePerRun(async (input) => {
      buffer = input
      buffer.absorb(out, valid, 0, positions)
      new TopActivations(nLayers * dMlp, TOP_K).addRows(buffer.acts, buffer.tokens, buffer.places)
    }, fresh)
    // Then its activations as a shard, on the disk the outputs go to.
    const shard = { nLayers, dMlp, rows: Array.from({ length: FORWARD_ROWS }, (_, r) => r), positions, valid, dtype: 'float32' as const, site: 'calibration' }
    let bytes = 0
    const writeSeconds = await timePerRun(async () => (bytes = (await writeActivationShard(scratchShard, shard, buffer.acts)).bytes))
    rmSync(scratchShard, { force: true })
    return {
      tokensPerSecond: batchTokens / forwardSeconds,
      statisticsPerSecond: (nLayers * dMlp * batchTokens) / statisticsSeconds,
      writeBytesPerSecond: bytes / writeSeconds,
      loadSeconds,
    }
  } finally {
    await model.release()
  }
}

/**
 * The build whose speed a forward calibration measured: this module (rewritten by every `make build`) and the
 * native kernels addon. A faster or slower build measures again instead of planning with the old numbers.
 */
function buildStamps(): [string, number, number][] {
  const files = [fileURLToPath(import.meta.url), fileURLToPath(new URL('../../native/kernels/build/Release/kernels.node', import.meta.url))]
  return files.filter((file) => existsSync(file)).map(fileStamp)
}

/** A file as a cache key sees it: path, size, modification time. */
function fileStamp(path: string): [string, number, number] {
  const { size, mtimeMs } = statSync(path)
  return [path, size, mtimeMs]
}

/**
 * GFLOP/s of the pair sums' chunk step as the correlate stage runs it (PearsonAccumulator.add on the backend it
 * picks: shift, product and float64 add), on chunks of the given kind and a fixed representative shape.
 */
export async function calibrateGemm(outputDir: string, threads: number, chunk: ChunkKind): Promise<Calibrated<GemmCalibration>> {
  const backend = loadFastGemm(threads, { operandBits: chunk.operandBits })   // as correlate/pair.ts and extract/stream.ts load it
  kernels.setThreads(threads)
  try {
    const { m, n, k } = backend.name === 'js' ? GEMM_SHAPE_JS : GEMM_SHAPE
    const key = { what: 'gemm', machine: thisMachine(), backend: backend.name, detail: backend.detail, m, n, k, threads, ...chunk }
    return await cachedCalibration(outputDir, key, async () => {
      const a = chunkRows(m, k, chunk.dtype, 1), b = chunkRows(n, k, chunk.dtype, 2)
      const sums = new PearsonAccumulator({ a: { start: 0, count: m }, b: { start: 0, count: n }, gemm: backend.gemm })
      const seconds = await timePerRun(() => sums.add(a, b, k))
      return { backend: backend.name, detail: backend.detail, m, n, k, ...chunk, gflops: (2 * m * n * k) / seconds / 1e9 }
    })
  } finally {
    backend.close()
  }
}

/** rows × tokens random activations as a shard holds them: float32, or float16 blobs. */
function chunkRows(rows: number, tokens: number, dtype: 'float16' | 'float32', seed: number): ChunkRows {
  const values = randomFloats(rows * tokens, seed)
  if (dtype === 'float32') return values
  const half = new Uint16Array(values.length)
  kernels.toFloat16(values, half)
  return { bytes: new Uint8Array(half.buffer), offsets: Float64Array.from({ length: rows }, (_, i) => i * tokens * 2), bytesPerValue: 2 }
}

/**
 * Seconds per call of `run` after one untimed warm-up call (JIT, allocations, thread pools): at least MIN_RUNS
 * calls, more until BUDGET_MS of them has passed (at most MAX_RUNS). `prepare` makes each input outside the clock.
 */
async function timePerRun<T = void>(run: (input: T) => unknown, prepare: () => T = () => undefined as T): Promise<number> {
  await run(prepare())
  let elapsed = 0
  let runs = 0
  do {
    const input = prepare()
    const start = performance.now()
    await run(input)
    elapsed += performance.now() - start
    runs++
  } while (runs < MIN_RUNS || (elapsed < BUDGET_MS && runs < MAX_RUNS))
  return elapsed / 1000 / runs
}

/** Token ids from a fixed LCG: any ids exercise the same graph, and fixed ones keep calibration repeatable. */
function randomTokens(rows: number, positions: number, dVocab: number) {
  const data = new BigInt64Array(rows * positions)
  let state = 12345
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    data[i] = BigInt(state % dVocab)
  }
  return { data, batch: rows, positions }
}

function randomFloats(length: number, seed: number): Float32Array {
  const out = new Float32Array(length)
  let state = seed
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    out[i] = state / 2 ** 32 - 0.5
  }
  return out
}
