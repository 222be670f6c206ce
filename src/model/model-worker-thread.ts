// The worker-thread side of model-worker.ts: loads one instrumented model and answers run requests.
import { parentPort } from 'node:worker_threads'
import { UserError } from '../errors.js'
import type { ModelConfig } from './hf-config.js'
import { hookBuffers, type InstrumentedModel, loadInstrumentedModel, type TokenBatch } from './instrumented.js'
import type { OutputTensor, SessionOptions } from './runtime.js'
import type { OutputRequest } from './sites.js'

export type WorkerRequest =
  | { kind: 'load'; id: number; dir: string; request: OutputRequest; options: SessionOptions }
  | { kind: 'run'; id: number; tokens: TokenBatch }
  | { kind: 'recycle'; outputs: Record<string, OutputTensor> } // a run's outputs, done with: their buffers come back

export type WorkerReply =
  | { kind: 'loaded'; id: number; config: Pick<ModelConfig, 'shape' | 'bosTokenId' | 'eosTokenId'> }
  | { kind: 'outputs'; id: number; outputs: Record<string, OutputTensor> }
  | { kind: 'error'; id: number; message: string; stack?: string; user: boolean }

let model: InstrumentedModel | undefined
// Hook buffers handed back (recycle) for the next runs: onnxruntime writes into them, so memory the kernel has
// already zeroed and mapped is reused instead of fresh memory per batch (the buffers travel by transfer, not copy).
const spare: Record<string, OutputTensor>[] = []
const MAX_SPARE = 2 // the stage keeps two batches in flight

parentPort?.on('message', async (request: WorkerRequest) => {
  if (request.kind === 'recycle') { // hook buffers only: model-worker.ts sends no others
    if (spare.length < MAX_SPARE && Object.keys(request.outputs).length > 0) spare.push(request.outputs)
    return
  }
  try {
    if (request.kind === 'load') {
      model = await loadInstrumentedModel(request.dir, request.request, request.options)
      const { shape, bosTokenId, eosTokenId } = model.config
      reply({ kind: 'loaded', id: request.id, config: { shape, bosTokenId, eosTokenId } })
    } else {
      if (!model) throw new Error('model worker: run before load')
      const { batch, positions } = request.tokens
      const fits = spare.findIndex((set) => Object.values(set).every((t) => t.dims[0] === batch && t.dims[1] === positions))
      const into = fits >= 0 ? spare.splice(fits, 1)[0] : hookBuffers(model, batch, positions)
      const outputs = await model.run(request.tokens, [], into)
      reply({ kind: 'outputs', id: request.id, outputs }, Object.values(outputs).map((t) => t.data.buffer as ArrayBuffer))
    }
  } catch (error) {
    const e = error instanceof Error ? error : new Error(String(error))
    reply({ kind: 'error', id: request.id, message: e.message, stack: e.stack, user: e instanceof UserError })
  }
})

function reply(message: WorkerReply, transfer: ArrayBuffer[] = []): void {
  try {
    parentPort!.postMessage(message, transfer)
  } catch {
    parentPort!.postMessage(message) // buffers onnxruntime owns may refuse transfer: copy them instead
  }
}
