// The only module that imports onnxruntime-node.
//
// Install trap: onnxruntime-node's postinstall downloads CUDA libraries from api.nuget.org, unreachable here;
// the CPU binaries ship in the npm tarball, so .npmrc sets ignore-scripts (see README).
// `session.run` blocks the event loop while it computes, so stages that run many batches call it from
// worker threads; this module stays synchronous-friendly and knows nothing about workers.
import * as ort from 'onnxruntime-node'
import { UserError } from '../errors.js'

export interface SessionOptions {
  threads?: number // intra-op threads; default: all cores
  provider?: 'cpu' | 'cuda'
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

export class ModelSession {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<ModelSession> {
    const provider = options.provider ?? 'cpu'
    const problem = providerProblem(provider)
    if (problem) throw new UserError(problem)
    const session = await ort.InferenceSession.create(model, {
      executionProviders: [provider],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: options.threads ?? 0,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      logSeverityLevel: 3,
      // Flush subnormals (|x| < 1.2e-38 in float32, e.g. GELU far below zero) to 0: arithmetic on them is slow on
      // x86, and the GPT-2-small forward pass ran 8–10% faster (bench/forward.ts); values move by < 1.2e-38, far
      // inside any tolerance. onnxruntime sets the flag on its pool threads and on the thread that creates the first
      // session: in the pipeline that is a model worker thread (src/model/model-worker.ts), which does nothing else.
      //
      // No spinning: by default the pool threads busy-wait between operators, which took the cores from the thread
      // that absorbs and writes the previous batch while the model runs (the extract stage ran 38 against 43 s on
      // bench/extract.ts's GPT-2-small project, interleaved); the bare forward pass was no slower without it.
      extra: { session: { set_denormal_as_zero: '1', intra_op: { allow_spinning: '0' } } },
    })
    return new ModelSession(session)
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames
  }

  /** Run with the given feeds; returns the named outputs (all when `outputs` is omitted). */
  async run(feeds: Record<string, Feed>, outputs?: readonly string[]): Promise<Record<string, OutputTensor>> {
    const ortFeeds: Record<string, ort.Tensor> = {}
    for (const [name, f] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(f.dtype, f.data, f.dims)
    const result = outputs ? await this.session.run(ortFeeds, outputs as string[]) : await this.session.run(ortFeeds)
    const out: Record<string, OutputTensor> = {}
    for (const [name, tensor] of Object.entries(result)) {
      out[name] = { dims: [...tensor.dims], data: tensor.data as Float32Array }
    }
    return out
  }

  async release(): Promise<void> {
    await this.session.release()
  }
}

// ── The correlation GEMM on onnxruntime (SPEC §7) ───────────────────────────────────────────────────────────
// Appended as a self-contained block (its imports included) so it stays clear of the session code above.
// src/model/gemm.ts decides whether to use it; the native OpenBLAS addon is faster when it is built.
import { GraphBuilder, int } from './graph-builder.js'
import { concatEncoded, DataType } from './onnx-proto.js'

/** out[m×n] = a[m×k]·b[n×k]ᵀ on onnxruntime: the `Gemm` contract of src/stats/gemm.ts, but asynchronous. */
export interface GemmRunner {
  /** Overwrites out[0, m·n). onnxruntime returns the product in a fresh buffer, which is copied into `out`. */
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
      const result = await session.run({
        a: { dtype: 'float32', data: aData.subarray(0, m * k), dims: [m, k] },
        b: { dtype: 'float32', data: bData.subarray(0, n * k), dims: [n, k] },
      })
      out.set(result.out.data)
    },
    release: () => session.release(),
  }
}
