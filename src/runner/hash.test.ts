import { createHash } from 'node:crypto'
import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { FileHashCache } from './hash.js'

const sha = (text: string) => createHash('sha256').update(text).digest('hex')

describe('FileHashCache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hash-cache-'))
  const file = join(dir, 'data.bin')
  const cacheFile = join(dir, 'cache.json')

  function cache(): { cache: FileHashCache; hashed: string[] } {
    const hashed: string[] = []
    return { cache: new FileHashCache(cacheFile, (path) => hashed.push(path)), hashed }
  }

  it('reads a settled file once, then trusts (size, mtime), across processes', async () => {
    writeFileSync(file, 'first')
    const old = new Date(Date.now() - 60_000)
    utimesSync(file, old, old) // written a minute ago: not racy
    const first = cache()
    expect(await first.cache.hash(file)).toBe(sha('first'))
    first.cache.save()
    const second = cache()
    expect(await second.cache.hash(file)).toBe(sha('first'))
    expect([first.hashed.length, second.hashed.length]).toEqual([1, 0])
  })

  it('hashes again when size or mtime change, even to the same size', async () => {
    writeFileSync(file, 'other')
    const old = new Date(Date.now() - 30_000)
    utimesSync(file, old, old)
    const c = cache()
    expect(await c.cache.hash(file)).toBe(sha('other'))
    expect(c.hashed).toHaveLength(1)
  })

  it('does not trust an entry hashed within two seconds of the mtime (the file may change in the same tick)', async () => {
    writeFileSync(file, 'fresh')
    const c = cache()
    expect(await c.cache.hash(file)).toBe(sha('fresh'))
    expect(await c.cache.hash(file)).toBe(sha('fresh'))
    expect(c.hashed).toHaveLength(2)
  })
})
