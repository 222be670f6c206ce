import { describe, expect, it } from 'vitest'
import { contentHashOf, createContentHash } from './content-hash.js'

// Reference values: XXH3_64bits (seed 0) of the xxHash C library 0.8.1 (Debian libxxhash0), called through ctypes.
describe('content hash', () => {
  it('is XXH3-64 of the bytes, as the reference C library computes it', () => {
    expect(contentHashOf('')).toBe('xxh3:2d06800538d394c2')
    expect(contentHashOf('hello world')).toBe('xxh3:d447b1ea40e6988b')
    const big = new Uint8Array(1_000_003).map((_, i) => (i * 31 + 7) & 255)
    expect(contentHashOf(big)).toBe('xxh3:1f748a0eacf646fa')
  })

  it('gives the same hash whatever the chunks the bytes arrive in', () => {
    const big = new Uint8Array(1_000_003).map((_, i) => (i * 31 + 7) & 255)
    const hash = createContentHash()
    for (const cut of [[0, 1], [1, 64], [64, 250_000], [250_000, 1_000_003]]) hash.update(big.subarray(cut[0], cut[1]))
    expect(hash.digest()).toBe('xxh3:1f748a0eacf646fa')
  })
})
