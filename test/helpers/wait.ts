// Waiting on a spawned CLI without fixed sleeps: poll for a condition (the machine may be slow and shared), and
// collect a child's output until it exits.
import type { ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'

export interface Exited {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** A spawned child's output so far (live) and a promise of its exit. Attach before the child can exit. */
export function watchChild(child: ChildProcess): { output: { stdout: string; stderr: string }; exited: Promise<Exited> } {
  const output = { stdout: '', stderr: '' }
  child.stdout?.on('data', (d) => (output.stdout += d))
  child.stderr?.on('data', (d) => (output.stderr += d))
  const exited = new Promise<Exited>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, ...output })))
  return { output, exited }
}

/**
 * Poll `condition` every `everyMs` until it holds (true) or `stop` holds first (false); throws naming `what`
 * after `timeoutMs`.
 */
export async function until(
  condition: () => boolean,
  what: string,
  { stop = () => false, timeoutMs = 90_000, everyMs = 10 }: { stop?: () => boolean; timeoutMs?: number; everyMs?: number } = {},
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (condition()) return true
    if (stop()) return false
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting until ${what}`)
    await sleep(everyMs)
  }
}
