// The only way seedscope puts a finished file on disk: write a temporary sibling, fsync it, rename it over the
// target, fsync the directory. A reader (or a resumed run) therefore sees either the old file or the whole new
// one, never a torn write.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'

/** Temporary name next to `path`; the pid keeps two writers of the same target apart. */
export function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.tmp`)
}

/** Write `data` (bytes, text, or chunks written in order) to `path` atomically. */
export function writeFileAtomic(path: string, data: Uint8Array | string | readonly Uint8Array[]): void {
  mkdirSync(dirname(path), { recursive: true })
  const tmp = temporaryPath(path)
  const fd = openSync(tmp, 'w')
  try {
    const chunks = typeof data === 'string' ? [Buffer.from(data)] : data instanceof Uint8Array ? [data] : data
    for (const chunk of chunks) writeAll(fd, chunk)
    fsyncSync(fd)
  } catch (error) {
    closeSync(fd)
    rmSync(tmp, { force: true })
    throw error
  }
  closeSync(fd)
  commitTemporary(tmp, path)
}

/** Rename a complete, fsynced temporary file over `path` and make the rename durable. */
export function commitTemporary(tmp: string, path: string): void {
  renameSync(tmp, path)
  syncDirectory(dirname(path))
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
