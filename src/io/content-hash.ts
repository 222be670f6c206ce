// The content hash of files (outputs as they are written, inputs such as checkpoints): XXH3-64 from @node-rs/xxhash,
// written "xxh3:<16 hex digits>". It tells a file that changed or was torn from the one recorded; nothing here needs
// a cryptographic hash. sha256 hashed ~1.2 GB/s on one core here, XXH3 ~7 GB/s: the extract stage hashes every
// activation byte it writes (600 MB per GPT-2-small shard) on the thread that feeds the model, so it mattered.
import { xxh3 } from '@node-rs/xxhash'

export const CONTENT_HASH = 'xxh3'

export interface ContentHash {
  update(bytes: Uint8Array): void
  /** "xxh3:<16 hex digits>"; call once, at the end. */
  digest(): string
}

export function createContentHash(): ContentHash {
  const state = xxh3.Xxh3.withSeed()
  return {
    update: (bytes) => void state.update(bytes),
    digest: () => `${CONTENT_HASH}:${state.digest().toString(16).padStart(16, '0')}`,
  }
}

/** The content hash of bytes or text held in memory. */
export function contentHashOf(data: Uint8Array | string): string {
  const hash = createContentHash()
  hash.update(typeof data === 'string' ? Buffer.from(data) : data)
  return hash.digest()
}
