// Content hashes of input files, for manifests: a unit is stale when an input's hash changes (STYLE §2, DVC).
import { createReadStream, statSync } from 'node:fs'
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
    throw atPath(path, `cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
  }
  return { path, bytes: statSync(path).size, hash: hash.digest() }
}
