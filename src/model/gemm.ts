// The correlation GEMM's backends (SPEC §7): picks the fastest implementation of src/stats/gemm.ts's `Gemm`
// contract that this machine offers. src/stats stays pure math; native code and onnxruntime are loaded here.
//
//   amx          native/kernels/amx.c, on the bf16 tile units of Intel Sapphire Rapids and later: each value as
//                three bf16 parts, six part products, float32 accuracy. 1.2× OpenBLAS per CPU second on the bare
//                product; in the correlate stage 7–12% faster, as it also shifts the shard's values while packing
//                them into tiles (Gemm.shifted: no shifted copies), and ~1.5× more on float16 shards, whose
//                shifted values it keeps to 16 bits (two parts). bench/README.md, sessions 10, 11 and 18. Products of
//                at most 512 × 512 outputs, and gemmNN, go to OpenBLAS when that is built.
//   openblas     native/sgemm, an N-API addon over OpenBLAS cblas_sgemm (built by `make native` when
//                libopenblas-dev is installed). Zero-copy and synchronous: numpy's speed (the same call).
//   onnxruntime  a Gemm(transB=1) session in a worker thread, made synchronous with Atomics.wait (see
//                gemm-ort-thread.ts). Copies both operands per call; ~0.6× OpenBLAS (MLAS), still ~25× the
//                pure-JS fallback, so it is the choice when the addon is not built.
//   js           gemmFallback from src/stats/gemm.ts: always there, 2–4 GFLOP/s.
// native/sgemm/README.md has the measurements behind this order.
import { existsSync } from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads'
import { gemmFallback, type Gemm, type GemmNN, type ShiftedProduct } from '../stats/gemm.js'
import { amxGemm, float32Blobs } from '../stats/kernels.js'
import type { ChunkRows } from '../stats/pearson.js'
import { UserError } from '../errors.js'
import type { OrtThreadData, OrtThreadReply, OrtThreadRequest } from './gemm-ort-thread.js'

/** Every backend, by name, fastest first (loadFastGemm's order): what SEEDSCOPE_GEMM accepts. */
export const GEMM_BACKENDS = ['amx', 'openblas', 'onnxruntime', 'js'] as const
export type GemmBackendName = (typeof GEMM_BACKENDS)[number]

export interface GemmBackend {
  readonly name: GemmBackendName
  readonly gemm: Gemm
  /** A·B without a transpose: only where the backend has it (OpenBLAS); callers transpose and use `gemm` otherwise. */
  readonly gemmNN?: GemmNN
  readonly detail: string   // e.g. "OpenBLAS 0.3.21 … SkylakeX, 2 threads (pthreads)"
  /** Optional: lets go of the backend (the onnxruntime thread stops when its last user closes). */
  close(): void
}

export interface GemmOptions {
  /**
   * Significant bits of the shifted activations in the correlation's chunk products (Gemm.shifted; correlate.operand_bits):
   * 24 (float32, default) or 16 (each value rounded to within 2^-17 of itself, each product within 2^-15; ~1.5× faster on AMX). Only the AMX
   * backend has the choice; the others compute in float32.
   */
  operandBits?: 16 | 24
}

/** The addon's exports (native/sgemm/sgemm.c). */
interface SgemmAddon {
  sgemm: Gemm
  sgemmNN: GemmNN
  setThreads(threads: number): void
  info(): { config: string; corename: string; threads: number; parallel: 'sequential' | 'pthreads' | 'openmp' | 'unknown' }
}

const require = createRequire(import.meta.url)
// src/model/gemm.ts and dist/model/gemm.js both sit two levels below the repository root.
const ADDON = fileURLToPath(new URL('../../native/sgemm/build/Release/sgemm.node', import.meta.url))

/** What a backend is underneath: one per name and thread count, shared by every caller that loads it. */
interface Engine {
  gemm: Gemm
  gemmNN?: GemmNN
  detail: string
  users: number
  stop(): void
}
const engines = new Map<string, Engine>()
const unavailable = new Map<string, Error>()   // asked once per process: a stage may load per unit

/**
 * Load one backend by name; throws an Error that says why when it is not available here. Loading is cheap
 * after the first time: callers with the same name and thread count share one engine (one onnxruntime
 * thread, not one per stage unit), which stops when the last of them calls close(); not closing is fine.
 */
export function loadGemmBackend(name: GemmBackendName, threads: number, options: GemmOptions = {}): GemmBackend {
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`gemm: threads must be a positive integer, got ${threads}`)
  const operandBits = options.operandBits ?? 24
  const key = name === 'amx' ? `${name}|${threads}|${operandBits}` : `${name}|${threads}`   // only AMX has the choice
  let engine = engines.get(key)
  if (!engine) {
    const failure = unavailable.get(key)
    if (failure) throw failure
    try {
      engine = name === 'amx' ? amxEngine(threads, operandBits) : name === 'openblas' ? openblasEngine(threads) : name === 'onnxruntime' ? ortEngine(threads)
        : { gemm: gemmFallback, detail: 'pure-JS fallback, 1 thread', users: 0, stop() {} }
    } catch (error) {
      unavailable.set(key, error as Error)
      throw error
    }
    engines.set(key, engine)
  }
  const shared = engine
  shared.users++
  let open = true
  const checkOpen = () => {
    if (!open) throw new Error(`gemm (${name}): called after close()`)
  }
  const nn = shared.gemmNN, shifted = shared.gemm.shifted
  return {
    name,
    detail: shared.detail,
    gemm: Object.assign((a: Float32Array, b: Float32Array, m: number, n: number, k: number, out: Float32Array) => {
      checkOpen()
      shared.gemm(a, b, m, n, k, out)
    }, { shifted: shifted && ((...args: Parameters<ShiftedProduct>) => (checkOpen(), shifted(...args))) }),
    gemmNN: nn && ((a, b, m, n, k, out) => {
      checkOpen()
      nn(a, b, m, n, k, out)
    }),
    close() {
      if (!open) return
      open = false
      if (--shared.users === 0) {
        shared.stop()
        engines.delete(key)
      }
    },
  }
}

/**
 * The fastest available backend: AMX, else OpenBLAS, else onnxruntime, else pure JS; SEEDSCOPE_GEMM names one
 * instead. `skipped` lists why each faster one was passed over.
 */
export function loadFastGemm(threads: number, options: GemmOptions = {}): GemmBackend & { skipped: string[] } {
  const skipped: string[] = []
  const forced = process.env.SEEDSCOPE_GEMM   // one backend by name, for comparisons (bench/README.md)
  if (forced) {
    if (!(GEMM_BACKENDS as readonly string[]).includes(forced)) throw new UserError(`SEEDSCOPE_GEMM=${forced}: expected one of ${GEMM_BACKENDS.join(', ')}`)
    try {
      return { ...loadGemmBackend(forced as GemmBackendName, threads, options), skipped }
    } catch (error) {
      throw new UserError(`SEEDSCOPE_GEMM=${forced}: ${(error as Error).message}; unset it to let seedscope choose`)
    }
  }
  for (const name of GEMM_BACKENDS) {
    try {
      return { ...loadGemmBackend(name, threads, options), skipped }
    } catch (error) {
      skipped.push(`${name}: ${(error as Error).message}`)   // the pure-JS fallback always loads
    }
  }
  throw new Error('gemm: no backend loads')
}

// Products with at most this many outputs go to OpenBLAS when it is built: the tiles' packing does not pay for
// itself there (512 × 512 × 1024: 140–160 GFLOP/s on AMX against 310–340; 1024 × 512 × 512 and up: AMX as fast or
// faster; bench/README.md, session 11).
const SMALL_PRODUCT = 512 * 512

function amxEngine(threads: number, operandBits: 16 | 24): Engine {
  if (amxGemm.problem) throw new Error(amxGemm.problem)
  let openblas: Engine | undefined
  try {
    openblas = openblasEngine(threads)
  } catch {
    // callers transpose and use gemm instead of gemmNN; small products stay on the tiles
  }
  const asBlobs = (rows: ChunkRows, tokens: number) => (rows instanceof Float32Array ? float32Blobs(rows, tokens) : rows)
  const shifted: ShiftedProduct = (a, b, tokens, shift, out, sums) => amxGemm.shiftedProduct(
    asBlobs(a, tokens), b === undefined ? null : asBlobs(b, tokens), tokens, shift.a, shift.b, shift.fromChunk ? 1 : 0,
    out, sums.a.sum, sums.a.sumSq, sums.b.sum, sums.b.sumSq, threads, operandBits === 16 ? 1 : 0)
  return {
    gemm: Object.assign((a: Float32Array, b: Float32Array, m: number, n: number, k: number, out: Float32Array) =>
      openblas && m * n <= SMALL_PRODUCT ? openblas.gemm(a, b, m, n, k, out) : amxGemm.gemm(a, b, m, n, k, out, threads), { shifted }),
    gemmNN: openblas?.gemmNN,
    detail: `AMX bf16 tiles, the correlation's activations to ${operandBits} significant bits (float16 ones to 16), ${threads} threads`,
    users: 0,
    stop() {},
  }
}

function openblasEngine(threads: number): Engine {
  if (!existsSync(ADDON)) throw new Error(`${ADDON} is not built (install libopenblas-dev, then run make native)`)
  // OpenBLAS's idle threads spin for ~2^28 cycles after each product, which more than halves the speed of
  // whatever runs next on the same cores (the shift and accumulate kernels, onnxruntime in streamed mode:
  // measured 34 → 19 ms for a shift right after a GEMM). 2^4 cycles makes them sleep at once; waking them for
  // the next product costs microseconds. OpenBLAS reads this when the library loads, so it is set first.
  process.env.OPENBLAS_THREAD_TIMEOUT ??= '4'
  let addon: SgemmAddon
  try {
    addon = require(ADDON) as SgemmAddon
  } catch (error) {   // e.g. libopenblas.so.0 removed since the build
    throw new Error(`${ADDON} does not load: ${(error as Error).message}`)
  }
  addon.setThreads(threads)
  const info = addon.info()
  return {
    // OpenBLAS has one thread count per process, so each call sets its own (a few ns) in case a backend
    // with another count ran in between.
    gemm: (a, b, m, n, k, out) => {
      addon.setThreads(threads)
      addon.sgemm(a, b, m, n, k, out)
    },
    gemmNN: (a, b, m, n, k, out) => {
      addon.setThreads(threads)
      addon.sgemmNN(a, b, m, n, k, out)
    },
    detail: `${info.config}, ${info.threads} threads (${info.parallel})`,
    users: 0,
    stop() {},
  }
}

// ── onnxruntime, made synchronous ────────────────────────────────────────────────────────────────────────────
// onnxruntime-node's run() is asynchronous, while PearsonAccumulator calls its Gemm synchronously. So the session
// lives in a worker thread: each call hands it copies of a and b, then sleeps in Atomics.wait until the worker
// has posted the product back (receiveMessageOnPort reads it without the event loop). Copies cost ~5% at
// correlate shapes.

const STATE = { starting: 0, idle: 1, busy: 2 } as const

function ortEngine(threads: number): Engine {
  const control = new Int32Array(new SharedArrayBuffer(4))
  const { port1, port2 } = new MessageChannel()
  const data: OrtThreadData = { threads, control, port: port2 }
  const worker = startWorker(data, [port2])
  worker.unref()   // a backend nobody closed must not keep the process alive
  worker.on('error', () => {})   // failures reach the caller as replies (or as a missing one), never as events
  let dead: Error | undefined   // once the thread is gone, every later call fails at once instead of waiting
  const reply = (): OrtThreadReply => {
    // STATE.busy/starting → idle once the worker has posted its reply; receiveMessageOnPort then reads it.
    while (Atomics.load(control, 0) !== STATE.idle) Atomics.wait(control, 0, Atomics.load(control, 0), 1000)
    const message = receiveMessageOnPort(port1)?.message as OrtThreadReply | undefined
    if (!message) throw (dead = new Error('gemm (onnxruntime): the worker thread exited without replying'))
    if (message.kind === 'error') throw Object.assign(new Error(`gemm (onnxruntime): ${message.message}`), { stack: message.stack })
    return message
  }
  const stop = () => {
    dead = new Error('gemm (onnxruntime): the backend was closed')
    port1.close()
    void worker.terminate()
  }
  try {
    reply()   // the session is created, or creating it failed (onnxruntime-node missing, …)
  } catch (error) {
    stop()
    throw error
  }
  // Operand buffers travel to the worker and back by transfer (onnxruntime rejects SharedArrayBuffer memory),
  // so each call costs one copy of a and b here and one of the product back, and no allocation once warm.
  let bufferA = new ArrayBuffer(0), bufferB = new ArrayBuffer(0)
  const gemm: Gemm = (a, b, m, n, k, out) => {
    if (dead) throw dead
    if (a.length < m * k || b.length < n * k || out.length < m * n) {
      throw new Error(`gemm: operands too short for m=${m} n=${n} k=${k}: a has ${a.length} (need ${m * k}), ` +
        `b has ${b.length} (need ${n * k}), out has ${out.length} (need ${m * n})`)
    }
    if (bufferA.byteLength < m * k * 4) bufferA = new ArrayBuffer(m * k * 4)
    if (bufferB.byteLength < n * k * 4) bufferB = new ArrayBuffer(n * k * 4)
    const request: OrtThreadRequest = { a: new Float32Array(bufferA, 0, m * k), b: new Float32Array(bufferB, 0, n * k), m, n, k }
    request.a.set(a.subarray(0, m * k))
    request.b.set(b.subarray(0, n * k))
    Atomics.store(control, 0, STATE.busy)
    port1.postMessage(request, [bufferA, bufferB])
    const done = reply()
    if (done.kind !== 'done') throw new Error(`gemm (onnxruntime): unexpected reply ${done.kind}`)
    bufferA = done.a.buffer as ArrayBuffer
    bufferB = done.b.buffer as ArrayBuffer
    out.set(done.out)
  }
  return { gemm, detail: `onnxruntime Gemm(transB=1) in a worker thread, ${threads} intra-op threads`, users: 0, stop }
}

// The compiled worker script sits beside this module. When the TypeScript sources run directly (vitest, tsx),
// the worker registers tsx first so that it can import gemm-ort-thread.ts and runtime.ts.
function startWorker(data: OrtThreadData, transfer: [MessagePort]): Worker {
  const compiled = new URL('./gemm-ort-thread.js', import.meta.url)
  if (existsSync(fileURLToPath(compiled))) return new Worker(compiled, { workerData: data, transferList: transfer })
  const source = new URL('./gemm-ort-thread.ts', import.meta.url)
  let tsxApi: string   // tsx's ESM register(); its CommonJS twin cannot register ESM hooks from a worker
  try {
    const manifest = require.resolve('tsx/package.json')
    const entry = (require(manifest) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api'].import.default
    tsxApi = pathToFileURL(path.join(path.dirname(manifest), entry)).href
  } catch {
    throw new Error(`${fileURLToPath(compiled)} is not built and tsx is not installed to run ${fileURLToPath(source)} (run make build)`)
  }
  // A failure to start (tsx itself broken) must still wake the caller: report it the way the worker would.
  const code = `
    const { workerData: { control, port } } = require('node:worker_threads')
    import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(source.href)}) })
      .catch((e) => { port.postMessage({ kind: 'error', message: String(e?.message ?? e), stack: e?.stack }); Atomics.store(control, 0, 1); Atomics.notify(control, 0) })`
  return new Worker(code, { eval: true, workerData: data, transferList: transfer })
}
