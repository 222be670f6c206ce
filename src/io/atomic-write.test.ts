import { createHash } from 'node:crypto'
import { appendFileSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { committedHash, writeFileAtomic } from './atomic-write.js'

const sha = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex')

describe('committedHash', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atomic-'))

  it('knows the sha256 of a file this process wrote, computed while writing', () => {
    const path = join(dir, 'a.bin')
    writeFileAtomic(path, [Buffer.from('hello '), Buffer.from('world')])
    expect(committedHash(path)).toBe(sha(readFileSync(path)))
    expect(committedHash(relative(process.cwd(), path))).toBe(sha('hello world')) // any spelling of the path
  })

  it('forgets it once the file changed size, mtime or inode, or is gone', () => {
    const grown = join(dir, 'b.bin')
    writeFileAtomic(grown, 'data')
    appendFileSync(grown, '!')
    expect(committedHash(grown)).toBeUndefined()

    const replaced = join(dir, 'c.bin')
    writeFileAtomic(replaced, 'same')
    const other = join(dir, 'other.bin')
    writeFileSync(other, 'same')
    renameSync(other, replaced) // same size and content, another inode
    expect(committedHash(replaced)).toBeUndefined()

    expect(committedHash(join(dir, 'never-written'))).toBeUndefined()
  })
})
