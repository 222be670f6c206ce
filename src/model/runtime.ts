// The only module that imports onnxruntime-node.
//
// Install trap: onnxruntime-node's postinstall downloads CUDA libraries from api.nuget.org, unreachable here;
// the CPU binaries ship in the npm tarball, so .npmrc sets ignore-scripts (see README).
// `session.run` blocks the event loop while it computes, so stages that run many batches call it from
// worker threads; this module stays synchronous-friendly and knows nothing about workers.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { createRequire } from 'node:module'
import * as ort from 'onnxruntime-node'
import { UserError } from '../errors.js'
import { nativeExports } from '../stats/kernels.js'

export interface SessionOptions {
  threads?: number // intra-op threads; default: all cores
  provider?: 'cpu' | 'cuda'
  /** A folder for the weights as files onnxruntime maps (weights-file.ts), shared by runs; default: inside the model. */
  weightsDir?: string
}

export interface OutputTensor {
  dims: number[]
  data: Float32Array
}

export type Feed =
  | { dtype: 'int64'; data: BigInt64Array; dims: number[] }
  | { dtype: 'float32'; data: Float32Array; dims: number[] }

/** Why `provider` cannot run here (one line naming the fix), or undefined when it can. */
export function providerProblem(provider: 'cpu' | 'cuda'): string | undefined {
  if (provider === 'cpu') return undefined
  if (ort.listSupportedBackends().find((b) => b.name === provider)?.bundled) return undefined
  return (
    `execution provider "${provider}" is not available in this onnxruntime-node build (it ships CPU only); ` +
    `install the GPU build (npm install onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 on a machine that reaches api.nuget.org) or set execution.provider: cpu`
  )
}

// Flush subnormals (|x| < 1.2e-38 in float32, e.g. GELU far below zero) to 0: arithmetic on them is slow on x86, and
// the GPT-2-small forward pass ran 8–10% faster (bench/forward.ts); values move by < 1.2e-38, far inside any
// tolerance. onnxruntime sets the flag on its pool threads and on the thread that creates the first session: in the
// pipeline that is a model worker thread (src/model/model-worker.ts), which does nothing else.
//
// No spinning: by default the pool threads busy-wait between operators, which took the cores from the thread that
// absorbs and writes the previous batch while the model runs (the extract stage ran 38 against 43 s on
// bench/extract.ts's GPT-2-small project, interleaved); the bare forward pass was no slower without it.
const SESSION_CONFIG: [string, string][] = [
  ['session.set_denormal_as_zero', '1'],
  ['session.intra_op.allow_spinning', '0'],
]

function sessionConfig(options: SessionOptions): [string, string][] {
  if (!options.weightsDir) return SESSION_CONFIG
  return [...SESSION_CONFIG, ['session.model_external_initializers_file_folder_path', resolve(options.weightsDir)]]
}

/** One session's way of running: onnxruntime-node, or seedscope's own binding to the same library. */
interface Engine {
  readonly name: 'onnxruntime-node' | 'direct'
  readonly outputNames: readonly string[]
  run(feeds: Record<string, Feed>, outputs: readonly string[], into: Record<string, OutputTensor>): Record<string, OutputTensor> | Promise<Record<string, OutputTensor>>
  release(): void | Promise<void>
}

export class ModelSession {
  private constructor(private readonly engine: Engine) {}

  /**
   * A CPU session runs on seedscope's own binding (native/kernels/ort.c) where the native kernels are built: it
   * writes outputs into buffers the caller reuses, where onnxruntime-node copies each into a fresh one (5–13% of a
   * GPT-2-small forward pass). SEEDSCOPE_ORT=onnxruntime-node forces onnxruntime-node (for comparisons); so does the
   * CUDA provider, which only onnxruntime-node offers.
   */
  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<ModelSession> {
    const provider = options.provider ?? 'cpu'
    const problem = providerProblem(provider)
    if (problem) throw new UserError(problem)
    const direct = directBindingFor(options)
    const config = sessionConfig(options)
    if (direct) return new ModelSession(directEngine(direct, model, options.threads ?? 0, config))
    const session = await ort.InferenceSession.create(model, {
      executionProviders: [provider],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: options.threads ?? 0,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      logSeverityLevel: 3,
      extra: Object.fromEntries(config), // onnxruntime-node hands a dotted key over as it is
    })
    return new ModelSession(nodeEngine(session))
  }

  /**
   * Whether a graph for a session made with these options should use seedscope's causal attention (domain
   * `seedscope`, native/kernels/attention.c) on heads of `dHead` values: only the direct binding's sessions know
   * the operators, and only its vectorized path (AVX-512, d_head a multiple of 16) beats onnxruntime's Attention.
   */
  static runsSeedscopeAttention(options: SessionOptions, dHead: number): boolean {
    return directBindingFor(options)?.causalAttentionVectorized(dHead) ?? false
  }

  /**
   * Whether a graph for such a session should multiply by its weights with seedscope's AmxMatMul operator (AMX tiles
   * at float32 accuracy, native/kernels/amx.c): the direct binding's sessions, on a CPU and kernel that run AMX.
   */
  static runsAmxMatMul(options: SessionOptions): boolean {
    return directBindingFor(options)?.amxProblem() === null
  }

  get outputNames(): readonly string[] {
    return this.engine.outputNames
  }

  /** Which binding runs this session. */
  get binding(): Engine['name'] {
    return this.engine.name
  }

  /**
   * Run with the given feeds; returns the named outputs (all when `outputs` is omitted). An output given in `into`
   * (a Float32Array of exactly its shape, with those dims) is written there, and returned as given.
   */
  async run(feeds: Record<string, Feed>, outputs?: readonly string[], into: Record<string, OutputTensor> = {}): Promise<Record<string, OutputTensor>> {
    return this.engine.run(feeds, outputs ?? this.engine.outputNames, into)
  }

  async release(): Promise<void> {
    await this.engine.release()
  }
}

function nodeEngine(session: ort.InferenceSession): Engine {
  return {
    name: 'onnxruntime-node',
    outputNames: session.outputNames,
    async run(feeds, outputs, into) {
      const ortFeeds: Record<string, ort.Tensor> = {}
      for (const [name, f] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(f.dtype, f.data, f.dims)
      const result = await session.run(ortFeeds, outputs as string[])
      const out: Record<string, OutputTensor> = {}
      for (const [name, tensor] of Object.entries(result)) {
        const given = into[name]
        if (given) {
          checkGiven(name, given, tensor.dims)
          given.data.set(tensor.data as Float32Array)
        }
        out[name] = given ?? { dims: [...tensor.dims], data: tensor.data as Float32Array }
      }
      return out
    },
    release: () => session.release(),
  }
}

function checkGiven(name: string, given: OutputTensor, dims: readonly number[]): void {
  if (given.dims.length !== dims.length || given.dims.some((d, i) => d !== dims[i]) || given.data.length !== dims.reduce((n, d) => n * d, 1)) {
    throw new Error(`output ${name} has dims [${dims.join(', ')}], but a buffer for [${given.dims.join(', ')}] (${given.data.length} values) was given`)
  }
}

/** native/kernels/ort.c's exports. */
interface DirectBinding {
  ortOpen(libraryPath: string): void
  ortCreateSession(model: Uint8Array, threads: number, config: [string, string][]): unknown
  ortOutputNames(session: unknown): string[]
  ortRun(session: unknown, inputs: { name: string; data: Float32Array | BigInt64Array; dims: number[] }[], outputs: { name: string; data?: Float32Array; dims?: number[] }[]): (OutputTensor | null)[]
  ortRelease(session: unknown): void
  causalAttentionVectorized(dHead: number): boolean // native/kernels/attention.c
  amxProblem(): string | null // native/kernels/amx.c: why AMX cannot run here, or null
}

let binding: DirectBinding | null | undefined

/**
 * The binding, opened on onnxruntime-node's own library; undefined without the native kernels, on another OS, or
 * when the library does not open (onnxruntime-node then runs the sessions, as it can).
 */
function directBinding(): DirectBinding | undefined {
  if (binding !== undefined) return binding ?? undefined
  const exports = nativeExports<DirectBinding>()
  const library = createRequire(import.meta.url).resolve('onnxruntime-node').replace(/dist[/\\]index\.js$/, `bin/napi-v6/linux/${process.arch}/libonnxruntime.so.1`)
  binding = null
  if (exports && process.platform === 'linux' && existsSync(library)) {
    try {
      exports.ortOpen(library)
      binding = exports
    } catch {
      // e.g. a library too old for C API version 17: onnxruntime-node loads it its own way
    }
  }
  return binding ?? undefined
}

function directBindingFor(options: SessionOptions): DirectBinding | undefined {
  const cpu = (options.provider ?? 'cpu') === 'cpu'
  return cpu && process.env.SEEDSCOPE_ORT !== 'onnxruntime-node' ? directBinding() : undefined
}

function directEngine(direct: DirectBinding, model: Uint8Array, threads: number, config: [string, string][]): Engine {
  const session = direct.ortCreateSession(model, threads, config)
  return {
    name: 'direct',
    outputNames: direct.ortOutputNames(session),
    run(feeds, outputs, into) {
      const inputs = Object.entries(feeds).map(([name, f]) => ({ name, data: f.data, dims: f.dims }))
      const results = direct.ortRun(session, inputs, outputs.map((name) => ({ name, ...into[name] })))
      return Object.fromEntries(outputs.map((name, i) => [name, results[i] ?? into[name]]))
    },
    release: () => direct.ortRelease(session),
  }
}

// ── The correlation GEMM on onnxruntime (SPEC §7) ───────────────────────────────────────────────────────────
// Appended as a self-contained block (its imports included) so it stays clear of the session code above.
// src/model/gemm.ts decides whether to use it; the native OpenBLAS addon is faster when it is built.
import { GraphBuilder, int } from './graph-builder.js'
import { concatEncoded, DataType } from './onnx-proto.js'

/** out[m×n] = a[m×k]·b[n×k]ᵀ on onnxruntime: the `Gemm` contract of src/stats/gemm.ts, but asynchronous. */
export interface GemmRunner {
  /** Overwrites out[0, m·n) (written in place on the direct binding; onnxruntime-node's fresh buffer is copied). */
  run(a: Float32Array, b: Float32Array, m: number, n: number, k: number, out: Float32Array): Promise<void>
  release(): Promise<void>
}

/** A one-node graph, Gemm(a, b, transB=1) with symbolic m, n, k, in a session with `threads` intra-op threads. */
export async function createGemmRunner(threads: number): Promise<GemmRunner> {
  const g = new GraphBuilder()
  const a = g.input('a', DataType.FLOAT, ['m', 'k'])   // [neurons of A, tokens]
  const b = g.input('b', DataType.FLOAT, ['n', 'k'])   // [neurons of B, tokens]
  g.output('out', g.op('Gemm', [a, b], { transB: int(1) }), DataType.FLOAT, ['m', 'n'])
  const session = await ModelSession.create(concatEncoded(g.build('gemm')), { threads })
  return {
    async run(aData, bData, m, n, k, out) {
      if (aData.length < m * k || bData.length < n * k || out.length < m * n) {
        throw new Error(`gemm: operands too short for m=${m} n=${n} k=${k}: a has ${aData.length} (need ${m * k}), ` +
          `b has ${bData.length} (need ${n * k}), out has ${out.length} (need ${m * n})`)
      }
      await session.run({
        a: { dtype: 'float32', data: aData.subarray(0, m * k), dims: [m, k] },
        b: { dtype: 'float32', data: bData.subarray(0, n * k), dims: [n, k] },
      }, undefined, { out: { data: out.subarray(0, m * n), dims: [m, n] } })
    },
    release: () => session.release(),
  }
}
