// Correlate-stage benchmark (SPEC §3, §7): the stage's effective GFLOP/s, Σ over seed pairs 2·N_a·N_b·T per
// second of `seedscope run --stages correlate` (Parquet reading, within-layer sums, baseline and table included),
// beside numpy's `A @ B.T` on the same shapes (N×T float32, /usr/bin/python3) and the machine's FP32 peak (the
// FMA probe native/sgemm/peak.c, else the research note's ~115 GFLOP/s per core), measured in the same run,
// interleaved: numpy and peak, stage, numpy and peak, … Targets: ≥ 0.9× numpy, ≥ 80% of peak. Two shapes (see
// shapes()): bench/extract.ts's project (two copies of gpt2-s0, N = 2048) and two random models at the study's
// layer width (N = 6144), each extracted first when it is not already, untimed. After each, two shards through
// the stage's steps in this process say where the time goes.
// Run with `npx tsx bench/correlate.ts` (make build first: the stage runs from dist/). Environment:
//   BENCH_TOKENS=100000    token budget of the bundled project (tokenize.max_tokens; shared with bench/extract.ts)
//   BENCH_WIDE_TOKENS=32768  token budget of the study-width project
//   BENCH_SHAPES=bundled,wide  which shapes to measure
//   BENCH_ROUNDS=1         timed stage runs (numpy and the peak probe run once more than the stage)
//   BENCH_THREADS=<cores>  execution.threads, OPENBLAS_NUM_THREADS of numpy, the probe's threads
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { hashFileSync } from '../src/io/file-hash.js'
import { readActivationBlock, readActivationRows, readActivationShardInfo, type ShardInfo } from '../src/io/activation-store.js'
import { loadFastGemm } from '../src/model/gemm.js'
import { rotatedPair } from '../src/stages/correlate/pair.js'
import { ALL_LAYERS, crossSums, pairResults } from '../src/stages/correlate/pair-sums.js'
import { kernels } from '../src/stats/kernels.js'
import type { ChunkRows } from '../src/stats/pearson.js'
import { WithinLayerMoments } from '../src/stats/baseline.js'
import { checkBuild, REPO, runStages } from './lib/cli-run.js'
import { envNumber, loadAverage, median, medianTiming, printHeader, printTable, ratioLine, thousands, timed, type Timing } from './lib/measure.js'
import { activationShards, BENCH_DIR, modelCopy, type Seed, writeProject } from './lib/project.js'
import { writeRandomGpt2 } from './lib/random-model.js'

const TOKENS = envNumber('BENCH_TOKENS', 100_000)
const ROUNDS = envNumber('BENCH_ROUNDS', 1)
const THREADS = envNumber('BENCH_THREADS', availableParallelism())
const NOTE_PEAK_PER_CORE = 115 // /work/shared/research/onnx-feasibility.md §3, a 256-bit FMA loop on one core
const BREAKDOWN_SHARDS = 4   // the first sets up; the projection takes its steady rate from the rest
const WIDE_TOKENS = envNumber('BENCH_WIDE_TOKENS', 32_768)
const SHAPES = (process.env.BENCH_SHAPES ?? 'bundled,wide').split(',')

interface Shape {
  title: string
  seeds: Seed[]
  project: string
}

/**
 * Two shapes. The bundled models (d_mlp 512) have 2048 neurons: little GEMM work per byte read, the hardest case
 * for the stage's own costs. The study's models have d_mlp 3072 (GPT-2 small) or more: here two layers of it
 * (6144 neurons) with random weights, so the GEMM's share is what a real run sees (the count of layers only
 * multiplies both sides).
 */
function shapes(): Shape[] {
  const bundled = [modelCopy('gpt2-s0', 'gpt2-s0-a'), modelCopy('gpt2-s0', 'gpt2-s0-b')]
  const tokenizer = join(REPO, 'data/models/gpt2-s0/tokenizer.json')
  const wide = ['a', 'b'].map((name, i) => {
    const checkpoint = join(BENCH_DIR, 'models', `wide-${name}`)
    writeRandomGpt2(checkpoint, { d: 256, heads: 4, dMlp: 3072, layers: 2, vocab: 4096, positions: 256, seed: 1000 + i, tokenizer })
    return { name: `wide-${name}`, checkpoint }
  })
  const options = { ctx: 256, batchRows: 8, mode: 'stored' as const, threads: THREADS }
  // Each project also gets BITS16_CONFIG: the same, with the float32 activations multiplied at 16 bits on AMX.
  const project = (name: string, o: Parameters<typeof writeProject>[1]) => {
    writeProject(name, { ...o, correlate: '{ operand_bits: 16 }' }, BITS16_CONFIG)
    return writeProject(name, o)
  }
  return [
    { title: 'bundled models: 4 layers × d_mlp 512', seeds: bundled, project: project(`extract-${TOKENS / 1000}k`, { ...options, seeds: bundled, tokens: TOKENS, rowsPerShard: 64 }) },
    { title: 'study width: 2 layers × d_mlp 3072 (random weights)', seeds: wide, project: project(`correlate-wide-${WIDE_TOKENS / 1000}k`, { ...options, seeds: wide, tokens: WIDE_TOKENS, rowsPerShard: 32 }) },
  ].filter((_, i) => SHAPES.includes(i === 0 ? 'bundled' : 'wide'))
}

const BITS16_CONFIG = 'bits16.config.yaml'

async function main(): Promise<void> {
  printHeader(
    'correlate: stage GFLOP/s vs numpy A @ B.T vs FP32 peak',
    `seedscope run --stages correlate (stored mode, Parquet read) on 2 seeds; numpy matmul on the same N×T float32 ` +
      `shapes; ${THREADS} thread(s) each`,
  )
  checkBuild()
  const probe = buildPeakProbe()
  const results: [string, number, number, number][] = []
  for (const shape of shapes()) {
    console.log(`\n── ${shape.title} ──`)
    const ratios = await measureShape(shape, probe)
    results.push([shape.title, ...ratios])
  }
  console.log('\nsummary (wall):')
  printTable(
    ['shape', 'stage / numpy (≥ 0.90×)', 'stage / peak (≥ 80%)', `stage / numpy projected to ${STUDY_TOKENS.toExponential(0)} tokens`],
    results.map(([title, numpy, peak, projected]) => [title, `${numpy.toFixed(2)}×`, `${(100 * peak).toFixed(0)}%`, `${projected.toFixed(2)}×`]),
  )
}

/** Times the stage on one shape against numpy and the peak; returns stage/numpy, stage/peak (both wall) and the projection. */
async function measureShape({ seeds, project }: Shape, probe: string | undefined): Promise<[number, number, number]> {
  // untimed, skipped when up to date; stats holds each seed's within-layer moments, which correlate reads
  const prepared = await timed(() => runStages(project, 'tokenize,extract,stats'))
  if (/extract [1-9]\d* run/.test(prepared.value.output)) console.log(`(extracted the project first, untimed: ${prepared.wall.toFixed(0)} s)`)

  const shards = seeds.map((s) => activationShards(project, s.name))
  const infos = await Promise.all(shards[0].map((path) => readActivationShardInfo(path)))
  const n = infos[0].nLayers * infos[0].dMlp
  const T = infos.reduce((sum, info) => sum + info.tokens, 0)
  const pairs = (seeds.length * (seeds.length - 1)) / 2
  const flops = pairs * 2 * n * n * T
  const backend = loadFastGemm(THREADS)
  kernels.setThreads(THREADS)
  console.log(`shapes: N = ${n} neurons per seed, T = ${thousands(T)} valid tokens in ${infos.length} shards, ${pairs} pair(s): ${(flops / 1e12).toFixed(2)} TFLOP`)
  console.log(`GEMM backend the stage picks: ${backend.name} (${backend.detail})${backend.skipped.length ? `; skipped: ${backend.skipped.join('; ')}` : ''}`)

  // numpy multiplies arrays it holds in memory; the stage reads the shards through the page cache. Extract writes
  // them with O_DIRECT, past the cache, so without this the first timed run read them from the disk: 0.4–0.5 s more
  // at the bundled shape, a measure of the disk, not of the code (session 18).
  const cached = shards.flat().reduce((bytes, path) => bytes + hashFileSync(path).bytes, 0)  // each read once, whole
  console.log(`shards read once, untimed, so that the stage reads them from the page cache (${(cached / 2 ** 30).toFixed(2)} GiB)`)

  const numpy = await startNumpy(n, T)
  const stage: Timing[] = []
  const numpyTimes: Timing[] = []
  const peaks: Peak[] = []
  const gflops = (t: Timing) => `${(flops / t.wall / 1e9).toFixed(1).padStart(6)} GFLOP/s wall ${(flops / t.cpu / 1e9).toFixed(1).padStart(6)} per CPU s`
  const peers = async () => {
    if (numpy) {
      numpyTimes.push(await numpy.time())
      console.log(`  numpy A @ B.T ${String(numpyTimes.length).padEnd(3)} ${numpyTimes.at(-1)!.wall.toFixed(1).padStart(6)} s  ${gflops(numpyTimes.at(-1)!)}  (load ${loadAverage()})`)
    }
    if (probe) peaks.push(measurePeak(probe))
  }
  const stage16: Timing[] = []   // correlate.operand_bits: 16, only where the AMX backend has the choice
  for (let round = 0; round < ROUNDS; round++) {
    await peers()
    stage.push(await runStages(project, 'correlate', { force: true }))
    console.log(`  stage (CLI) ${String(round + 1).padEnd(5)} ${stage.at(-1)!.wall.toFixed(1).padStart(6)} s  ${gflops(stage.at(-1)!)}  (load ${loadAverage()})`)
    if (backend.name !== 'amx') continue
    stage16.push(await runStages(project, 'correlate', { force: true, config: BITS16_CONFIG }))
    console.log(`  16 bits ${String(round + 1).padEnd(9)} ${stage16.at(-1)!.wall.toFixed(1).padStart(6)} s  ${gflops(stage16.at(-1)!)}  (load ${loadAverage()})`)
  }
  await peers()
  numpy?.close()

  const breakdown = await pairBreakdown(seeds.map((s) => s.name), shards, infos, backend.gemm)
  backend.close()

  const s = medianTiming(stage)
  console.log(`\ncorrelate, median of ${stage.length} stage run(s)${numpy ? ` and ${numpyTimes.length} numpy run(s)` : ''}, load average now ${loadAverage()}:`)
  const rows = [['stage end to end (CLI)', ...rateCells(flops, s)]]
  const s16 = stage16.length ? medianTiming(stage16) : undefined
  if (s16) rows.push(['  with operand_bits: 16', ...rateCells(flops, s16)])
  const np = numpy ? medianTiming(numpyTimes) : undefined
  if (np) rows.push([`numpy ${numpy!.version} A @ B.T`, ...rateCells(flops, np)])
  const peak = peakFigures(peaks)
  rows.push([peak.label, peak.wall.toFixed(1), peak.perCore.toFixed(1), '', ''])
  printTable(['', 'GFLOP/s (wall)', 'GFLOP/s per CPU s', 'wall s', 'CPU s'], rows)
  if (np) {
    console.log(ratioLine('stage / numpy (wall)', np.wall / s.wall, { min: 0.9 }))
    console.log(ratioLine('stage / numpy (per CPU second)', np.cpu / s.cpu))
    if (s16) console.log(ratioLine('stage with operand_bits: 16 / numpy (wall)', np.wall / s16.wall))
  }
  console.log(ratioLine(`stage / peak (wall, ${THREADS} thread(s))`, flops / s.wall / 1e9 / peak.wall, { min: 0.8, unit: '%' }))
  console.log(ratioLine('stage / peak (per CPU second, per core)', flops / s.cpu / 1e9 / peak.perCore, { min: 0.8, unit: '%' }))
  if (np) console.log(`numpy / peak (wall), for scale: ${((100 * flops) / np.wall / 1e9 / peak.wall).toFixed(0)}%`)
  printBreakdown(breakdown, infos.length)
  const projected = np ? projectedRatio(breakdown, np.wall / T) : undefined
  if (projected !== undefined) {
    console.log(`projected to ${STUDY_TOKENS.toExponential(0)} tokens (the steady per-shard rate above, the once-per-pair costs spread): stage / numpy ≈ ${projected.toFixed(2)}×`)
  }
  return [np ? np.wall / s.wall : NaN, flops / s.wall / 1e9 / peak.wall, projected ?? NaN]
}

const rateCells = (flops: number, t: Timing) => [(flops / t.wall / 1e9).toFixed(1), (flops / t.cpu / 1e9).toFixed(1), t.wall.toFixed(1), t.cpu.toFixed(1)]

// ── numpy: one long-lived /usr/bin/python3 holding A and B, timing inside Python, one line per request ─────────
const NUMPY_SERVER = `
import sys, time, numpy as np
n, t = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.random((n, t), dtype=np.float32) - 0.5
b = rng.random((n, t), dtype=np.float32) - 0.5
out = np.empty((n, n), dtype=np.float32)
np.matmul(a[:, :4096], b[:, :4096].T, out=out)  # start the BLAS thread pool
print(np.__version__, flush=True)
for line in sys.stdin:
    w, c = time.perf_counter(), time.process_time()
    np.matmul(a, b.T, out=out)
    print(time.perf_counter() - w, time.process_time() - c, flush=True)
`

interface NumpyPeer {
  version: string
  time(): Promise<Timing>
  close(): void
}

async function startNumpy(n: number, t: number): Promise<NumpyPeer | undefined> {
  const python = '/usr/bin/python3'
  try {
    execFileSync(python, ['-c', 'import numpy'], { stdio: 'pipe' })
  } catch {
    console.log(`numpy peer skipped: ${python} cannot import numpy (install it with: sudo apt-get install python3-numpy)`)
    return undefined
  }
  const threads = String(THREADS)
  const child = spawn(python, ['-c', NUMPY_SERVER, String(n), String(t)], {
    env: { ...process.env, OPENBLAS_NUM_THREADS: threads, OMP_NUM_THREADS: threads, MKL_NUM_THREADS: threads },
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  const next = async () => {
    const line = await lines.next()
    if (line.done) throw new Error(`${python} (numpy peer) exited`)
    return line.value
  }
  const version = await next()
  return {
    version,
    async time() {
      child.stdin!.write('go\n')
      const [wall, cpu] = (await next()).split(' ').map(Number)
      return { wall, cpu }
    },
    close: () => child.stdin!.end(),
  }
}

// ── the FP32 peak: the FMA probe of native/sgemm (bench/gemm.ts's), compiled into .bench/ ───────────────────────
interface Peak {
  wall: number // GFLOP/s with THREADS threads
  perCore: number // GFLOP/s per CPU second
}

function buildPeakProbe(): string | undefined {
  const source = join(REPO, 'native/sgemm/peak.c')
  const out = join(BENCH_DIR, 'peak-probe')
  try {
    if (!existsSync(source)) throw new Error(`${source} is missing`)
    mkdirSync(BENCH_DIR, { recursive: true })
    execFileSync('cc', ['-O2', '-march=native', '-pthread', source, '-o', out], { stdio: 'pipe' })
    return out
  } catch (error) {
    console.log(`FP32 peak not measured (${(error as Error).message.split('\n')[0]}); using the research note's ${NOTE_PEAK_PER_CORE} GFLOP/s per core`)
    return undefined
  }
}

/** The wider of 512- and 256-bit FMA (the probe fails for 512 without AVX-512). */
function measurePeak(probe: string): Peak {
  const run = (width: number) => {
    try {
      const [wall, perCore] = execFileSync(probe, [String(THREADS), String(width), '0.5'], { encoding: 'utf8', stdio: 'pipe' }).trim().split(' ').map(Number)
      return { wall, perCore }
    } catch {
      return { wall: 0, perCore: 0 }
    }
  }
  const wide = run(512)
  const narrow = run(256)
  return wide.perCore > narrow.perCore ? wide : narrow
}

function peakFigures(peaks: Peak[]): { label: string; wall: number; perCore: number } {
  if (peaks.length === 0) return { label: 'FP32 peak (research note)', wall: NOTE_PEAK_PER_CORE * THREADS, perCore: NOTE_PEAK_PER_CORE }
  return { label: 'FP32 peak (FMA probe)', wall: median(peaks.map((p) => p.wall)), perCore: median(peaks.map((p) => p.perCore)) }
}

// ── where the time goes ──────────────────────────────────────────────────────────────────────────────────────
interface Breakdown {
  tokens: number
  perShard: [name: string, seconds: number, flops: number][] // flops: the step's GEMM work, 0 for none
  perPair: number // rotation baseline + maxima, once per pair
  steady: { seconds: number; tokens: number } // read + cross sums of the shards after the first (which also sets up)
}

/**
 * The first shards of the pair through the steps of src/stages/correlate/pair.ts, each timed alone: reading
 * both seeds' blocks, the cross sums (shift, float32 GEMM, float64 accumulation) with the bare GEMM on the
 * same chunk beside them, both seeds' within-layer sums; then the baseline and maxima, once per pair.
 */
async function pairBreakdown(names: string[], shards: string[][], infos: ShardInfo[], gemm: ReturnType<typeof loadFastGemm>['gemm']): Promise<Breakdown> {
  const layout = { nLayers: infos[0].nLayers, dMlp: infos[0].dMlp }
  const n = layout.nLayers * layout.dMlp
  const cross = crossSums(layout, layout, ALL_LAYERS(layout), gemm)
  const withinA = new WithinLayerMoments({ ...layout, gemm })
  const withinB = new WithinLayerMoments({ ...layout, gemm })
  const t = { read: 0, cross: 0, gemm: 0, within: 0 }
  const steady = { seconds: 0, tokens: 0 }
  const product = new Float32Array(n * n)
  let a: ChunkRows | undefined, b: ChunkRows | undefined
  let tokens = 0
  for (let k = 0; k < Math.min(BREAKDOWN_SHARDS, infos.length); k++) {
    const info = infos[k]
    const read = await timed(async () => [await readActivationRows(shards[0][k], info, 0, n, a), await readActivationRows(shards[1][k], info, 0, n, b)])
    ;[a, b] = read.value
    t.read += read.wall
    const add = await timed(() => cross.add(a!, b!, info.tokens))
    t.cross += add.wall
    if (k > 0) {
      steady.seconds += read.wall + add.wall
      steady.tokens += info.tokens
    }
    const [a32, b32] = [await readActivationBlock(shards[0][k], info, 0, n), await readActivationBlock(shards[1][k], info, 0, n)]
    t.gemm += (await timed(() => gemm(a32, b32, n, n, info.tokens, product))).wall
    t.within += (await timed(() => {
      withinA.add(a!, info.tokens)
      withinB.add(b!, info.tokens)
    })).wall
    tokens += info.tokens
  }
  const params = { baseline: { kind: 'gaussian_rows' as const, seed: 0 }, max_memory_gib: 8 }
  const finish = await timed(() => {
    const rotated = rotatedPair({ a: names[0], b: names[1] }, params, withinA, withinB, gemm)
    return pairResults(cross, layout, layout, rotated.a, rotated.b)
  })
  const crossFlops = 2 * n * n * tokens
  const withinFlops = 2 * 2 * layout.nLayers * layout.dMlp ** 2 * tokens
  return {
    tokens,
    perShard: [
      ["read both seeds' Parquet blocks", t.read, 0],
      ['cross sums (shift + GEMM + float64 add)', t.cross, crossFlops],
      ['  of which the bare GEMM (same chunk)', t.gemm, crossFlops],
      ['within-layer sums (stats stage, per seed)', t.within, withinFlops],
    ],
    perPair: finish.wall,
    steady,
  }
}

// The reference study's scale: 1e8 tokens per seed (README, "Two modes").
const STUDY_TOKENS = 1e8

/**
 * stage / numpy at STUDY_TOKENS, from the breakdown's steady per-token cost and its once-per-pair cost against
 * numpy's measured per-token cost: what the ratio tends to once the fixed costs are spread over a real run.
 */
function projectedRatio(b: Breakdown, numpyPerToken: number): number | undefined {
  if (b.steady.tokens === 0) return undefined
  return (STUDY_TOKENS * numpyPerToken) / (b.perPair + (STUDY_TOKENS * b.steady.seconds) / b.steady.tokens)
}

function printBreakdown(b: Breakdown, shardCount: number): void {
  const shardsTimed = Math.min(BREAKDOWN_SHARDS, shardCount)
  const perShards = b.perShard.filter(([name]) => !name.startsWith(' ')).reduce((sum, [, s]) => sum + s, 0)
  const total = perShards + b.perPair
  console.log(`\nwhere the time goes: the first ${shardsTimed} shard(s) of the pair (${thousands(b.tokens)} valid tokens), library calls in this process:`)
  const share = (s: number) => `${((100 * s) / total).toFixed(0)}%`
  printTable(
    ['step', 'seconds', 'share', 'GEMM GFLOP/s'],
    [
      ...b.perShard.map(([name, s, flops]) => [name, s.toFixed(2), share(s), flops ? (flops / s / 1e9).toFixed(1) : '']),
      ['baseline + maxima (once per pair)', b.perPair.toFixed(2), share(b.perPair), ''],
    ],
  )
  const estimate = (perShards * shardCount) / shardsTimed + b.perPair
  console.log(`(extrapolated to all ${shardCount} shards: ≈ ${estimate.toFixed(1)} s per pair in-process, before the runner's own costs)`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
