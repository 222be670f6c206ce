// Extract-stage benchmark (SPEC §7): tokens/s of `seedscope run --stages extract` end to end in stored mode
// (model workers, statistics, neuron-major Parquet written), on two seeds (copies of data/models/gpt2-s0) and a
// fixed token budget, against the bare forward pass of the same extraction graph (hook_pre and hook_post of every
// layer, `loadInstrumentedModel`, only `run()` timed) on the same rows, measured in the same run, interleaved:
// bare, stage, bare, … Target: stage ≥ 0.90 × bare. Tokenizing is done first and never timed.
// It also records the CLI's peak memory (VmHWM) at two token budgets with the same rows_per_shard: memory should
// follow the shard, not the corpus. Last, one shard through the library step by step says where the time goes.
// Run with `npx tsx bench/extract.ts` (make build first: the stage runs from dist/). Environment:
//   BENCH_TOKENS=100000        token budget of the timed project (tokenize.max_tokens)
//   BENCH_MEMORY_TOKENS=25000  the second budget, for the memory comparison
//   BENCH_ROUNDS=1             timed stage runs (the bare forward runs once more than the stage)
//   BENCH_THREADS=<cores>      execution.threads, and the bare sessions' intra-op threads
import { rmSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { countValid, readActivationShardInfo, writeActivationShard } from '../src/io/activation-store.js'
import { writeSafetensors } from '../src/io/safetensors.js'
import { type InstrumentedModel, loadInstrumentedModel, type TokenBatch } from '../src/model/instrumented.js'
import { site } from '../src/model/sites.js'
import { EXTRACTION_REQUEST } from '../src/stages/extract/shard.js'
import { idsOf, scatterNeuronMajor } from '../src/stages/extract/shard-buffer.js'
import { shardStatsTensors } from '../src/stages/extract/shard-stats.js'
import { readTokenRows } from '../src/stages/tokenize/stage.js'
import { NeuronMoments } from '../src/stats/moments.js'
import { TopActivations } from '../src/stats/top-activations.js'
import { checkBuild, type CliRun, runStages } from './lib/cli-run.js'
import { envNumber, loadAverage, median, medianTiming, printHeader, printTable, ratioLine, thousands, timed, type Timing } from './lib/measure.js'
import { BENCH_DIR, mainTokens, modelCopy, type ProjectOptions, writeProject } from './lib/project.js'

const TOKENS = envNumber('BENCH_TOKENS', 100_000)
const MEMORY_TOKENS = envNumber('BENCH_MEMORY_TOKENS', 25_000)
const ROUNDS = envNumber('BENCH_ROUNDS', 1)
const THREADS = envNumber('BENCH_THREADS', availableParallelism())
const CTX = 256 // the bundled models' n_ctx
const ROWS_PER_SHARD = 64 // the config default
const BATCH_ROWS = 8 // the config default
const TOP_K = 50 // the config default

async function main(): Promise<void> {
  printHeader(
    'extract: stage end to end vs bare forward pass',
    `seedscope run --stages extract (stored mode, Parquet written) vs loadInstrumentedModel(…).run() on the same rows; ` +
      `2 seeds (copies of gpt2-s0), ctx ${CTX}, rows_per_shard ${ROWS_PER_SHARD}, batch_rows ${BATCH_ROWS}, ${THREADS} thread(s)`,
  )
  checkBuild()
  const seeds = [modelCopy('gpt2-s0', 'gpt2-s0-a'), modelCopy('gpt2-s0', 'gpt2-s0-b')]
  const options = (tokens: number): ProjectOptions => ({ seeds, tokens, ctx: CTX, rowsPerShard: ROWS_PER_SHARD, batchRows: BATCH_ROWS, mode: 'stored', threads: THREADS })
  const project = writeProject(`extract-${TOKENS / 1000}k`, options(TOKENS))
  const small = writeProject(`extract-${MEMORY_TOKENS / 1000}k`, options(MEMORY_TOKENS))
  for (const dir of [project, small]) await runStages(dir, 'tokenize') // untimed; skipped when up to date
  const { rows, tokens } = mainTokens(project)
  const forwardTokens = tokens * seeds.length
  console.log(`timed project: ${rows} main rows × ${CTX} = ${thousands(tokens)} tokens per seed, ${thousands(forwardTokens)} through a model`)

  const rowData = await readTokenRows(join(project, 'out/tokenize'), { rowStart: 0, rowEnd: rows })
  const batches: TokenBatch[] = []
  for (let start = 0; start < rows; start += BATCH_ROWS) {
    const batch = rowData.slice(start, start + BATCH_ROWS)
    batches.push({ data: idsOf(batch, CTX), batch: batch.length, positions: CTX })
  }
  const load = await timed(() => loadInstrumentedModel(seeds[0].checkpoint, EXTRACTION_REQUEST, { threads: THREADS }))
  const models = [load.value, await loadInstrumentedModel(seeds[1].checkpoint, EXTRACTION_REQUEST, { threads: THREADS })]
  for (const model of models) await model.run(batches[0]) // warm-up

  const bare: Timing[] = []
  const stage: CliRun[] = []
  const show = (name: string, t: Timing, through = forwardTokens) =>
    console.log(`  ${name.padEnd(26)} ${t.wall.toFixed(1).padStart(6)} s wall ${t.cpu.toFixed(1).padStart(6)} s cpu  ${thousands(through / t.wall).padStart(7)} tok/s  (load ${loadAverage()})`)
  for (let round = 0; round < ROUNDS; round++) {
    bare.push(await bareForward(models, batches))
    show(`bare forward ${round + 1}`, bare.at(-1)!)
    stage.push(await runStages(project, 'extract', { force: true }))
    show(`stage (CLI) ${round + 1}`, stage.at(-1)!)
  }
  bare.push(await bareForward(models, batches))
  show(`bare forward ${ROUNDS + 1}`, bare.at(-1)!)

  console.log(`peak memory at a second budget (${thousands(MEMORY_TOKENS)} tokens, same rows_per_shard):`)
  const smallTokens = mainTokens(small).tokens
  const smallRun = await runStages(small, 'extract', { force: true })
  show('stage (CLI), small budget', smallRun, smallTokens * seeds.length)

  const breakdown = await shardBreakdown(project, rowData.slice(0, ROWS_PER_SHARD), models[0])
  await Promise.all(models.map((m) => m.release()))

  const s = medianTiming(stage)
  const b = medianTiming(bare)
  console.log(`\nextract, median of ${stage.length} stage run(s) and ${bare.length} bare forward pass(es), load average now ${loadAverage()}:`)
  printTable(
    ['', 'tokens/s (wall)', 'tokens/s per CPU s', 'wall s', 'CPU s'],
    [
      ['stage end to end (CLI)', thousands(forwardTokens / s.wall), thousands(forwardTokens / s.cpu), s.wall.toFixed(1), s.cpu.toFixed(1)],
      ['bare forward pass', thousands(forwardTokens / b.wall), thousands(forwardTokens / b.cpu), b.wall.toFixed(1), b.cpu.toFixed(1)],
    ],
  )
  console.log(ratioLine('stage / bare forward (wall)', b.wall / s.wall, { min: 0.9 }))
  console.log(ratioLine('stage / bare forward (per CPU second)', b.cpu / s.cpu))

  const bigHwm = median(stage.map((r) => r.maxRssMiB))
  console.log(`\npeak memory (VmHWM of the CLI process), rows_per_shard ${ROWS_PER_SHARD}:`)
  printTable(
    ['token budget', 'tokens per seed', 'shards per seed', 'peak RSS MiB'],
    [
      [thousands(MEMORY_TOKENS), thousands(smallTokens), String(Math.ceil(smallTokens / CTX / ROWS_PER_SHARD)), smallRun.maxRssMiB.toFixed(0)],
      [thousands(TOKENS), thousands(tokens), String(Math.ceil(rows / ROWS_PER_SHARD)), bigHwm.toFixed(0)],
    ],
  )
  const { nLayers, dMlp } = models[0].config.shape
  const shardMiB = (nLayers * dMlp * ROWS_PER_SHARD * CTX * 4) / 2 ** 20
  console.log(
    `${(tokens / smallTokens).toFixed(1)}× the tokens, ${(bigHwm / smallRun.maxRssMiB).toFixed(2)}× the peak memory ` +
      `(one shard's neuron-major buffer: ≤ ${shardMiB.toFixed(0)} MiB float32)`,
  )
  printBreakdown(breakdown, load.wall)
}

/** Σ run() over every batch, for each model in turn (as the stage runs one seed's shard after another). */
async function bareForward(models: InstrumentedModel[], batches: TokenBatch[]): Promise<Timing> {
  let wall = 0
  let cpu = 0
  for (const model of models) {
    for (const batch of batches) {
      const t = await timed(() => model.run(batch))
      wall += t.wall
      cpu += t.cpu
    }
  }
  return { wall, cpu }
}

interface Breakdown {
  tokens: number
  validTokens: number
  steps: [name: string, seconds: number][]
}

/**
 * One shard of one seed through the stage's steps, each timed alone, in this process: the forward pass, then
 * what ShardBuffer.absorb does per layer (hook_pre moments, top-k of the site, the scatter into neuron-major),
 * then the two files a shard unit writes. Mirrors src/stages/extract/shard.ts and shard-buffer.ts step by step.
 */
async function shardBreakdown(project: string, rows: { row: number; tokens: Int32Array }[], model: InstrumentedModel): Promise<Breakdown> {
  const info = await readActivationShardInfo(join(project, 'out/extract/gpt2-s0-a/shard-0000.parquet'))
  const { nLayers, dMlp } = model.config.shape
  const valid = info.valid
  const validTokens = countValid(valid)
  const moments = new NeuronMoments(nLayers * dMlp)
  const top = new TopActivations(nLayers * dMlp, TOP_K)
  const acts = new Float32Array(nLayers * dMlp * validTokens)
  const t = { forward: 0, moments: 0, top: 0, scatter: 0 }
  const time = (key: keyof typeof t, work: () => void) => {
    const start = performance.now()
    work()
    t[key] += (performance.now() - start) / 1000
  }
  let column = 0
  for (let start = 0; start < rows.length; start += BATCH_ROWS) {
    const batch = rows.slice(start, start + BATCH_ROWS)
    const begin = performance.now()
    const outputs = await model.run({ data: idsOf(batch, CTX), batch: batch.length, positions: CTX })
    t.forward += (performance.now() - begin) / 1000
    const v = valid.subarray(start * CTX, (start + batch.length) * CTX)
    for (let layer = 0; layer < nLayers; layer++) {
      const pre = outputs[site.mlpPre(layer)].data as Float32Array
      const post = outputs[site.mlpPost(layer)].data as Float32Array
      time('moments', () => moments.add(pre, v.length, { valid: v, neuronOffset: layer * dMlp }))
      time('top', () => top.add(post, v.length, { firstRow: batch[0].row, nPos: CTX }, { valid: v, neuronOffset: layer * dMlp }))
      time('scatter', () => scatterNeuronMajor(post, v, dMlp, layer * dMlp, acts, validTokens, column))
    }
    for (let p = 0; p < v.length; p++) column += v[p]
  }
  const layout = { nLayers, dMlp, rows: rows.map((r) => r.row), positions: CTX, valid, dtype: 'float32' as const, site: info.site }
  const scratch = join(BENCH_DIR, 'projects', 'extract-breakdown')
  const parquet = await timed(() => writeActivationShard(`${scratch}.parquet`, layout, acts))
  const stats = await timed(() => writeSafetensors(`${scratch}.stats.safetensors`, shardStatsTensors(moments, top)))
  for (const suffix of ['.parquet', '.stats.safetensors']) rmSync(`${scratch}${suffix}`, { force: true })
  return {
    tokens: rows.length * CTX,
    validTokens,
    steps: [
      ['forward pass (run)', t.forward],
      ['hook_pre moments + histogram', t.moments],
      ['top-k of hook_post', t.top],
      ['scatter to neuron-major', t.scatter],
      ['activation Parquet write', parquet.wall],
      ['shard statistics write', stats.wall],
    ],
  }
}

function printBreakdown(b: Breakdown, modelLoad: number): void {
  const total = b.steps.reduce((sum, [, s]) => sum + s, 0)
  console.log(`\nwhere the time goes: one shard of one seed (${thousands(b.tokens)} tokens, ${thousands(b.validTokens)} valid), library calls in this process:`)
  printTable(
    ['step', 'seconds', 'share', 'tokens/s alone'],
    [
      ...b.steps.map(([name, s]) => [name, s.toFixed(2), `${((100 * s) / total).toFixed(0)}%`, thousands(b.tokens / s)]),
      ['total', total.toFixed(2), '100%', thousands(b.tokens / total)],
    ],
  )
  console.log(`(plus loading the model, once per shard unit in the CLI: ${modelLoad.toFixed(2)} s here)`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
