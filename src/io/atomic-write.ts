// The only way seedscope puts a finished file on disk: write a temporary sibling, fsync it, rename it over the
// target, fsync the directory. A reader (or a resumed run) therefore sees either the old file or the whole new
// one, never a torn write.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { createContentHash } from './content-hash.js'

/** Temporary name next to `path`; the pid keeps two writers of the same target apart. */
export function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.tmp`)
}

/** Write `data` (bytes, text, or chunks written in order) to `path` atomically. */
export function writeFileAtomic(path: string, data: Uint8Array | string | readonly Uint8Array[]): void {
  mkdirSync(dirname(path), { recursive: true })
  const tmp = temporaryPath(path)
  const fd = openSync(tmp, 'w')
  const hash = createContentHash()
  try {
    const chunks = typeof data === 'string' ? [Buffer.from(data)] : data instanceof Uint8Array ? [data] : data
    for (const chunk of chunks) {
      writeAll(fd, chunk)
      hash.update(chunk)
    }
    fsyncSync(fd)
  } catch (error) {
    closeSync(fd)
    rmSync(tmp, { force: true })
    throw error
  }
  closeSync(fd)
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
 * The content hash (content-hash.ts), size and mtime of a file this process wrote, if it is still as written (same size, mtime and
 * inode); else undefined.
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

function writeAll(fd: number, chunk: Uint8Array): void {
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
