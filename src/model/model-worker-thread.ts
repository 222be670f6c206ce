// The worker-thread side of model-worker.ts: loads one instrumented model and answers run requests.
import { parentPort } from 'node:worker_threads'
import { UserError } from '../errors.js'
import type { ModelConfig } from './hf-config.js'
import { hookBuffers, type InstrumentedModel, loadInstrumentedModel, type TokenBatch } from './instrumented.js'
import type { OutputTensor, SessionOptions } from './runtime.js'
import type { OutputRequest } from './sites.js'

export type WorkerRequest =
  | { kind: 'load'; id: number; dir: string; request: OutputRequest; options: SessionOptions }
  // `into`: buffers for the MLP hook outputs (transferred; model-worker.ts matched them to this model and batch)
  | { kind: 'run'; id: number; tokens: TokenBatch; into?: Record<string, OutputTensor> }

export type WorkerReply =
  | { kind: 'loaded'; id: number; config: Pick<ModelConfig, 'shape' | 'bosTokenId' | 'eosTokenId'> }
  | { kind: 'outputs'; id: number; outputs: Record<string, OutputTensor> }
  | { kind: 'error'; id: number; message: string; stack?: string; user: boolean }

let model: InstrumentedModel | undefined

parentPort?.on('message', async (request: WorkerRequest) => {
  try {
    if (request.kind === 'load') {
      model = await loadInstrumentedModel(request.dir, request.request, request.options)
      const { shape, bosTokenId, eosTokenId } = model.config
      reply({ kind: 'loaded', id: request.id, config: { shape, bosTokenId, eosTokenId } })
    } else {
      if (!model) throw new Error('model worker: run before load')
      const into = request.into ?? hookBuffers(model, request.tokens.batch, request.tokens.positions)
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
