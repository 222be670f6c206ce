import { mkdtempSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { writeFileAtomic } from '../io/atomic-write.js'
import { contentHashOf } from '../io/content-hash.js'
import { FileHashCache } from './hash.js'

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
    expect(await first.cache.hash(file)).toBe(contentHashOf('first'))
    first.cache.save()
    const second = cache()
    expect(await second.cache.hash(file)).toBe(contentHashOf('first'))
    expect([first.hashed.length, second.hashed.length]).toEqual([1, 0])
  })

  it('hashes again when size or mtime change, even to the same size', async () => {
    writeFileSync(file, 'other')
    const old = new Date(Date.now() - 30_000)
    utimesSync(file, old, old)
    const c = cache()
    expect(await c.cache.hash(file)).toBe(contentHashOf('other'))
    expect(c.hashed).toHaveLength(1)
  })

  it('does not trust an entry hashed within two seconds of the mtime (the file may change in the same tick)', async () => {
    writeFileSync(file, 'fresh')
    const c = cache()
    expect(await c.cache.hash(file)).toBe(contentHashOf('fresh'))
    expect(await c.cache.hash(file)).toBe(contentHashOf('fresh'))
    expect(c.hashed).toHaveLength(2)
  })

  it("trusts an output it committed itself, in this process and the next, without reading it", async () => {
    const output = join(dir, 'committed.bin')
    writeFileAtomic(output, 'written by a unit') // hashed as written, just now: racy by mtime alone
    const c = cache()
    expect(await c.cache.output(output)).toBe(contentHashOf('written by a unit'))
    c.cache.save()
    vi.resetModules() // a fresh module registry: the next process, which never saw the write
    const { FileHashCache: NextProcess } = await import('./hash.js')
    const hashed: string[] = []
    const next = new NextProcess(cacheFile, (path) => hashed.push(path))
    expect(await next.hash(output)).toBe(contentHashOf('written by a unit'))
    expect([c.hashed, hashed]).toEqual([[], []])
  })

  it('reads an output written outside atomic-write, whatever an older entry for the path says', async () => {
    const output = join(dir, 'plain.bin')
    writeFileAtomic(output, 'old content')
    const c = cache()
    await c.cache.output(output)
    const before = new Date(Date.now() - 10_000)
    utimesSync(output, before, before) // the recorded entry matches size and mtime …
    c.cache.save()
    vi.resetModules()
    const { FileHashCache: NextProcess } = await import('./hash.js')
    const stale = new NextProcess(cacheFile)
    await stale.hash(output) // … so it is re-recorded as a settled entry for that (size, mtime)
    stale.save()
    writeFileSync(output, 'new content') // same size; a coarse file system may keep the mtime too
    utimesSync(output, before, before)
    const rerun = new NextProcess(cacheFile)
    expect(await rerun.hash(output)).toBe(contentHashOf('old content')) // what status would trust (size, mtime) to say
    expect(await rerun.output(output)).toBe(contentHashOf('new content')) // a unit's fresh output is always read
  })
})

describe('FileHashCache across versions', () => {
  it('hashes a file again when its entry holds a sha256 from an older seedscope', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hash-cache-old-'))
    const file = join(dir, 'input.txt')
    writeFileSync(file, 'input')
    const before = new Date(Date.now() - 10_000)
    utimesSync(file, before, before)
    const cacheFile = join(dir, 'hashes.json')
    const old = { size: 5, mtimeMs: statSync(file).mtimeMs, hashedAt: Date.now(), sha256: 'f'.repeat(64) }
    writeFileSync(cacheFile, JSON.stringify({ [file]: old }))
    const hashed: string[] = []
    expect(await new FileHashCache(cacheFile, (path) => hashed.push(path)).hash(file)).toBe(contentHashOf('input'))
    expect(hashed).toEqual([file])
  })
})
