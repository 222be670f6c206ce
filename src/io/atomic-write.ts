// The only way seedscope puts a finished file on disk: write a temporary sibling, fsync it, rename it over the
// target, fsync the directory. A reader (or a resumed run) therefore sees either the old file or the whole new
// one, never a torn write.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { createContentHash } from './content-hash.js'
import { DirectWriter } from './direct-write.js'

/** Temporary name next to `path`; the pid keeps two writers of the same target apart. */
export function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.tmp`)
}

// From this size on, a file goes past the page cache (direct-write.ts): shard statistics (~70 MB at GPT-2-small
// size) and checkpointed sums (up to gigabytes). Smaller ones are not worth a staging buffer.
const DIRECT_MIN_BYTES = 16 << 20

/** Write `data` (bytes, text, or chunks written in order) to `path` atomically. */
export function writeFileAtomic(path: string, data: Uint8Array | string | readonly Uint8Array[]): void {
  mkdirSync(dirname(path), { recursive: true })
  const tmp = temporaryPath(path)
  const chunks = typeof data === 'string' ? [Buffer.from(data)] : data instanceof Uint8Array ? [data] : data
  const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  const direct = total >= DIRECT_MIN_BYTES ? DirectWriter.open(tmp) : undefined
  const fd = direct ? undefined : openSync(tmp, 'w')
  const hash = createContentHash()
  try {
    for (const chunk of chunks) {
      if (direct) direct.write(chunk)
      else writeAll(fd!, chunk)
      hash.update(chunk)
    }
    if (direct) direct.finish()
    else fsyncSync(fd!)
  } catch (error) {
    direct?.close()
    if (fd !== undefined) closeSync(fd)
    rmSync(tmp, { force: true })
    throw error
  }
  if (fd !== undefined) closeSync(fd)
  commitTemporary(tmp, path, hash.digest())
}

/**
 * Rename a complete, fsynced temporary file over `path` and make the rename durable. `hash`: the content hash,
 * computed as it was written, which {@link committedFile} then gives out instead of reading the file again.
 */
export function commitTemporary(tmp: string, path: string, hash?: string): void {
  renameSync(tmp, path)
  syncDirectory(dirname(path))
  if (hash) committed.set(resolve(path), { ...stamp(path), hash })
}

// Hashes of the files this process committed, each valid while the file keeps the stamp it had then.
const committed = new Map<string, { size: number; mtimeMs: number; ino: number; hash: string }>()

/**
 * The content hash (content-hash.ts), size and mtime of a file this process wrote, if it is still as written
 * (same size, mtime and inode); else undefined.
 */
export function committedFile(path: string): { size: number; mtimeMs: number; hash: string } | undefined {
  const known = committed.get(resolve(path))
  if (!known) return undefined
  let now
  try {
    now = stamp(path)
  } catch {
    return undefined
  }
  return now.size === known.size && now.mtimeMs === known.mtimeMs && now.ino === known.ino ? known : undefined
}

function stamp(path: string): { size: number; mtimeMs: number; ino: number } {
  const { size, mtimeMs, ino } = statSync(path)
  return { size, mtimeMs, ino }
}

/** Write all of `chunk` at fd's position (writeSync may write less than asked). */
export function writeAll(fd: number, chunk: Uint8Array): void {
  let offset = 0
  while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset)
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}
