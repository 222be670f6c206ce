// Runs an instrumented model in a worker thread: onnxruntime's run() blocks the thread that calls it, so a stage
// that wants progress bars, Ctrl-C and several models at once keeps inference off the main thread.
// When the compiled worker script is absent (tests that run the TypeScript sources directly), the model runs
// in this thread instead: same results, only without the parallelism.
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { UserError } from '../errors.js'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { hookBufferSet, type InstrumentedModel, loadInstrumentedModel, type TokenBatch } from './instrumented.js'
import type { ModelConfig, ModelShape } from './hf-config.js'
import type { OutputTensor, SessionOptions } from './runtime.js'
import { isMlpHook, mlpHookNames, type OutputRequest } from './sites.js'
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

// Buffers for the MLP hook outputs, handed back by recycle() and sent with the next run request of any runner whose
// outputs they fit (by transfer, never copied): onnxruntime writes into them, so one seed's model reuses the memory
// of the one before instead of faulting in fresh memory (~300 MB per set at GPT-2 small, 4 × 512 tokens with
// hook_pre and hook_post; the kernel zeroes each page first). The stage keeps two batches in flight, so two sets
// serve, and a third place holds a shard's last, smaller batch; the oldest goes first. They all go when the last
// runner does.
type HookSet = Record<string, OutputTensor>
const spareHookSets: HookSet[] = []
const SPARE_HOOK_SETS = 3
const IN_FLIGHT = 2
let runnersAlive = 0
let hookSetsPrepared = false // prepareHookBuffers has run since runners came alive

const fitsHookSet = (set: HookSet, names: readonly string[], dims: readonly number[]) =>
  Object.keys(set).length === names.length && names.every((name) => set[name]?.dims.every((d, i) => d === dims[i]))

function takeHookSet(names: readonly string[], dims: readonly number[]): HookSet | undefined {
  const i = spareHookSets.findIndex((set) => fitsHookSet(set, names, dims))
  return i < 0 ? undefined : spareHookSets.splice(i, 1)[0]
}

function keepHookSet(set: HookSet): void {
  if (runnersAlive === 0 || Object.keys(set).length === 0) return
  spareHookSets.push(set)
  if (spareHookSets.length > SPARE_HOOK_SETS) spareHookSets.shift()
}

/**
 * Allocate the hook buffers the first runs of a model of `shape` will need, and touch every page now. The stage
 * calls this while its first model loads in a worker, so the kernel's zeroing of the fresh memory runs on the core
 * the load leaves idle rather than beside the forward passes. Only the first call does anything until the last runner
 * closes: after it the buffers circulate (some in flight, not waiting here).
 */
export function prepareHookBuffers(shape: Pick<ModelShape, 'nLayers' | 'dMlp'>, request: OutputRequest, batch: number, positions: number): void {
  if (hookSetsPrepared) return
  hookSetsPrepared = true
  const names = mlpHookNames(request, shape.nLayers)
  const dims = [batch, positions, shape.dMlp]
  const fitting = spareHookSets.filter((set) => fitsHookSet(set, names, dims))
  spareHookSets.splice(0, spareHookSets.length, ...fitting) // sets of another shape would not serve these runs
  for (let n = fitting.length; n < IN_FLIGHT && names.length > 0; n++) {
    const set = hookBufferSet(names, dims)
    for (const tensor of Object.values(set)) tensor.data.fill(0) // touch every page now
    spareHookSets.push(set)
  }
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
  const ask = (request: WorkerRequest, transfer: ArrayBuffer[] = []) =>
    new Promise<WorkerReply>((resolve, reject) => {
      if (broken) return reject(broken)
      calls.set(request.id, { resolve, reject })
      worker.postMessage(request, transfer)
    })

  runnersAlive++
  let alive = true
  const loaded = await ask({ kind: 'load', id: next++, dir, request, options }).catch(async (error: unknown) => {
    await close()
    throw error
  })
  if (loaded.kind !== 'loaded') throw new Error('model worker: unexpected reply to load')
  const hookNames = mlpHookNames(request, loaded.config.shape.nLayers)
  async function close() {
    if (!alive) return
    alive = false
    if (--runnersAlive === 0) {
      spareHookSets.length = 0
      hookSetsPrepared = false
    }
    worker.removeAllListeners('exit')
    await worker.terminate()
  }
  return {
    config: loaded.config,
    async run(tokens) {
      const into = takeHookSet(hookNames, [tokens.batch, tokens.positions, loaded.config.shape.dMlp])
      const transfer = into ? Object.values(into).map((t) => t.data.buffer as ArrayBuffer) : []
      const reply = await ask({ kind: 'run', id: next++, tokens, into }, transfer)
      if (reply.kind !== 'outputs') throw new Error('model worker: unexpected reply to run')
      return reply.outputs
    },
    recycle(outputs) {
      keepHookSet(Object.fromEntries(Object.entries(outputs).filter(([name]) => isMlpHook(name))))
    },
    close,
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
