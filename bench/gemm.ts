// Correlation-GEMM benchmark (SPEC §7): effective GFLOP/s (2·m·n·k / s) of each backend of src/model/gemm.ts
// on correlate-stage shapes, beside numpy's `A @ B.T` with the same thread count and the machine's FP32 peak
// (an FMA probe, native/sgemm/peak.c), all measured in the same run and interleaved round by round, because
// the machine is shared and timings drift. Each rate is given per wall-clock second and per CPU second of the
// process (all its threads): on a shared machine the second says how well the code uses a core while it has
// one, and it is what the % of peak compares. Run with `npx tsx bench/gemm.ts`. Environment:
//   BENCH_THREADS=1,2                               thread counts to compare (each backend and numpy alike)
//   BENCH_SHAPES=2048x2048x16384,3072x3072x4096     m×n×k: [neurons A, tokens] · [neurons B, tokens]ᵀ
//   BENCH_ROUNDS=5                                  timed rounds; tables show the median (and the range)
//   BENCH_FULL=1                                    also onnxruntime without the worker-thread bridge, and the
//                                                   numpy of the python3 on PATH (if not /usr/bin/python3)
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { GEMM_BACKENDS, type GemmBackend, loadGemmBackend } from '../src/model/gemm.js'
import { createGemmRunner, type GemmRunner } from '../src/model/runtime.js'

const THREADS = (process.env.BENCH_THREADS ?? '1,2').split(',').map(Number)
const SHAPES = (process.env.BENCH_SHAPES ?? '2048x2048x16384,3072x3072x4096').split(',').map((s) => s.split('x').map(Number) as Shape)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const FULL = process.env.BENCH_FULL === '1'
// The pure-JS fallback runs at ~1 GFLOP/s: it gets one small shape, enough for its rate.
const JS_SHAPE: Shape = [512, 512, 2048]

type Shape = [m: number, n: number, k: number]
const flops = ([m, n, k]: Shape) => 2 * m * n * k
const label = ([m, n, k]: Shape) => `${m}×${n}×${k}`

// ── numpy, one long-lived Python per interpreter and thread count, timing inside Python ─────────────────────
const NUMPY_SERVER = `
import sys, time, numpy as np
rng = np.random.default_rng(0)
cache = {}
def blas():  # the BLAS library numpy actually loaded, and OpenBLAS's own description of itself
    libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if 'blas' in l.lower() and '.so' in l})
    config = ''
    try:
        import ctypes
        for lib in libs:
            for symbol in ('openblas_get_config', 'scipy_openblas_get_config64_', 'openblas_get_config64_'):
                f = getattr(ctypes.CDLL(lib), symbol, None)
                if f:
                    f.restype = ctypes.c_char_p
                    config = f().decode()
                    break
            if config: break
    except Exception:
        pass
    return f"numpy {np.__version__}; {config or 'unknown BLAS'}; {', '.join(libs)}"
print(blas(), flush=True)
for line in sys.stdin:
    m, n, k = map(int, line.split())
    if (m, n, k) not in cache:
        cache[(m, n, k)] = (rng.random((m, k), dtype=np.float32) - 0.5, rng.random((n, k), dtype=np.float32) - 0.5,
                            np.empty((m, n), dtype=np.float32))
    a, b, out = cache[(m, n, k)]
    t, c = time.perf_counter(), time.process_time()
    np.matmul(a, b.T, out=out)
    print(time.perf_counter() - t, time.process_time() - c, flush=True)
`

interface NumpyServer {
  name: string
  threads: number
  describe: string
  seconds(shape: Shape): Promise<Seconds>
  close(): void
}

async function startNumpy(python: string, name: string, threads: number): Promise<NumpyServer | undefined> {
  const child: ChildProcessWithoutNullStreams = spawn(python, ['-c', NUMPY_SERVER], {
    env: { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) },
  })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const next = async () => {
    const line = await lines.next()
    if (line.done) throw new Error(`${python} exited`)
    return line.value
  }
  try {
    const describe = await next()
    return {
      name, threads, describe,
      async seconds([m, n, k]) {
        child.stdin.write(`${m} ${n} ${k}\n`)
        const [wall, cpu] = (await next()).split(' ').map(Number)
        return { wall, cpu }
      },
      close: () => child.stdin.end(),
    }
  } catch {
    console.log(`(${python}: numpy not available, skipped)`)
    return undefined
  }
}

// ── the FP32 peak ───────────────────────────────────────────────────────────────────────────────────────────
function buildPeakProbe(dir: string): string | undefined {
  const out = join(dir, 'peak')
  try {
    execFileSync('cc', ['-O2', '-march=native', '-pthread', 'native/sgemm/peak.c', '-o', out], { stdio: 'pipe' })
    return out
  } catch {
    console.log('(no C compiler: the FP32 peak is not measured)')
    return undefined
  }
}

/** GFLOP/s per wall second and per CPU second; NaN where the probe cannot run (e.g. no AVX-512). */
function peakGflops(probe: string, threads: number, width: 256 | 512): { wall: number; cpu: number } {
  try {
    const [wall, cpu] = execFileSync(probe, [String(threads), String(width), '0.5'], { encoding: 'utf8' }).trim().split(' ').map(Number)
    return { wall, cpu }
  } catch {
    return { wall: NaN, cpu: NaN }
  }
}

// ── the run ─────────────────────────────────────────────────────────────────────────────────────────────────
function randomArray(length: number, seed: number): Float32Array {
  const out = new Float32Array(length)
  let state = seed
  for (let i = 0; i < length; i++) {
    state = (state * 1664525 + 1013904223) >>> 0
    out[i] = state / 2 ** 32 - 0.5
  }
  return out
}

interface Seconds {
  wall: number
  cpu: number   // CPU time of the whole process, all threads
}

async function time(f: () => unknown): Promise<Seconds> {
  const t = performance.now(), c = process.cpuUsage()
  await f()
  const used = process.cpuUsage(c)
  return { wall: (performance.now() - t) / 1e3, cpu: (used.user + used.system) / 1e6 }
}

function shuffled<T>(xs: T[], seed: number): T[] {
  let state = seed * 2654435761 + 1
  for (let i = xs.length - 1; i > 0; i--) {
    state = (state * 1664525 + 1013904223) >>> 0
    const j = state % (i + 1)
    ;[xs[i], xs[j]] = [xs[j], xs[i]]
  }
  return xs
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function main(): Promise<void> {
  const load = () => loadavg().map((x) => x.toFixed(2)).join(' ')
  console.log(`GEMM benchmark: threads ${THREADS.join(',')}, shapes ${SHAPES.map(label).join(', ')}, ${ROUNDS} rounds; load average ${load()}` +
    (process.env.GLIBC_TUNABLES ? `; GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES}` : ''))

  const operands = new Map<string, { a: Float32Array; b: Float32Array; out: Float32Array }>()
  for (const shape of [...SHAPES, JS_SHAPE]) {
    const [m, n, k] = shape
    operands.set(label(shape), { a: randomArray(m * k, 1), b: randomArray(n * k, 2), out: new Float32Array(m * n) })
  }

  // Every timed thing is a closure returning seconds; the key says what it is.
  const subjects = new Map<string, { threads: number; shape: Shape; run: () => Promise<Seconds> }>()
  const closers: (() => unknown)[] = []
  const details: string[] = []
  for (const threads of THREADS) {
    for (const name of GEMM_BACKENDS) {
      let backend: GemmBackend
      try {
        backend = loadGemmBackend(name, threads)
      } catch (error) {
        console.log(`(${name}: ${(error as Error).message}; skipped)`)
        continue
      }
      closers.push(() => backend.close())
      if (threads === THREADS[0]) details.push(`${name}: ${backend.detail}`)
      for (const shape of name === 'js' ? (threads === THREADS[0] ? [JS_SHAPE] : []) : SHAPES) {
        const { a, b, out } = operands.get(label(shape))!
        subjects.set(`${name}|${threads}|${label(shape)}`, { threads, shape, run: () => time(() => backend.gemm(a, b, ...shape, out)) })
      }
    }
    // onnxruntime without the synchronous bridge: what the worker thread and the copies cost.
    const runner: GemmRunner | undefined = FULL ? await createGemmRunner(threads) : undefined
    if (runner) closers.push(() => runner.release())
    for (const shape of runner ? SHAPES : []) {
      const { a, b, out } = operands.get(label(shape))!
      subjects.set(`onnxruntime (async, in-thread)|${threads}|${label(shape)}`, {
        threads, shape, run: () => time(() => runner!.run(a, b, ...shape, out)),
      })
    }
    for (const [python, name] of [['/usr/bin/python3', 'numpy (Debian)'], ['python3', 'numpy (python3 on PATH)']]) {
      if (name.includes('PATH') && !(FULL && pathPythonDiffers())) continue
      const server = await startNumpy(python, name, threads)
      if (!server) continue
      closers.push(() => server.close())
      if (threads === THREADS[0]) details.push(`${name}: ${server.describe}`)
      for (const shape of SHAPES) subjects.set(`${name}|${threads}|${label(shape)}`, { threads, shape, run: () => server.seconds(shape) })
    }
  }
  for (const d of details) console.log(`  ${d}`)

  const probeDir = mkdtempSync(join(tmpdir(), 'seedscope-peak-'))
  closers.push(() => rmSync(probeDir, { recursive: true, force: true }))
  const probe = buildPeakProbe(probeDir)
  const peaks = new Map<string, { wall: number; cpu: number }[]>()   // `${threads}|${width}` → one per round

  process.stdout.write('warm-up')
  for (const subject of subjects.values()) await subject.run()
  const times = new Map<string, Seconds[]>([...subjects.keys()].map((key) => [key, []]))
  for (let round = 0; round < ROUNDS; round++) {
    process.stdout.write(` · round ${round + 1}`)
    // Subjects of one thread count and shape run back to back (so their ratios compare like with like), in a
    // fresh order each round, with a pause before each: OpenBLAS's idle threads spin for a while after a call,
    // which would slow whatever runs next.
    const groups = new Map<string, string[]>()
    for (const key of subjects.keys()) {
      const group = key.split('|').slice(1).join('|')
      groups.set(group, [...(groups.get(group) ?? []), key])
    }
    for (const group of shuffled([...groups.values()], round)) {
      for (const key of shuffled(group, round + 7)) {
        await new Promise((resolve) => setTimeout(resolve, 300))
        times.get(key)!.push(await subjects.get(key)!.run())
      }
    }
    if (probe) {
      for (const threads of THREADS) {
        for (const width of [512, 256] as const) {
          const key = `${threads}|${width}`
          peaks.set(key, [...(peaks.get(key) ?? []), peakGflops(probe, threads, width)])
        }
      }
    }
  }
  console.log(`\nload average after: ${load()}\n`)

  // Per CPU second, the probe is steady (one core's FMA rate while it runs); per wall second it shows the load.
  // CPU seconds sum over threads, so FLOPs per CPU second is already a per-core figure, whatever the threads.
  // The wider vectors set the peak where the CPU has them (no AVX-512: the 256-bit figure).
  const peakPerCore = (threads: number) => Math.max(
    ...[512, 256].map((width) => median((peaks.get(`${threads}|${width}`) ?? []).map((p) => p.cpu))).filter((x) => !Number.isNaN(x)))
  for (const threads of THREADS) {
    const describe = (width: number) => {
      const xs = peaks.get(`${threads}|${width}`) ?? []
      if (!xs.length || xs.every((x) => Number.isNaN(x.cpu))) return `${width}-bit: not measured`
      return `${width}-bit FMA ${median(xs.map((x) => x.cpu)).toFixed(0)} per CPU second, ` +
        `${median(xs.map((x) => x.wall)).toFixed(0)} per wall second (best ${Math.max(...xs.map((x) => x.wall)).toFixed(0)})`
    }
    console.log(`FP32 peak, ${threads} thread(s), GFLOP/s: ${describe(512)}; ${describe(256)}`)
  }
  console.log(`(an idle machine would reach the per-CPU-second figure per core: ${THREADS.map((t) => `${t} × ${peakPerCore(t).toFixed(0)}`).join(', ')})\n`)

  const header = ['backend', 'threads', 'shape', 'GFLOP/s wall', 'range', 'per CPU s', '÷ numpy wall', '÷ numpy CPU', '% of peak']
  const rows: string[][] = [header]
  const rates = (key: string, shape: Shape) => {
    const xs = times.get(key)
    if (!xs) return undefined
    return { wall: xs.map((x) => flops(shape) / x.wall / 1e9), cpu: xs.map((x) => flops(shape) / x.cpu / 1e9) }
  }
  // Ratios to numpy are medians of each round's ratio: numpy ran moments apart, under much the same load.
  const pairedRatio = (ours: number[], numpy: number[] | undefined) =>
    numpy ? median(ours.map((x, round) => x / numpy[round])).toFixed(2) : '–'
  for (const [key, subject] of subjects) {
    const [name, threads] = key.split('|')
    const ours = rates(key, subject.shape)!
    const numpy = rates(`numpy (Debian)|${threads}|${label(subject.shape)}`, subject.shape)
    const cpu = median(ours.cpu)
    rows.push([
      name, threads, label(subject.shape), median(ours.wall).toFixed(1),
      `${Math.min(...ours.wall).toFixed(0)}–${Math.max(...ours.wall).toFixed(0)}`, cpu.toFixed(1),
      pairedRatio(ours.wall, numpy?.wall), pairedRatio(ours.cpu, numpy?.cpu),
      // CPU seconds count every thread, so a perfect run of t threads reaches the per-core peak per CPU second.
      probe ? `${((100 * cpu) / peakPerCore(subject.threads)).toFixed(0)}%` : '–',
    ])
  }
  const widths = header.map((_, c) => Math.max(...rows.map((r) => r[c].length)))
  for (const row of rows) console.log(row.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '))

  for (const close of closers) await close()
}

function pathPythonDiffers(): boolean {
  try {
    return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim() !== '/usr/bin/python3'
  } catch {
    return false
  }
}

if (!existsSync('native/sgemm/peak.c')) throw new Error('run bench/gemm.ts from the repository root')
await main()
