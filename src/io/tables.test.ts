// Parquet tables: round trips through hyparquet, row groups per append, atomic replacement, byte-identical
// rewrites, and the int32 blob layout checked against bytes written out by hand.
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ByteWriter, ParquetWriter } from 'hyparquet-writer'
import { describe, expect, it } from 'vitest'
import { TableWriter, int32Blob, readInt32Blob, readTable, readTableInfo, writeTable } from './tables.js'
import type { TableSpec } from './tables.js'
import { contentHashOf } from './content-hash.js'

const scratch = () => mkdtempSync(join(tmpdir(), 'seedscope-tables-'))

const spec: TableSpec = {
  columns: [
    { name: 'row', type: 'INT32' },
    { name: 'label', type: 'STRING', nullable: true },
    { name: 'score', type: 'DOUBLE' },
    { name: 'big', type: 'INT64' },
    { name: 'flag', type: 'BOOLEAN' },
    { name: 'blob', type: 'BYTE_ARRAY' },
    { name: 'list', type: 'INT32_LIST' },
  ],
  metadata: { 'b.key': 'two', 'a.key': 'one' },
}

const values = {
  row: new Int32Array([0, 1, 2]),
  label: ['x', null, 'zé'],
  score: new Float64Array([0.5, -1, Number.NaN]),
  big: new BigInt64Array([1n, 2n ** 40n, -3n]),
  flag: [true, false, true],
  blob: [new Uint8Array([1, 2]), new Uint8Array([]), new Uint8Array([255])],
  list: [[1, 2, 3], [], [-7]],
}

describe('writeTable / readTable', () => {
  it('round-trips every column type and the key-value metadata', async () => {
    const path = join(scratch(), 't.parquet')
    writeTable(path, spec, values)
    const rows = await readTable(path)
    expect(rows.map((row) => ({ ...row, blob: Array.from(row.blob as Uint8Array) }))).toEqual([
      { row: 0, label: 'x', score: 0.5, big: 1n, flag: true, blob: [1, 2], list: [1, 2, 3] },
      { row: 1, label: null, score: -1, big: 2n ** 40n, flag: false, blob: [], list: [] },
      { row: 2, label: 'zé', score: Number.NaN, big: -3n, flag: true, blob: [255], list: [-7] },
    ])
    const info = await readTableInfo(path)
    expect(info).toEqual({
      numRows: 3,
      columns: spec.columns.map((column) => column.name),
      metadata: { 'a.key': 'one', 'b.key': 'two' },
      rowGroups: [{ rowStart: 0, rowEnd: 3 }],
    })
  })

  it('reads a row range and a column subset', async () => {
    const path = join(scratch(), 't.parquet')
    writeTable(path, spec, values)
    expect(await readTable(path, { columns: ['row', 'list'], rowStart: 1, rowEnd: 3 })).toEqual([
      { row: 1, list: [] },
      { row: 2, list: [-7] },
    ])
  })

  it('writes the same bytes twice and reports their content hash', () => {
    const dir = scratch()
    const first = writeTable(join(dir, 'a.parquet'), spec, values)
    const second = writeTable(join(dir, 'b.parquet'), spec, values)
    const bytes = readFileSync(join(dir, 'a.parquet'))
    expect(readFileSync(join(dir, 'b.parquet')).equals(bytes)).toBe(true)
    expect(first).toEqual(second)
    expect(first).toEqual({ bytes: bytes.length, hash: contentHashOf(bytes) })
  })

  it('writes the same bytes past the page cache (direct) as through it', () => {
    const dir = scratch()
    const buffered = writeTable(join(dir, 'a.parquet'), spec, values)
    const direct = writeTable(join(dir, 'b.parquet'), { ...spec, direct: true }, values)
    expect(readFileSync(join(dir, 'b.parquet')).equals(readFileSync(join(dir, 'a.parquet')))).toBe(true)
    expect(direct).toEqual(buffered)
  })

  it('refuses columns of different lengths or a missing column', () => {
    const dir = scratch()
    expect(() => writeTable(join(dir, 'x.parquet'), spec, { ...values, flag: [true] })).toThrow('columns have different lengths')
    const { list: _list, ...missing } = values
    expect(() => writeTable(join(dir, 'y.parquet'), spec, missing)).toThrow('column list missing')
    expect(readdirSync(dir)).toEqual([]) // no partial or temporary file left behind
  })
})

describe('TableWriter', () => {
  const small: TableSpec = { columns: [{ name: 'n', type: 'INT32' }] }

  it('writes one row group per append', async () => {
    const path = join(scratch(), 'groups.parquet')
    const writer = new TableWriter(path, small)
    writer.append({ n: new Int32Array([1, 2, 3]) })
    writer.append({ n: new Int32Array([]) })
    writer.append({ n: new Int32Array([4, 5]) })
    expect(existsSync(path)).toBe(false) // nothing at the target until close
    writer.close()
    expect((await readTableInfo(path)).rowGroups).toEqual([
      { rowStart: 0, rowEnd: 3 },
      { rowStart: 3, rowEnd: 5 },
    ])
    expect((await readTable(path)).map((row) => row.n)).toEqual([1, 2, 3, 4, 5])
  })

  it('appendEncoded writes caller-encoded PLAIN pages that hyparquet reads back, beside ordinary row groups', async () => {
    const blobs: TableSpec = { columns: [{ name: 'n', type: 'INT32' }, { name: 'b', type: 'BYTE_ARRAY', plain: true }] }
    const path = join(scratch(), 'encoded.parquet')
    const writer = new TableWriter(path, blobs)
    writer.append({ n: new Int32Array([7]), b: [Uint8Array.from([1, 2])] })
    // PLAIN BYTE_ARRAY: each value's u32 little-endian length, then its bytes
    const page = Uint8Array.from([3, 0, 0, 0, 9, 8, 7, 0, 0, 0, 0, 1, 0, 0, 0, 6])
    writer.appendEncoded(3, { n: new Uint8Array(Int32Array.from([8, 9, 10]).buffer), b: page })
    writer.close()
    expect((await readTableInfo(path)).rowGroups).toEqual([{ rowStart: 0, rowEnd: 1 }, { rowStart: 1, rowEnd: 4 }])
    const rows = await readTable(path)
    expect(rows.map((row) => row.n)).toEqual([7, 8, 9, 10])
    expect(rows.map((row) => Array.from(row.b as Uint8Array))).toEqual([[1, 2], [9, 8, 7], [], [6]])
  })

  it('appendEncoded refuses a missing column and a column it cannot take pre-encoded', () => {
    const writer = new TableWriter(join(scratch(), 'refused.parquet'), { columns: [{ name: 'n', type: 'INT32' }, { name: 'd', type: 'DOUBLE' }] })
    expect(() => writer.appendEncoded(1, { d: new Uint8Array(8) })).toThrow(/column n missing/)
    expect(() => writer.appendEncoded(1, { n: new Uint8Array(4), d: new Uint8Array(8) })).toThrow(/column d cannot be appended pre-encoded/)
    expect(writer.rowCount).toBe(0)
    writer.abort()
  })

  it('abort leaves the previous file in place and no temporary file', async () => {
    const dir = scratch()
    const path = join(dir, 'keep.parquet')
    writeTable(path, small, { n: new Int32Array([7]) })
    const writer = new TableWriter(path, small)
    writer.append({ n: new Int32Array([8, 9]) })
    writer.abort()
    expect(readdirSync(dir)).toEqual(['keep.parquet'])
    expect((await readTable(path)).map((row) => row.n)).toEqual([7])
  })
})

describe('TableWriter, large pages', () => {
  // 24 blobs of 1 MiB: pages go straight to the file, and the file passes the 16 MiB write-behind step.
  const blobs = Array.from({ length: 24 }, (_, i) => new Uint8Array(1 << 20).fill(i * 37))
  const big: TableSpec = { codec: 'UNCOMPRESSED', statistics: false, columns: [{ name: 'acts', type: 'BYTE_ARRAY', plain: true }] }

  it('writes the bytes hyparquet-writer builds in memory, and hashes them as written', () => {
    const path = join(scratch(), 'big.parquet')
    const written = writeTable(path, big, { acts: blobs })
    const reference = new ByteWriter()
    const parquet = new ParquetWriter({
      writer: reference,
      schema: [{ name: 'root', num_children: 1 }, { name: 'acts', type: 'BYTE_ARRAY', repetition_type: 'REQUIRED' }],
      codec: 'UNCOMPRESSED', statistics: false, kvMetadata: [], createdBy: 'seedscope (hyparquet-writer)',
    })
    parquet.write({ columnData: [{ name: 'acts', data: blobs, encoding: 'PLAIN' }], rowGroupSize: blobs.length })
    parquet.finish()
    const file = readFileSync(path)
    expect(file.equals(reference.getBytes())).toBe(true)
    expect(written).toEqual({ bytes: file.length, hash: contentHashOf(file) })
  })

  it.runIf(existsSync('/proc/self/fd'))('syncs behind the writes, and closes that descriptor once the syncs are done', async () => {
    const path = join(scratch(), 'big.parquet')
    const onFile = () => readdirSync('/proc/self/fd').filter((fd) => readlinkOrEmpty(`/proc/self/fd/${fd}`).startsWith(path)).length
    writeTable(path, big, { acts: blobs })
    expect(onFile()).toBe(1) // the write-behind descriptor: its fdatasync callbacks have not run yet
    for (let wait = 0; wait < 100 && onFile() > 0; wait++) await new Promise((resolve) => setTimeout(resolve, 20))
    expect(onFile()).toBe(0)
  })
})

function readlinkOrEmpty(path: string): string {
  try {
    return readlinkSync(path)
  } catch {
    return '' // closed meanwhile
  }
}

describe('int32 blobs', () => {
  it('are little-endian int32, checked byte by byte', () => {
    const blob = int32Blob([1, -2, 0x01020304])
    expect(Array.from(blob)).toEqual([1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 4, 3, 2, 1])
    expect(Array.from(readInt32Blob(blob))).toEqual([1, -2, 0x01020304])
    expect(Array.from(readInt32Blob(blob.subarray(4)))).toEqual([-2, 0x01020304]) // unaligned views work too
    expect(() => readInt32Blob(new Uint8Array(5))).toThrow('not a multiple of 4')
  })

  it('survive a write to Parquet and back', async () => {
    const path = join(scratch(), 'blob.parquet')
    writeTable(path, { columns: [{ name: 'tokens', type: 'BYTE_ARRAY' }] }, { tokens: [int32Blob([50256, 15496, 995])] })
    const [row] = await readTable(path)
    expect(Array.from(readInt32Blob(row.tokens as Uint8Array))).toEqual([50256, 15496, 995])
  })
})
