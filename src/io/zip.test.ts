// Archives built byte by byte by zip.fixtures.ts, and the golden torch archive.
import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import { bytesSource } from './checkpoint-bytes.js'
import { readZipDirectory, readZipEntry } from './zip.js'
import { type ZipInput, buildZip } from '../../test/helpers/zip-fixtures.js'
import { userErrorMessage } from '../../test/helpers/user-error.js'

const text = (s: string) => new Uint8Array(Buffer.from(s))

function read(archive: Uint8Array): Map<string, string> {
  const source = bytesSource(archive)
  const out = new Map<string, string>()
  for (const [name, entry] of readZipDirectory(source)) out.set(name, Buffer.from(readZipEntry(source, entry)).toString())
  return out
}

const message = userErrorMessage

describe('readZipDirectory / readZipEntry', () => {
  const inputs: ZipInput[] = [
    { name: 'ckpt/data.pkl', data: text('pickle'), localExtra: 20 },
    { name: 'ckpt/data/0', data: text('stored storage'), localExtra: 7 },
    { name: 'ckpt/data/1', data: text('deflated '.repeat(20)), deflate: true },
    { name: 'ckpt/version', data: text('3\n'), zip64: true },
  ]
  const expected = new Map(inputs.map(({ name, data }) => [name, Buffer.from(data).toString()]))

  test('reads stored and deflated entries, using the local header extra length', () => {
    expect(read(buildZip(inputs))).toEqual(expected)
  })

  test('reads zip64 end records and zip64 extra fields', () => {
    expect(read(buildZip(inputs, true))).toEqual(expected)
  })

  test('a stored entry is a view of the archive, not a copy', () => {
    const archive = buildZip(inputs)
    const source = bytesSource(archive)
    const data = readZipEntry(source, readZipDirectory(source).get('ckpt/data/0')!)
    expect(data.buffer).toBe(archive.buffer)
  })

  test('reads the golden torch archive (zip64 records, 64-byte aligned storages)', () => {
    const archive = readFileSync('test/fixtures/golden/gpt2-tiny/pytorch_model.bin')
    const source = bytesSource(archive)
    const entries = readZipDirectory(source)
    expect(entries.size).toBe(2 + 28) // data.pkl, version, one storage per distinct tensor
    expect(Buffer.from(readZipEntry(source, entries.get('pytorch_model/version')!)).toString().trim()).toBe('3')
    const storage = readZipEntry(source, entries.get('pytorch_model/data/0')!)
    expect(storage.byteOffset % 64).toBe(0)
  })
})

describe('corrupt archives', () => {
  const good = buildZip([{ name: 'a', data: text('hello') }, { name: 'b', data: text('world') }])

  test('no end-of-central-directory record', () => {
    expect(message(() => read(good.subarray(0, good.length - 10)))).toMatch(
      /^not a zip archive: no end-of-central-directory record in the last \d+ bytes; the archive is corrupt or truncated \(fetch it again\)$/,
    )
  })

  test('a bad central directory signature', () => {
    const bad = good.slice()
    const cdOffset = new DataView(bad.buffer).getUint32(bad.length - 6, true)
    bad[cdOffset + 46 + 1 + 0] ^= 0xff // first byte of the second entry's signature
    expect(message(() => read(bad))).toMatch(/^bad central directory: entry 1 of 2 at byte \d+ starts with 0x02014baf, expected signature 0x02014b50; the archive is corrupt/)
  })

  test('a central directory that points past the end records', () => {
    const bad = good.slice()
    new DataView(bad.buffer).setUint32(bad.length - 6, 1_000_000, true)
    expect(message(() => read(bad))).toMatch(/^bad central directory: \[1000000, \d+\) overlaps the end records/)
  })

  test('a CRC mismatch', () => {
    const bad = good.slice()
    bad[30 + 1] ^= 1 // first data byte of entry "a"
    expect(message(() => read(bad))).toBe('zip entry a: CRC-32 mismatch; the archive is corrupt or truncated (fetch it again)')
  })

  test('an entry whose data runs past the end of the file', () => {
    const archive = buildZip([{ name: 'a', data: text('hello') }])
    const source = bytesSource(archive)
    const entry = { ...readZipDirectory(source).get('a')!, compressedSize: 10_000 }
    expect(message(() => readZipEntry(source, entry))).toMatch(/^zip entry a: data \[31, 10031\) runs past the end of the file/)
  })
})
