// The worker-thread side of gemm.ts's onnxruntime backend: holds one Gemm session and answers each request
// with the product. Every reply (including a failed start) is a message on `port` followed by control[0] = idle
// and Atomics.notify, which wakes the caller sleeping in Atomics.wait.
import { workerData } from 'node:worker_threads'
import type { MessagePort } from 'node:worker_threads'

export interface OrtThreadData {
  threads: number
  control: Int32Array          // [state]: 0 starting, 1 idle, 2 busy (see STATE in gemm.ts)
  port: MessagePort
}

/** a [m, k] and b [n, k], row-major, each at offset 0 of its own (transferred) buffer. */
export interface OrtThreadRequest {
  a: Float32Array
  b: Float32Array
  m: number
  n: number
  k: number
}

/** `done` returns the operand buffers too, for the caller to reuse. */
export type OrtThreadReply =
  | { kind: 'ready' }
  | { kind: 'done'; out: Float32Array; a: Float32Array; b: Float32Array }
  | { kind: 'error'; message: string; stack?: string }

const IDLE = 1
const { threads, control, port } = workerData as OrtThreadData

function reply(message: OrtThreadReply, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer)
  Atomics.store(control, 0, IDLE)
  Atomics.notify(control, 0)
}

function replyError(error: unknown): void {
  const e = error instanceof Error ? error : new Error(String(error))
  reply({ kind: 'error', message: e.message, stack: e.stack })
}

// Should the thread die anyway, wake the caller rather than leave it waiting; it sees no reply and throws.
process.on('exit', () => {
  Atomics.store(control, 0, IDLE)
  Atomics.notify(control, 0)
})

try {
  // Imported here, not at the top, so that a missing onnxruntime-node becomes an error reply.
  const { createGemmRunner } = await import('./runtime.js')
  const runner = await createGemmRunner(threads)
  port.on('message', async ({ a, b, m, n, k }: OrtThreadRequest) => {
    try {
      const out = new Float32Array(m * n)
      await runner.run(a, b, m, n, k, out)
      reply({ kind: 'done', out, a, b }, [out.buffer, a.buffer, b.buffer] as ArrayBuffer[])
    } catch (error) {
      replyError(error)
    }
  })
  reply({ kind: 'ready' })
} catch (error) {
  replyError(error)
}
