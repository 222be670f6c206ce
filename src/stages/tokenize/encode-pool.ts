// Tokenizes batches of documents on worker threads, so the main thread stays free to read the corpus (and
// parse its JSON) while every core encodes. With `workers: 0` it encodes on the calling thread instead; both
// give the same ids (the worker loads the very tokenizer.json the Tokenizer was built from).
import { Worker } from 'node:worker_threads'
import type { Tokenizer } from '../../model/tokenizer.js'

/** Token ids of a batch of documents: document k is ids[offsets[k] .. offsets[k+1]). */
export interface TokenBatch {
  ids: Uint16Array | Int32Array // Uint16 when every id fits (GPT-2 and NeoX vocabularies do): half the memory
  offsets: Int32Array // [documents + 1]
}

// The worker is plain JavaScript evaluated from this string rather than a module file: vitest runs the sources
// as TypeScript, and Node 20 worker threads cannot load .ts files, so a worker module would only run from dist/.
// It uses the same native library as src/model/tokenizer.ts, loaded from the path that module resolved.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { Tokenizer } = require(workerData.module)
const tokenizer = Tokenizer.fromString(workerData.json)
const Ids = workerData.wide ? Int32Array : Uint16Array
parentPort.on('message', async ({ task, texts }) => {
  try {
    const lists = []
    let total = 0
    for (const text of texts) {
      const ids = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds()
      lists.push(ids)
      total += ids.length
    }
    const ids = new Ids(total)
    const offsets = new Int32Array(texts.length + 1)
    let at = 0
    for (let k = 0; k < lists.length; k++) {
      ids.set(lists[k], at)
      at += lists[k].length
      offsets[k + 1] = at
    }
    parentPort.postMessage({ task, ids, offsets }, [ids.buffer, offsets.buffer])
  } catch (error) {
    parentPort.postMessage({ task, error: String((error && error.stack) || error) })
  }
})
`

type Pending = { resolve: (batch: TokenBatch) => void; reject: (error: Error) => void; worker: number }

export class EncodePool {
  private readonly tokenizer: Tokenizer
  private readonly workers: Worker[]
  private readonly inFlight: number[] // batches waiting on each worker
  private readonly pending = new Map<number, Pending>()
  private readonly waiters: (() => void)[] = []
  private nextTask = 0
  private failure: Error | undefined
  private closing = false
  private local: Promise<unknown> = Promise.resolve() // the batch encoding on this thread (workers: 0)

  /** `workers` threads (0: encode on this thread). */
  constructor(tokenizer: Tokenizer, workers: number) {
    this.tokenizer = tokenizer
    const workerData = { ...tokenizer.portable, wide: tokenizer.vocabSize > 1 << 16 }
    this.workers = Array.from({ length: workers }, (_, index) => {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData })
      worker.on('message', (message) => this.settle(message))
      worker.on('error', (error) => this.fail(error))
      worker.on('exit', (code) => {
        if (code !== 0 && !this.closing) this.fail(new Error(`tokenizer worker ${index} exited with code ${code}`))
      })
      return worker
    })
    this.inFlight = this.workers.map(() => 0)
  }

  /** Resolves once a worker can take another batch without the queue growing past two batches per worker. */
  async ready(): Promise<void> {
    if (this.failure) throw this.failure
    await this.local
    while (this.workers.length > 0 && this.pending.size >= 2 * this.workers.length) {
      await new Promise<void>((resolve) => this.waiters.push(resolve))
      if (this.failure) throw this.failure
    }
  }

  /** Token ids of each text. */
  encode(texts: readonly string[]): Promise<TokenBatch> {
    if (this.failure) return Promise.reject(this.failure)
    if (this.workers.length === 0) {
      const batch = this.encodeHere(texts)
      this.local = batch.catch(() => {})
      return batch
    }
    const worker = this.inFlight.indexOf(Math.min(...this.inFlight))
    const task = this.nextTask++
    this.inFlight[worker]++
    return new Promise<TokenBatch>((resolve, reject) => {
      this.pending.set(task, { resolve, reject, worker })
      this.workers[worker].postMessage({ task, texts })
    })
  }

  async close(): Promise<void> {
    this.closing = true
    await Promise.all(this.workers.map((worker) => worker.terminate()))
  }

  private async encodeHere(texts: readonly string[]): Promise<TokenBatch> {
    // The native encoder runs each call on libuv's thread pool, so a batch in flight at once uses every core.
    const lists = await Promise.all(texts.map((text) => this.tokenizer.encode(text)))
    const total = lists.reduce((sum, list) => sum + list.length, 0)
    const ids = this.tokenizer.vocabSize > 1 << 16 ? new Int32Array(total) : new Uint16Array(total)
    const offsets = new Int32Array(texts.length + 1)
    let at = 0
    lists.forEach((list, k) => {
      ids.set(list, at)
      at += list.length
      offsets[k + 1] = at
    })
    return { ids, offsets }
  }

  private settle(message: { task: number; ids?: TokenBatch['ids']; offsets?: Int32Array; error?: string }): void {
    const entry = this.pending.get(message.task)
    if (!entry) return
    this.pending.delete(message.task)
    this.inFlight[entry.worker]--
    if (message.error !== undefined) entry.reject(new Error(`tokenizer worker: ${message.error}`))
    else entry.resolve({ ids: message.ids!, offsets: message.offsets! })
    this.waiters.shift()?.()
  }

  private fail(error: Error): void {
    this.failure ??= error
    for (const entry of this.pending.values()) entry.reject(error)
    this.pending.clear()
    for (const wake of this.waiters.splice(0)) wake()
  }
}
