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

export class ModelSession {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async create(model: Uint8Array, options: SessionOptions = {}): Promise<ModelSession> {
    const provider = options.provider ?? 'cpu'
    if (provider !== 'cpu') {
      const available = ort.listSupportedBackends().find((b) => b.name === provider)
      if (!available?.bundled) {
        throw new UserError(
          `execution provider "${provider}" is not available in this onnxruntime-node build (it ships CPU only); ` +
            `install the GPU build (npm install onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 on a machine that reaches api.nuget.org) or set execution.provider: cpu`,
        )
      }
    }
    const session = await ort.InferenceSession.create(model, {
      executionProviders: [provider],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: options.threads ?? 0,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      logSeverityLevel: 3,
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
