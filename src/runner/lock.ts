// `<output_dir>/.lock`: one `seedscope run` per output directory. The file holds the owner's pid and start time;
// a lock whose pid is gone (a killed run) is taken over with a warning. A pid reused by an unrelated process
// looks alive; the message then tells the user how to remove the lock by hand.
import { hostname } from 'node:os'
import { join, relative, isAbsolute } from 'node:path'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { UserError } from '../errors.js'

interface LockRecord {
  pid: number
  started: string // ISO time
  host: string
}

export interface Lock {
  release(): void
}

/** Take the output directory's lock, or throw a UserError naming the holder. `warn` hears about takeovers. */
export function acquireLock(outputDir: string, warn: (message: string) => void): Lock {
  mkdirSync(outputDir, { recursive: true })
  const path = join(outputDir, '.lock')
  const mine: LockRecord = { pid: process.pid, started: new Date().toISOString(), host: hostname() }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(path, JSON.stringify(mine) + '\n', { flag: 'wx' })
      return { release: () => releaseIfMine(path, mine) }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const holder = readLock(path)
    if (holder === undefined) continue // removed between our attempt and our read: try again
    const shown = displayPath(outputDir)
    if (holder && (holder.host !== mine.host || isAlive(holder.pid))) {
      const on = holder.host !== mine.host ? ` on ${holder.host}` : ''
      throw new UserError(
        `${shown} is locked by pid ${holder.pid}${on} (started ${clock(holder.started)}); ` +
          `wait for it, or remove ${join(shown, '.lock')} if that process is gone`,
      )
    }
    warn(
      holder
        ? `${shown}: taking over the lock of pid ${holder.pid} (started ${clock(holder.started)}), which is no longer running`
        : `${shown}: taking over an unreadable lock file`,
    )
    rmSync(path, { force: true })
  }
  throw new UserError(`${displayPath(outputDir)}: could not take the lock (another run keeps taking it); try again`)
}

/** The holder, null for an unreadable file, undefined when the file is gone. */
function readLock(path: string): LockRecord | null | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  try {
    const record = JSON.parse(text) as LockRecord
    return Number.isInteger(record.pid) ? record : null
  } catch {
    return null // a lock torn by a crash while being written
  }
}

function releaseIfMine(path: string, mine: LockRecord): void {
  const holder = readLock(path)
  if (holder && holder.pid === mine.pid && holder.started === mine.started) rmSync(path, { force: true })
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM' // exists, owned by someone else
  }
}

/** `02:14` for today, `2025-03-01 02:14` otherwise. */
function clock(iso: string): string {
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return 'at an unknown time'
  const pad = (n: number) => String(n).padStart(2, '0')
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`
  const today = new Date().toDateString() === date.toDateString()
  return today ? time : `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`
}

/** A path as the user would type it: relative to the working directory when inside it. */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path)
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path
}
