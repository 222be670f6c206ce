// Content hashes of input files, for manifests: a unit is stale when an input's hash changes (STYLE §2, DVC).
import { closeSync, createReadStream, openSync, readSync, statSync } from 'node:fs'
import { atPath } from '../errors.js'
import { createContentHash } from './content-hash.js'

export interface FileHash {
  path: string
  bytes: number
  hash: string // content-hash.ts
}

/** The content hash of a file's bytes, read as a stream (memory stays flat for any file size). */
export async function hashFile(path: string): Promise<FileHash> {
  const hash = createContentHash()
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer)
  } catch (error) {
    throw cannotRead(path, error)
  }
  return { path, bytes: statSync(path).size, hash: hash.digest() }
}

/** hashFile, read in this thread without yielding: for callers that cannot wait (a graph being built). */
export function hashFileSync(path: string): FileHash {
  const hash = createContentHash()
  const chunk = Buffer.allocUnsafe(4 << 20)
  try {
    const fd = openSync(path, 'r')
    try {
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n))
    } finally {
      closeSync(fd)
    }
  } catch (error) {
    throw cannotRead(path, error)
  }
  return { path, bytes: statSync(path).size, hash: hash.digest() }
}

const cannotRead = (path: string, error: unknown) =>
  atPath(path, `cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
