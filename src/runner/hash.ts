// Content hashes for the runner: a unit's key (sha256 of its definition), files by content hash (XXH3), and a
// cache so multi-gigabyte checkpoints and corpora are hashed once, not at every `run` and `status`.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { committedFile, writeFileAtomic } from '../io/atomic-write.js'
import { hashFile } from '../io/file-hash.js'

/** sha256 (hex) of a JSON value with object keys sorted, so equal values hash equally whatever their key order. */
export function hashJson(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex')
}

export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )
}

/** The content hash of a file's bytes (streamed by src/io/file-hash.ts, so the event loop and progress keep moving). */
export async function contentHashOfFile(path: string): Promise<string> {
  return (await hashFile(path)).hash
}

interface CachedHash {
  size: number
  mtimeMs: number
  hashedAt?: number // Date.now() when it was hashed
  written?: true // hashed from the bytes this program wrote, as it committed the file under the run lock
  hash: string // content-hash.ts; entries of an older seedscope have sha256 instead, and are hashed again
}

// File systems store mtime coarsely (ext4 to a clock tick, NFS and Lustre to a second or worse): a file changed
// within this long after it was hashed could keep its recorded mtime, so such an entry is hashed again once.
// Outputs seedscope committed itself are exempt: they were hashed from the bytes written, and nothing else writes
// into the output directory while the run holds its lock. (Re-reading them once would cost the next `status` or
// `run` a full read of every activation shard: minutes to hours at the study's scale.)
const RACY_MS = 2000

/**
 * Content hashes of files (inputs outside output_dir, and finished outputs), remembered by (path, size, mtime) in
 * a JSON file. An edit that keeps both size and mtime goes unnoticed; that is the price of not reading 500 MB
 * checkpoints and gigabytes of activations at every status. An entry hashed within RACY_MS of the file's mtime is
 * not trusted (git's "racily clean" problem).
 */
export class FileHashCache {
  private entries: Record<string, CachedHash>
  private dirty = false

  constructor(
    private readonly file: string, // e.g. <output_dir>/.cache/file-hashes.json
    private readonly onHashing?: (path: string, bytes: number) => void, // told before a file is read in full
  ) {
    try {
      this.entries = JSON.parse(readFileSync(file, 'utf8')) as Record<string, CachedHash>
    } catch {
      this.entries = {} // absent or unreadable: the cache only saves time, so start empty
    }
  }

  /** The file's content hash; throws ENOENT-style errors for missing files. `quiet`: do not report the hashing. */
  async hash(path: string, options: { quiet?: boolean } = {}): Promise<string> {
    const written = committedFile(path) // written by this process and unchanged since: no need to read it
    if (written) {
      this.remember(path, written)
      return written.hash
    }
    const { size, mtimeMs } = await stat(path)
    const cached = this.entries[path]
    const settled = cached?.written || (cached?.hashedAt !== undefined && cached.hashedAt - mtimeMs > RACY_MS)
    if (cached && cached.size === size && cached.mtimeMs === mtimeMs && settled && cached.hash) return cached.hash
    if (!options.quiet) this.onHashing?.(path, size)
    const hashedAt = Date.now()
    const hash = await contentHashOfFile(path)
    this.entries[path] = { size, mtimeMs, hashedAt, hash }
    this.dirty = true
    return hash
  }

  /**
   * The content hash of an output a unit just wrote: known from the write when it went through atomic-write, else
   * read in full (an older entry for the path is never trusted: the file is new, and may keep a coarse mtime and a
   * size).
   */
  async output(path: string): Promise<string> {
    if (!committedFile(path)) delete this.entries[path]
    return this.hash(path, { quiet: true })
  }

  /** Record the hash of a file this process committed, so the next process trusts it without reading it. */
  private remember(path: string, file: { size: number; mtimeMs: number; hash: string }): void {
    const cached = this.entries[path]
    if (cached?.written && cached.size === file.size && cached.mtimeMs === file.mtimeMs && cached.hash === file.hash) return
    this.entries[path] = { size: file.size, mtimeMs: file.mtimeMs, hashedAt: Date.now(), written: true, hash: file.hash }
    this.dirty = true
  }

  /** Write new entries back (atomically); a no-op when nothing was hashed. */
  save(): void {
    if (!this.dirty) return
    writeFileAtomic(this.file, JSON.stringify(this.entries, null, 1) + '\n')
    this.dirty = false
  }
}
