// Runs an instrumented model in a worker thread: onnxruntime's run() blocks the thread that calls it, so a stage
// that wants progress bars, Ctrl-C and several models at once keeps inference off the main thread.
// When the compiled worker script is absent (tests that run the TypeScript sources directly), the model runs
// in this thread instead: same results, only without the parallelism.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { UserError } from '../errors.js'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { type InstrumentedModel, loadInstrumentedModel, type TokenBatch } from './instrumented.js'
import type { ModelConfig } from './hf-config.js'
import type { OutputTensor, SessionOptions } from './runtime.js'
import { isMlpHook, type OutputRequest } from './sites.js'
import type { WorkerReply, WorkerRequest } from './model-worker-thread.js'

export interface ModelRunner {
  readonly config: Pick<ModelConfig, 'shape' | 'bosTokenId' | 'eosTokenId'>
  run(tokens: TokenBatch): Promise<Record<string, OutputTensor>>
  /** Hand back a run's outputs, no longer read: their MLP hook buffers are written by a later run (optional). */
  recycle?(outputs: Record<string, OutputTensor>): void
  close(): Promise<void>
  /** Whether an idle runner keeps the process alive (a worker thread does until told otherwise). */
  keepAlive?(yes: boolean): void
}

// Runners handed back by borrowModelRunner's borrowers, or loaded ahead by prefetchModelRunner, ready for the next
// unit with the same model; and how many runners of each model are lent out now.
const idle = new Map<string, Promise<ModelRunner>>()
const lentOut = new Map<string, number>()

const runnerKey = (dir: string, request: OutputRequest, options: SessionOptions) => JSON.stringify([resolve(dir), request, options])

/**
 * Like startModelRunner, but close() keeps the runner for the next borrower of the same model, request and
 * options: a stage's consecutive units (one seed's shards) then load the model once, not once per unit (0.1 s
 * and a worker thread each). At most one model waits idle: asking for another model closes the kept ones, and a
 * runner handed back while another model waits is closed. A runner whose run() failed is closed, not kept. Kept
 * runners never keep the process alive.
 */
export async function borrowModelRunner(dir: string, request: OutputRequest, options: SessionOptions = {}): Promise<ModelRunner> {
  const key = runnerKey(dir, request, options)
  let kept = idle.get(key)
  idle.delete(key)
  if (!kept) {
    await closeIdle() // before loading another model: its memory goes first
    kept = startModelRunner(dir, request, options)
  }
  lentOut.set(key, (lentOut.get(key) ?? 0) + 1)
  let lent: ModelRunner
  try {
    lent = await kept
  } catch (error) {
    lentOut.set(key, lentOut.get(key)! - 1)
    throw error
  }
  lent.keepAlive?.(true)
  let failed = false
  let returned = false
  return {
    config: lent.config,
    run: (tokens) => lent.run(tokens).catch((error: unknown) => {
      failed = true
      throw error
    }),
    recycle: (outputs) => lent.recycle?.(outputs),
    async close() {
      if (returned) return
      returned = true
      lentOut.set(key, lentOut.get(key)! - 1)
      if (failed || idle.size > 0) return lent.close()
      lent.keepAlive?.(false)
      idle.set(key, Promise.resolve(lent))
    },
  }
}

/**
 * Start loading a model for a borrower to come, unless a runner of it is already lent out or waiting: a stage
 * calls this before it waits for a forward slot, so that the next seed's model loads while the current one runs.
 * A failed load is reported to that borrower.
 */
export function prefetchModelRunner(dir: string, request: OutputRequest, options: SessionOptions = {}): void {
  const key = runnerKey(dir, request, options)
  if (idle.has(key) || (lentOut.get(key) ?? 0) > 0) return
  void closeIdle()
  const loading = startModelRunner(dir, request, options)
  loading.then((runner) => runner.keepAlive?.(false), () => {})
  idle.set(key, loading)
}

function closeIdle(): Promise<unknown> {
  const others = [...idle.values()]
  idle.clear()
  return Promise.all(others.map((runner) => runner.then((r) => r.close(), () => {})))
}

const WORKER_SCRIPT = new URL('./model-worker-thread.js', import.meta.url)

/** Load `dir` with the requested outputs in a worker thread (or in this thread when no worker script exists). */
export async function startModelRunner(dir: string, request: OutputRequest, options: SessionOptions = {}): Promise<ModelRunner> {
  if (!existsSync(fileURLToPath(WORKER_SCRIPT))) return inThread(await loadInstrumentedModel(dir, request, options))
  const worker = new Worker(WORKER_SCRIPT)
  const calls = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>()
  let next = 0
  let broken: Error | undefined
  const fail = (error: Error) => {
    broken = error
    for (const call of calls.values()) call.reject(error)
    calls.clear()
  }
  worker.on('message', (reply: WorkerReply) => {
    const call = calls.get(reply.id)
    calls.delete(reply.id)
    if (!call) return
    if (reply.kind === 'error') call.reject(reviveError(reply))
    else call.resolve(reply)
  })
  worker.on('error', fail)
  worker.on('exit', (code) => fail(new Error(`model worker exited with code ${code}`)))
  const ask = (request: Exclude<WorkerRequest, { kind: 'recycle' }>, transfer: ArrayBuffer[] = []) =>
    new Promise<WorkerReply>((resolve, reject) => {
      if (broken) return reject(broken)
      calls.set(request.id, { resolve, reject })
      worker.postMessage(request, transfer)
    })

  const loaded = await ask({ kind: 'load', id: next++, dir, request, options })
  if (loaded.kind !== 'loaded') throw new Error('model worker: unexpected reply to load')
  return {
    config: loaded.config,
    async run(tokens) {
      const reply = await ask({ kind: 'run', id: next++, tokens })
      if (reply.kind !== 'outputs') throw new Error('model worker: unexpected reply to run')
      return reply.outputs
    },
    recycle(outputs) {
      if (broken) return
      const hooks = Object.entries(outputs).filter(([name]) => isMlpHook(name))
      worker.postMessage({ kind: 'recycle', outputs: Object.fromEntries(hooks) } satisfies WorkerRequest, hooks.map(([, t]) => t.data.buffer as ArrayBuffer))
    },
    async close() {
      worker.removeAllListeners('exit')
      await worker.terminate()
    },
    keepAlive: (yes) => (yes ? worker.ref() : worker.unref()),
  }
}

function inThread(model: InstrumentedModel): ModelRunner {
  return { config: model.config, run: (tokens) => model.run(tokens), close: () => model.release() }
}

/** Errors cross the thread boundary as plain data; a UserError must stay a UserError (one line, no stack). */
function reviveError(reply: Extract<WorkerReply, { kind: 'error' }>): Error {
  return reply.user ? new UserError(reply.message) : Object.assign(new Error(reply.message), { stack: reply.stack })
}
