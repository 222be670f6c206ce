// Extract-stage benchmark (SPEC §7): tokens/s of `seedscope run --stages extract` end to end in stored mode
// (model workers, statistics, neuron-major Parquet written), on two seeds and a fixed token budget, in two shapes:
// the bundled model (copies of data/models/gpt2-s0) and the foundation benchmark's GPT-2-small shape, against the
// foundation benchmark's bare forward pass (hook_post of every layer, no unembedding; `loadInstrumentedModel`, only
// `run()` timed) on the same rows, measured in the same run, interleaved: bare, stage, bare, … Target: stage ≥
// 0.90 × bare. Beside it, the bare forward pass of the stage's own graph (hook_pre too, for the moments), and the
// stage's steady rate: its units after the first, from the manifest's finish times (what an overnight run's
// further shards cost; a short run's end-to-end figure also carries the start-up).
// Tokenizing is done first and never timed.
// On the bundled shape it also records the CLI's peak memory (VmHWM) at two token budgets with the same
// rows_per_shard: memory should follow the shard, not the corpus. Last, one shard through the library step by step says where the time goes.
// Run with `npx tsx bench/extract.ts` (make build first: the stage runs from dist/). Environment:
//   BENCH_SHAPES=bundled,gpt2-small  which shapes to measure
//   BENCH_TOKENS=100000        token budget of the bundled shape's timed project (tokenize.max_tokens)
//   BENCH_GPT2_TOKENS=16384    token budget of the GPT-2-small shape (and twice it, run once: memory, marginal rate)
//   BENCH_MEMORY_TOKENS=4×BENCH_TOKENS  the bundled shape's second, larger budget (memory, marginal rate)
//   BENCH_ROUNDS=1             timed stage runs (the bare forward runs once more than the stage)
//   BENCH_THREADS=<cores>      execution.threads, and the bare sessions' intra-op threads
import { rmSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { countValid, readActivationShardInfo, writeActivationShard } from '../src/io/activation-store.js'
import { writeSafetensors } from '../src/io/safetensors.js'
import { hookBuffers, type InstrumentedModel, loadInstrumentedModel, type TokenBatch } from '../src/model/instrumented.js'
import { EXTRACTION_OUTPUTS, type OutputRequest, site } from '../src/model/sites.js'
import { weightsCache } from '../src/model/weights-file.js'
import { EXTRACTION_REQUEST } from '../src/stages/extract/shard.js'
import { idsOf, scatterNeuronMajor, ShardBuffer } from '../src/stages/extract/shard-buffer.js'
import { shardStatsTensors } from '../src/stages/extract/shard-stats.js'
import { readTokenRows } from '../src/stages/tokenize/stage.js'
import { TopActivations } from '../src/stats/top-activations.js'
import { checkBuild, type CliRun, REPO, runStages } from './lib/cli-run.js'
import { envNumber, loadAverage, median, medianTiming, printHeader, printTable, ratioLine, thousands, timed, type Timing } from './lib/measure.js'
import { activationShards, BENCH_DIR, mainTokens, modelCopy, type ProjectOptions, type Seed, steadyRate, writeProject } from './lib/project.js'
import { writeRandomGpt2 } from './lib/random-model.js'

const TOKENS = envNumber('BENCH_TOKENS', 100_000)
const MEMORY_TOKENS = envNumber('BENCH_MEMORY_TOKENS', 4 * TOKENS)
const GPT2_TOKENS = envNumber('BENCH_GPT2_TOKENS', 16_384)
const ROUNDS = envNumber('BENCH_ROUNDS', 1)
const THREADS = envNumber('BENCH_THREADS', availableParallelism())
const SHAPES = (process.env.BENCH_SHAPES ?? 'bundled,gpt2-small').split(',')
const TOP_K = 50 // the config default

/** What one measurement runs: the seeds, the token rows and how the stage cuts them. */
interface Shape {
  title: string
  seeds: Seed[]
  project: string
  ctx: number
  rowsPerShard: number
  batchRows: number
  // A second, larger budget, run once: for the peak-memory comparison (larger, not smaller: a budget of two shards
  // per seed never fills the pipeline, so its peak says little about growth), and for the marginal rate between
  // the two budgets, where the fixed costs (start-up, the first model load, the last shard's write) cancel.
  largerProject?: string
}

function shapes(): Shape[] {
  const list: Shape[] = []
  if (SHAPES.includes('bundled')) {
    // The bundled models (4 layers × 512, d_model 128): little forward work per neuron stored, the hardest case.
    const seeds = [modelCopy('gpt2-s0', 'gpt2-s0-a'), modelCopy('gpt2-s0', 'gpt2-s0-b')]
    const cut = { ctx: 256, rowsPerShard: 64, batchRows: 8 } // n_ctx of the bundled models; the config defaults
    const options = (tokens: number): ProjectOptions => ({ seeds, tokens, ...cut, mode: 'stored', threads: THREADS })
    list.push({
      title: 'bundled model: 2 copies of gpt2-s0 (4 layers × d_mlp 512, d_model 128)',
      seeds,
      project: writeProject(`extract-${TOKENS / 1000}k`, options(TOKENS)),
      largerProject: writeProject(`extract-${MEMORY_TOKENS / 1000}k`, options(MEMORY_TOKENS)),
      ...cut,
    })
  }
  if (SHAPES.includes('gpt2-small')) {
    // The foundation benchmark's model (bench/forward.ts): GPT-2 small's shape, random weights, ctx 512. The
    // vocabulary is the bundled tokenizer's (the extraction graph never computes the unembedding).
    const tokenizer = join(REPO, 'data/models/gpt2-s0/tokenizer.json')
    const seeds = ['a', 'b'].map((name, i) => {
      const checkpoint = join(BENCH_DIR, 'models', `gpt2-small-${name}`)
      writeRandomGpt2(checkpoint, { d: 768, heads: 12, dMlp: 3072, layers: 12, vocab: 4096, positions: 512, seed: 2000 + i, tokenizer })
      return { name: `gpt2-small-${name}`, checkpoint }
    })
    const cut = { ctx: 512, rowsPerShard: 8, batchRows: 4 } // 4,096 tokens × 36,864 neurons per shard: 576 MiB float32
    list.push({
      title: 'GPT-2 small shape: 2 random-weight seeds (12 layers × d_mlp 3072, d_model 768), as bench/forward.ts',
      seeds,
      project: writeProject(`extract-gpt2-small-${GPT2_TOKENS / 1000}k`, { seeds, tokens: GPT2_TOKENS, ...cut, mode: 'stored', threads: THREADS }),
      largerProject: writeProject(`extract-gpt2-small-${(2 * GPT2_TOKENS) / 1000}k`, { seeds, tokens: 2 * GPT2_TOKENS, ...cut, mode: 'stored', threads: THREADS }),
      ...cut,
    })
  }
  return list
}

async function main(): Promise<void> {
  printHeader(
    'extract: stage end to end vs bare forward pass',
    `seedscope run --stages extract (stored mode, Parquet written) vs loadInstrumentedModel(…).run() on the same rows, ${THREADS} thread(s)`,
  )
  checkBuild()
  const results: [string, number][] = []
  for (const shape of shapes()) results.push([shape.title, await measure(shape)])
  console.log('\nextract / bare forward (wall), per shape:')
  for (const [title, ratio] of results) console.log(ratioLine(`  ${title}`, ratio, { min: 0.9 }))
}

/** One shape: the stage against the bare forward pass, peak memory, and where a shard's time goes. */
async function measure(shape: Shape): Promise<number> {
  const { seeds, project, ctx, batchRows, rowsPerShard } = shape
  console.log(`\n--- ${shape.title}: rows_per_shard ${rowsPerShard}, batch_rows ${batchRows}, ctx ${ctx} ---`)
  for (const dir of [project, shape.largerProject]) if (dir) await runStages(dir, 'tokenize') // untimed; skipped when up to date
  // The bare forward passes' models map their weights from the project's weights cache, as the stage's do; loading
  // them there also fills that cache (untimed), for the larger project too, so no timed run writes it.
  const weightsDir = weightsCache(join(project, 'out/.cache'))
  if (shape.largerProject) {
    for (const s of seeds) await (await loadInstrumentedModel(s.checkpoint, EXTRACTION_REQUEST, { threads: THREADS, weightsDir: weightsCache(join(shape.largerProject, 'out/.cache')) })).release()
  }
  const { rows, tokens } = mainTokens(project)
  const forwardTokens = tokens * seeds.length
  console.log(`timed project: ${rows} main rows × ${ctx} = ${thousands(tokens)} tokens per seed, ${thousands(forwardTokens)} through a model`)

  const rowData = await readTokenRows(join(project, 'out/tokenize'), { rowStart: 0, rowEnd: rows })
  const batches: TokenBatch[] = []
  for (let start = 0; start < rows; start += batchRows) {
    const batch = rowData.slice(start, start + batchRows)
    batches.push({ data: idsOf(batch, ctx), batch: batch.length, positions: ctx })
  }
  // The foundation benchmark's graph (every hook_post: the target's reference) and the stage's (hook_pre too).
  const session = { threads: THREADS, weightsDir }
  const loadBoth = async (request: OutputRequest) => Promise.all(seeds.map((s) => loadInstrumentedModel(s.checkpoint, request, session)))
  const models = await loadBoth(EXTRACTION_OUTPUTS)
  const load = await timed(() => loadInstrumentedModel(seeds[0].checkpoint, EXTRACTION_REQUEST, session)) // the breakdown shows it
  const stageGraphs = [load.value, await loadInstrumentedModel(seeds[1].checkpoint, EXTRACTION_REQUEST, session)]
  for (const model of [...models, ...stageGraphs]) await model.run(batches[0]) // warm-up

  const bare: Timing[] = []
  const bareStageGraph: Timing[] = []
  const stage: CliRun[] = []
  const steady: number[] = [] // tokens/s of each stage run's units after its first (manifest finish times)
  const show = (name: string, t: Timing, through = forwardTokens) =>
    console.log(`  ${name.padEnd(34)} ${t.wall.toFixed(1).padStart(6)} s wall ${t.cpu.toFixed(1).padStart(6)} s cpu  ${thousands(through / t.wall).padStart(7)} tok/s  (load ${loadAverage()})`)
  const bareRound = async (round: number) => {
    bare.push(await bareForward(models, batches))
    show(`bare forward ${round}`, bare.at(-1)!)
    bareStageGraph.push(await bareForward(stageGraphs, batches))
    show(`bare forward ${round}, stage's graph`, bareStageGraph.at(-1)!)
  }
  for (let round = 0; round < ROUNDS; round++) {
    await bareRound(round + 1)
    stage.push(await runStages(project, 'extract', { force: true }))
    show(`stage (CLI) ${round + 1}`, stage.at(-1)!)
    const rate = steadyRate(project, rowsPerShard)
    if (rate) steady.push(rate.tokensPerSecond)
    if (rate) console.log(`    its ${rate.units} units after the first: ${thousands(rate.tokensPerSecond)} tok/s (steady state)`)
  }
  await bareRound(ROUNDS + 1)

  let largeRun: CliRun | undefined
  let largeTokens = 0
  if (shape.largerProject) {
    largeTokens = mainTokens(shape.largerProject).tokens
    console.log(`a second budget (${thousands(largeTokens)} tokens, same rows_per_shard), for peak memory and the marginal rate:`)
    largeRun = await runStages(shape.largerProject, 'extract', { force: true })
    show('stage (CLI), large budget', largeRun, largeTokens * seeds.length)
    rmSync(join(shape.largerProject, 'out/extract'), { recursive: true, force: true }) // 6–10 GB, only measured; the next run forces it anyway
  }

  const breakdown = await shardBreakdown(shape, rowData.slice(0, rowsPerShard), stageGraphs[0])
  await Promise.all([...models, ...stageGraphs].map((m) => m.release()))

  const s = medianTiming(stage)
  const b = medianTiming(bare)
  const g = medianTiming(bareStageGraph)
  console.log(`\nextract, median of ${stage.length} stage run(s) and ${bare.length} bare forward pass(es), load average now ${loadAverage()}:`)
  printTable(
    ['', 'tokens/s (wall)', 'tokens/s per CPU s', 'wall s', 'CPU s'],
    [
      ['stage end to end (CLI)', thousands(forwardTokens / s.wall), thousands(forwardTokens / s.cpu), s.wall.toFixed(1), s.cpu.toFixed(1)],
      ['bare forward pass (every hook_post)', thousands(forwardTokens / b.wall), thousands(forwardTokens / b.cpu), b.wall.toFixed(1), b.cpu.toFixed(1)],
      ["bare forward pass, stage's graph (+ hook_pre)", thousands(forwardTokens / g.wall), thousands(forwardTokens / g.cpu), g.wall.toFixed(1), g.cpu.toFixed(1)],
    ],
  )
  console.log(ratioLine('stage / bare forward (wall)', b.wall / s.wall, { min: 0.9 }))
  console.log(ratioLine('stage / bare forward (per CPU second)', b.cpu / s.cpu))
  console.log(ratioLine("stage / bare forward of the stage's graph (wall)", g.wall / s.wall))
  if (steady.length > 0) {
    const rate = median(steady)
    console.log(`steady state (each run's units after its first, from the manifest's finish times): ${thousands(rate)} tokens/s`)
    console.log(ratioLine('steady-state stage rate / bare forward (wall)', rate / (forwardTokens / b.wall), { min: 0.9 }))
  }
  if (largeRun && largeRun.wall > s.wall) {
    // What each further token costs, as in an overnight run: one run at each budget, so noisier than the above.
    const marginal = ((largeTokens - tokens) * seeds.length) / (largeRun.wall - s.wall)
    console.log(`marginal rate between the two budgets (start-up, first model load and last write cancel): ${thousands(marginal)} tokens/s`)
    console.log(ratioLine('marginal stage rate / bare forward (wall)', marginal / (forwardTokens / b.wall)))
  }

  const mainHwm = median(stage.map((r) => r.maxRssMiB))
  const { nLayers, dMlp } = models[0].config.shape
  const shardMiB = (nLayers * dMlp * rowsPerShard * ctx * 4) / 2 ** 20
  console.log(`\npeak memory (VmHWM of the CLI process), rows_per_shard ${rowsPerShard}: ${mainHwm.toFixed(0)} MiB (one shard's neuron-major buffer: ≤ ${shardMiB.toFixed(0)} MiB float32)`)
  if (largeRun) {
    printTable(
      ['tokens per seed', 'shards per seed', 'peak RSS MiB'],
      [
        [thousands(tokens), String(Math.ceil(rows / rowsPerShard)), mainHwm.toFixed(0)],
        [thousands(largeTokens), String(Math.ceil(largeTokens / ctx / rowsPerShard)), largeRun.maxRssMiB.toFixed(0)],
      ],
    )
    console.log(`${(largeTokens / tokens).toFixed(1)}× the tokens, ${(largeRun.maxRssMiB / mainHwm).toFixed(2)}× the peak memory`)
  }
  printBreakdown(breakdown, load.wall)
  return b.wall / s.wall
}

/** Σ run() over every batch, for each model in turn (as the stage runs one seed's shard after another). */
async function bareForward(models: InstrumentedModel[], batches: TokenBatch[]): Promise<Timing> {
  let wall = 0
  let cpu = 0
  for (const model of models) {
    const buffers = new Map<number, ReturnType<typeof hookBuffers>>() // reused from run to run, as in bench/forward.ts
    for (const batch of batches) {
      if (!buffers.has(batch.batch)) buffers.set(batch.batch, hookBuffers(model, batch.batch, batch.positions))
      const t = await timed(() => model.run(batch, [], buffers.get(batch.batch)))
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
 * what ShardBuffer.absorb does per layer (hook_pre moments, the scatter into neuron-major), then the top-k of
 * the site from the neuron-major rows and the two files a shard unit writes. Mirrors src/stages/extract/shard.ts and shard-buffer.ts step by step.
 */
async function shardBreakdown(shape: Shape, rows: { row: number; tokens: Int32Array }[], model: InstrumentedModel): Promise<Breakdown> {
  const { ctx: CTX, batchRows: BATCH_ROWS } = shape
  const info = await readActivationShardInfo(activationShards(shape.project, shape.seeds[0].name)[0])
  const { nLayers, dMlp } = model.config.shape
  const valid = info.valid
  const validTokens = countValid(valid)
  const buffer = new ShardBuffer({ nLayers, dMlp }, validTokens, 'blocks.{l}.mlp.hook_post')
  const top = new TopActivations(nLayers * dMlp, TOP_K)
  const t = { forward: 0, moments: 0, scatter: 0 }
  const time = (key: keyof typeof t, work: () => void) => {
    const start = performance.now()
    work()
    t[key] += (performance.now() - start) / 1000
  }
  let column = 0
  const into = hookBuffers(model, BATCH_ROWS, CTX) // reused from batch to batch, as the stage's model worker does
  for (let start = 0; start < rows.length; start += BATCH_ROWS) {
    const batch = rows.slice(start, start + BATCH_ROWS)
    const begin = performance.now()
    const outputs = await model.run({ data: idsOf(batch, CTX), batch: batch.length, positions: CTX }, [], batch.length === BATCH_ROWS ? into : undefined)
    t.forward += (performance.now() - begin) / 1000
    const v = valid.subarray(start * CTX, (start + batch.length) * CTX)
    for (let layer = 0; layer < nLayers; layer++) {
      const pre = outputs[site.mlpPre(layer)].data as Float32Array
      const post = outputs[site.mlpPost(layer)].data as Float32Array
      time('moments', () => buffer.moments.add(pre, v.length, { valid: v, neuronOffset: layer * dMlp }))
      time('scatter', () => scatterNeuronMajor(post, v, dMlp, layer * dMlp, buffer.acts, validTokens, column))
    }
    for (let p = 0; p < v.length; p++) {
      if (!v[p]) continue
      buffer.places.row[column] = batch[0].row + Math.floor(p / CTX)
      buffer.places.pos[column++] = p % CTX
    }
  }
  const topK = await timed(() => top.addRows(buffer.acts, validTokens, buffer.places))
  const layout = { nLayers, dMlp, rows: rows.map((r) => r.row), positions: CTX, valid, dtype: 'float32' as const, site: info.site }
  const scratch = join(BENCH_DIR, 'projects', 'extract-breakdown')
  const parquet = await timed(() => writeActivationShard(`${scratch}.parquet`, layout, buffer.acts))
  const stats = await timed(() => writeSafetensors(`${scratch}.stats.safetensors`, shardStatsTensors(buffer.moments, top)))
  for (const suffix of ['.parquet', '.stats.safetensors']) rmSync(`${scratch}${suffix}`, { force: true })
  return {
    tokens: rows.length * CTX,
    validTokens,
    steps: [
      ['forward pass (run)', t.forward],
      ['hook_pre moments + histogram', t.moments],
      ['scatter to neuron-major', t.scatter],
      ['top-k of hook_post (neuron-major rows)', topK.wall],
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
  console.log(`(plus loading the model, once per seed in the CLI (the next seed's while this one runs): ${modelLoad.toFixed(2)} s here)`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
