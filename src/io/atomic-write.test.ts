import { appendFileSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { committedFile, writeFileAtomic } from './atomic-write.js'
import { contentHashOf } from './content-hash.js'

describe('committedFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atomic-'))

  it('knows the content hash of a file this process wrote, computed while writing', () => {
    const path = join(dir, 'a.bin')
    writeFileAtomic(path, [Buffer.from('hello '), Buffer.from('world')])
    expect(committedFile(path)?.hash).toBe(contentHashOf(readFileSync(path)))
    expect(committedFile(relative(process.cwd(), path))?.hash).toBe(contentHashOf('hello world')) // any spelling of the path
  })

  it('writes a large file (past the page cache where it can) with the same bytes and hash', () => {
    const path = join(dir, 'large.bin')
    const chunks = [17 << 20, 5, 4096].map((length, c) => Uint8Array.from({ length }, (_, i) => (i * 31 + c) & 255))
    writeFileAtomic(path, chunks)
    const written = readFileSync(path)
    expect(written.equals(Buffer.concat(chunks))).toBe(true)
    expect(committedFile(path)?.hash).toBe(contentHashOf(written))
  })

  it('forgets it once the file changed size, mtime or inode, or is gone', () => {
    const grown = join(dir, 'b.bin')
    writeFileAtomic(grown, 'data')
    appendFileSync(grown, '!')
    expect(committedFile(grown)?.hash).toBeUndefined()

    const replaced = join(dir, 'c.bin')
    writeFileAtomic(replaced, 'same')
    const other = join(dir, 'other.bin')
    writeFileSync(other, 'same')
    renameSync(other, replaced) // same size and content, another inode
    expect(committedFile(replaced)?.hash).toBeUndefined()

    expect(committedFile(join(dir, 'never-written'))?.hash).toBeUndefined()
  })
})
