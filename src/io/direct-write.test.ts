import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DirectWriter } from './direct-write.js'

const dir = mkdtempSync(join(tmpdir(), 'direct-write-'))

/** Deterministic bytes, different at every offset of a block. */
const bytesOf = (length: number, seed: number) => Uint8Array.from({ length }, (_, i) => (i * 131 + seed * 7 + (i >> 9)) & 255)

describe('DirectWriter', () => {
  // Where the file system or the build offers no O_DIRECT, open says so and the writers go through the page cache.
  const open = (name: string, staging: number) => DirectWriter.open(join(dir, name), staging)

  for (const [name, pieces] of [
    ['odd pieces across several staging buffers', [1, 4095, 3, 8192, 9000, 17, 20_000, 5]],
    ['a length of whole staging buffers', [8192, 8192]],
    ['nothing at all', []],
  ] as const) {
    it(`writes exactly the bytes given, at their length: ${name}`, (ctx) => {
      const writer = open(`${name}.bin`, 8192)
      if (!writer) return ctx.skip()
      const parts = pieces.map((length, i) => bytesOf(length, i))
      for (const part of parts) writer.write(part)
      const total = pieces.reduce((sum, length) => sum + length, 0)
      expect(writer.length).toBe(total)
      writer.finish()
      const written = readFileSync(join(dir, `${name}.bin`))
      expect(statSync(join(dir, `${name}.bin`)).size).toBe(total)
      expect(Buffer.compare(written, Buffer.concat(parts))).toBe(0)
    })
  }

  it('refuses writes after finishing, and closes once', (ctx) => {
    const writer = open('closed.bin', 8192)
    if (!writer) return ctx.skip()
    writer.write(bytesOf(10, 1))
    writer.finish()
    writer.close()
    expect(() => writer.write(bytesOf(1, 2))).toThrow('write after close')
  })

  it('is not offered a staging size the kernel cannot take', () => {
    expect(DirectWriter.open(join(dir, 'odd.bin'), 1000)).toBeUndefined()
  })
})
