// A graph's weights as a file beside the model rather than inside it (ONNX external data). onnxruntime maps such a
// file into memory and computes from the mapped pages, so a GPT-2-small session costs no copy of its 500 MB of
// weights, and neither does the model's bytes (they hold only the graph). The pages are the page cache's: a seed's
// second session, in this run or the next, finds them there. Loading with the weights inside the model meant three
// copies of them in fresh memory (the model bytes, onnxruntime's tensors, and the converted arrays), ~1.5 GB per
// GPT-2-small load, which the kernel zeroes first (bench/README.md, session 16).
//
// The file is named after its content hash and written once: a directory of them is a cache that any number of
// graphs and runs share, and deleting it loses nothing. A file found under its name is read and hashed again before
// use (~0.1 s per 500 MB from the page cache): a torn or damaged one is written anew, never mapped.
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { threadId } from 'node:worker_threads'
import { atPath } from '../errors.js'
import { createContentHash } from '../io/content-hash.js'
import { hashFileSync } from '../io/file-hash.js'
import { temporaryPath, writeAll } from '../io/atomic-write.js'
import type { TensorProto } from './onnx-proto.js'

/** The weights cache of a pipeline's runs: `<output_dir>/.cache/weights` (given its cache dir). */
export const weightsCache = (cacheDir: string) => join(cacheDir, 'weights')

// Initializers from this size on go to the file (every weight matrix; shapes, masks and scalars stay in the model).
// Each starts on a page boundary, so that it is mapped as it lies.
const EXTERNAL_MIN_BYTES = 4096
const ALIGN = 4096

/**
 * Moves the large initializers' bytes into `<dir>/<content hash>.weights` (written unless a sound one is there) and
 * points each at its place in it; the session then needs `dir` as onnxruntime's external initializers folder.
 */
export function externalizeWeights(initializers: TensorProto[], dir: string): void {
  const pieces: Uint8Array[] = []
  const hash = createContentHash()
  let length = 0
  const placed: [TensorProto, number][] = []
  for (const t of initializers) {
    if (t.rawData.length < EXTERNAL_MIN_BYTES) continue
    const offset = Math.ceil(length / ALIGN) * ALIGN
    if (offset > length) pieces.push(new Uint8Array(offset - length))
    pieces.push(t.rawData)
    placed.push([t, offset])
    length = offset + t.rawData.length
  }
  if (placed.length === 0) return
  for (const piece of pieces) hash.update(piece)
  const digest = hash.digest()
  const name = `${digest.replace(':', '-')}.weights`
  const path = join(dir, name)
  if (!holds(path, length, digest)) write(path, pieces)
  for (const [t, offset] of placed) t.external = { location: name, offset, length: t.rawData.length }
}

/** Whether `path` is a file of `length` bytes whose content hash is `expected`. */
function holds(path: string, length: number, expected: string): boolean {
  return existsSync(path) && statSync(path).size === length && hashFileSync(path).hash === expected
}

// Through the page cache (onnxruntime maps the file next), and without fsync: a file torn by a crash fails holds()
// and is written again.
function write(path: string, pieces: readonly Uint8Array[]): void {
  const tmp = `${temporaryPath(path)}.${threadId}` // the stage's model workers may write the same file at once
  let fd: number | undefined
  try {
    mkdirSync(dirname(path), { recursive: true })
    fd = openSync(tmp, 'w')
    for (const piece of pieces) writeAll(fd, piece)
    closeSync(fd)
    fd = undefined
    renameSync(tmp, path)
  } catch (error) {
    if (fd !== undefined) closeSync(fd)
    if (existsSync(tmp)) rmSync(tmp)
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message
    throw atPath(path, `cannot write the model's weights file (${code}); free some disk space there, or delete ${dirname(path)} (a cache)`)
  }
}
