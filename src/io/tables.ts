// Parquet tables: every seedscope output table is written and read here, with hyparquet-writer and hyparquet.
// A table is a list of typed columns plus string key-value metadata; writes are atomic (temp file, fsync,
// rename), and a streaming writer puts one row group on disk per `append`, so memory holds one group at most.
import { closeSync, fdatasync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { asyncBufferFromFile, parquetMetadata, parquetReadObjects, parquetSchema } from 'hyparquet'
import { parquetHeader } from 'hyparquet/src/column.js'
import type { FileMetaData, SchemaElement } from 'hyparquet'
import { ByteWriter, ParquetWriter } from 'hyparquet-writer'
import { writePageHeader } from 'hyparquet-writer/src/datapage.js'
import { fileMapping, type FileMapping } from '../stats/kernels.js'
import { commitTemporary, temporaryPath } from './atomic-write.js'
import { createContentHash } from './content-hash.js'
import { DirectWriter } from './direct-write.js'

/**
 * Column types seedscope uses. `INT32_LIST` is a Parquet LIST of int32 (one JS array per row); `BYTE_ARRAY`
 * holds raw bytes (for example a little-endian int32 blob, see `int32Blob`).
 */
export type ColumnType = 'INT32' | 'INT64' | 'FLOAT' | 'DOUBLE' | 'BOOLEAN' | 'STRING' | 'BYTE_ARRAY' | 'INT32_LIST'

export interface ColumnSpec {
  name: string
  type: ColumnType
  nullable?: boolean // may hold null (default false)
  plain?: boolean // PLAIN encoding only (default: dictionary when it pays); skips hashing every value of unique blobs
}

export interface TableSpec {
  columns: readonly ColumnSpec[]
  metadata?: Record<string, string> // Parquet key-value metadata, written in key order (default none)
  codec?: 'SNAPPY' | 'UNCOMPRESSED' // default SNAPPY; float blobs do not compress, so activations skip it
  statistics?: boolean // min/max per column chunk (default true); useless for opaque blobs
  direct?: boolean // write past the page cache where the system allows (direct-write.ts): for large files
}

/** Column values by name: typed arrays or plain arrays, all of one length. */
export type ColumnValues = Record<string, ArrayLike<unknown>>

// hyparquet-writer stamps created_by into the footer; a fixed string keeps outputs byte-identical across runs.
const CREATED_BY = 'seedscope (hyparquet-writer)'

/**
 * Writes one Parquet table incrementally: each `append` becomes one row group, flushed to a temporary file
 * at once; `close` writes the footer and renames the file into place. Until then `path` is untouched.
 */
export class TableWriter {
  readonly path: string
  rowCount = 0
  private readonly spec: TableSpec
  private readonly tmp: string
  private readonly sink: FileSink
  private readonly parquet: ParquetWriter
  private closed = false

  constructor(path: string, spec: TableSpec) {
    this.path = path
    this.spec = spec
    mkdirSync(dirname(path), { recursive: true })
    this.tmp = temporaryPath(path)
    this.sink = new FileSink(this.tmp, spec.direct ?? false)
    this.parquet = new ParquetWriter({
      writer: this.sink,
      schema: schemaOf(spec.columns),
      codec: spec.codec ?? 'SNAPPY',
      statistics: spec.statistics ?? true,
      kvMetadata: Object.keys(spec.metadata ?? {})
        .sort()
        .map((key) => ({ key, value: spec.metadata![key] })),
      createdBy: CREATED_BY,
    })
  }

  /** Append rows (one row group). Every column of the spec must be present, all of the same length. */
  append(values: ColumnValues): void {
    const lengths = this.spec.columns.map((column) => {
      const data = values[column.name]
      if (data === undefined) throw new Error(`table ${this.path}: column ${column.name} missing from append`)
      return data.length
    })
    const n = lengths[0] ?? 0
    if (lengths.some((length) => length !== n)) {
      throw new Error(`table ${this.path}: columns have different lengths (${lengths.join(', ')})`)
    }
    if (n === 0) return
    this.parquet.write({
      columnData: this.spec.columns.map((column) => ({
        name: column.name,
        data: values[column.name] as never,
        ...(column.plain ? { encoding: 'PLAIN' as const } : {}),
      })),
      rowGroupSize: n,
    })
    this.rowCount += n
  }

  /**
   * Append one row group whose columns the caller has already PLAIN-encoded (columns of the spec, in order;
   * required, uncompressed): each goes to the file as one data page straight from the caller's bytes. For
   * large blobs (activations), where building hyparquet-writer's page would copy every byte twice.
   */
  appendEncoded(rows: number, encoded: Record<string, Uint8Array>): void {
    if (rows === 0) return
    for (const { name, type, nullable, plain } of this.spec.columns) { // all checked before anything is written
      if (encoded[name] === undefined) throw new Error(`table ${this.path}: column ${name} missing from appendEncoded`)
      if (nullable || (type !== 'INT32' && !(type === 'BYTE_ARRAY' && plain))) {
        throw new Error(`table ${this.path}: column ${name} cannot be appended pre-encoded (required INT32 or plain BYTE_ARRAY only)`)
      }
    }
    const sink = this.sink
    const groupStart = sink.offset
    const columns = this.spec.columns.map(({ name, type }) => {
      const bytes = encoded[name]
      const offset = BigInt(sink.offset)
      writePageHeader(sink, {
        type: 'DATA_PAGE_V2',
        uncompressed_page_size: bytes.length,
        compressed_page_size: bytes.length,
        data_page_header_v2: {
          num_values: rows, num_nulls: 0, num_rows: rows, encoding: 'PLAIN',
          definition_levels_byte_length: 0, repetition_levels_byte_length: 0, is_compressed: false,
        },
      })
      sink.appendBytes(bytes)
      const size = BigInt(sink.offset) - offset
      return {
        file_offset: offset,
        meta_data: {
          type: type as 'INT32' | 'BYTE_ARRAY', encodings: ['PLAIN' as const], path_in_schema: [name], codec: 'UNCOMPRESSED' as const,
          num_values: BigInt(rows), total_uncompressed_size: size, total_compressed_size: size, data_page_offset: offset,
        },
      }
    })
    const size = BigInt(sink.offset - groupStart)
    this.parquet.row_groups.push({ columns, total_byte_size: size, num_rows: BigInt(rows), total_compressed_size: size })
    this.parquet.num_rows += BigInt(rows)
    sink.flush()
    this.rowCount += rows
  }

  /** Finish the file and move it into place; returns its size and content hash (hashed as it was written). */
  close(): { bytes: number; hash: string } {
    if (this.closed) throw new Error(`table ${this.path}: closed twice`)
    this.closed = true
    try {
      this.parquet.finish()
    } catch (error) {
      rmSync(this.tmp, { force: true })
      throw error
    }
    const hash = this.sink.hash.digest()
    commitTemporary(this.tmp, this.path, hash)
    return { bytes: this.sink.offset, hash }
  }

  /** Drop the partial file; `path` keeps whatever it held before. */
  abort(): void {
    if (this.closed) return
    this.closed = true
    this.sink.discard()
  }
}

/** Write a whole table at once, atomically; returns its size and content hash. */
export function writeTable(path: string, spec: TableSpec, values: ColumnValues): { bytes: number; hash: string } {
  const writer = new TableWriter(path, spec)
  try {
    writer.append(values)
  } catch (error) {
    writer.abort()
    throw error
  }
  return writer.close()
}

export interface TableInfo {
  numRows: number
  columns: string[]
  metadata: Record<string, string>
  rowGroups: { rowStart: number; rowEnd: number }[]
}

/** Read a table's footer: row count, column names, key-value metadata and row-group boundaries. */
export async function readTableInfo(path: string): Promise<TableInfo> {
  const metadata = await readFooter(path)
  return describe(metadata)
}

export interface ReadTableOptions {
  columns?: string[] // columns to read (default all)
  rowStart?: number // first row, inclusive (default 0)
  rowEnd?: number // last row, exclusive (default the end)
}

/**
 * Read rows as objects. BYTE_ARRAY columns come back as Uint8Array, STRING columns as strings, INT64 as
 * bigint, lists as arrays. Reads only the row groups the range touches.
 */
export async function readTable(path: string, options: ReadTableOptions = {}): Promise<Record<string, unknown>[]> {
  const file = await asyncBufferFromFile(path)
  const metadata = await readFooter(path)
  return parquetReadObjects({
    file,
    metadata,
    columns: options.columns,
    rowStart: options.rowStart,
    rowEnd: options.rowEnd,
    utf8: false, // STRING columns are still decoded (by their converted type); raw BYTE_ARRAY stays bytes
  })
}

/** Where each value of a BYTE_ARRAY column lies in a buffer of the file's bytes. */
export interface PlainBlobs {
  bytes: Uint8Array // the file's bytes that hold the column chunks: mapped, or the chunks read back to back
  offsets: Float64Array // [rows] byte offset of each value in `bytes`
  lengths: Uint32Array // [rows] its length in bytes
}

// The views readPlainBlobs mapped (rather than read), by their buffer, with what unmaps them: a later call given
// one as `reuse`, or releasePlainBlobs, unmaps it.
const mappings = new WeakMap<ArrayBufferLike, FileMapping>()

/**
 * The values of BYTE_ARRAY column `column`, rows [rowStart, rowEnd), as they lie in the file: no decoding, no
 * copy per value. With the native kernels the file's bytes are mapped, not read (the page cache itself, no copy);
 * else one read per row group. Only for a required column written PLAIN and uncompressed (activation shards);
 * returns undefined for any other layout, and the caller reads it with {@link readTable}. `reuse`: the `bytes` of
 * an earlier call, which this call may overwrite or unmap. `mapping`: null reads instead of mapping.
 */
export function readPlainBlobs(path: string, column: string, rowStart: number, rowEnd: number, reuse?: Uint8Array, mapping: FileMapping | null = fileMapping ?? null): PlainBlobs | undefined {
  const fd = openSync(path, 'r')
  try {
    const metadata = readFooterSync(fd, path)
    const index = metadata.schema.findIndex((e, i) => i > 0 && e.name === column)
    const element = metadata.schema[index]
    if (index < 0 || element.type !== 'BYTE_ARRAY' || element.repetition_type !== 'REQUIRED' || element.num_children) return undefined
    const chunks: { groupRow: number; offset: number; size: number }[] = []
    let groupRow = 0
    for (const group of metadata.row_groups) {
      const rows = Number(group.num_rows)
      const chunk = group.columns.find((c) => c.meta_data?.path_in_schema.join('.') === column)?.meta_data
      if (!chunk || chunk.codec !== 'UNCOMPRESSED' || chunk.dictionary_page_offset !== undefined) return undefined
      if (groupRow < rowEnd && groupRow + rows > rowStart) {
        chunks.push({ groupRow, offset: Number(chunk.data_page_offset), size: Number(chunk.total_compressed_size) })
      }
      groupRow += rows
    }
    if (reuse && mappings.has(reuse.buffer)) {
      releasePlainBlobs(reuse)
      reuse = undefined
    }
    const { bytes, starts } = chunkBytes(fd, path, chunks, reuse, mapping)
    const offsets = new Float64Array(rowEnd - rowStart)
    const lengths = new Uint32Array(rowEnd - rowStart)
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    for (const [c, chunk] of chunks.entries()) {
      const at = starts[c]
      let row = chunk.groupRow
      const reader = { view, offset: at }
      while (reader.offset < at + chunk.size) {
        const header = parquetHeader(reader)
        const v2 = header.data_page_header_v2
        const page = v2 ?? header.data_page_header
        if (!page || page.encoding !== 'PLAIN') {
          releasePlainBlobs(bytes)
          return undefined
        }
        const pageEnd = reader.offset + header.compressed_page_size
        // A required flat column has no level bytes in a v1 page; v2 states their length (0 here too).
        let value = reader.offset + (v2 ? v2.definition_levels_byte_length + v2.repetition_levels_byte_length : 0)
        for (let i = 0; i < page.num_values; i++, row++) {
          const length = view.getUint32(value, true)
          if (row >= rowStart && row < rowEnd) {
            offsets[row - rowStart] = value + 4
            lengths[row - rowStart] = length
          }
          value += 4 + length
        }
        if (value !== pageEnd) throw new Error(`${path}: page of column ${column} holds ${pageEnd - reader.offset} bytes, its values ${value - reader.offset}; the file is corrupt`)
        reader.offset = pageEnd
      }
    }
    return { bytes, offsets, lengths }
  } finally {
    closeSync(fd)
  }
}

/** Let go of a readPlainBlobs result's bytes now: a mapping is unmapped (its views become empty); read memory is left to the collector. */
export function releasePlainBlobs(bytes: Uint8Array): void {
  if (bytes.buffer.byteLength > 0) mappings.get(bytes.buffer)?.unmap(bytes)
}

/** The column chunks' bytes, and where each chunk starts in them: one mapping of the span they cover, or read. */
function chunkBytes(fd: number, path: string, chunks: { offset: number; size: number }[], reuse: Uint8Array | undefined, mapping: FileMapping | null): { bytes: Uint8Array; starts: number[] } {
  if (mapping && chunks.length) {
    const base = chunks[0].offset, end = chunks[chunks.length - 1].offset + chunks[chunks.length - 1].size
    // Reading a mapped page past the end of the file kills the process (SIGBUS): refuse a footer that points there.
    if (end > fstatSync(fd).size) throw new Error(`${path}: column chunks end at byte ${end}, past the file's end; the file is corrupt or truncated`)
    const bytes = mapping.map(fd, base, end - base)
    mappings.set(bytes.buffer, mapping)
    return { bytes, starts: chunks.map((c) => c.offset - base) }
  }
  const size = chunks.reduce((sum, c) => sum + c.size, 0)
  // Fresh memory costs a page fault (and the kernel's zeroing) per 4 KiB, more than the read itself; a new
  // buffer gets headroom so that a slightly larger shard next time still fits.
  const fits = reuse && reuse.byteOffset === 0 && reuse.buffer.byteLength >= size
  const bytes = new Uint8Array(fits ? reuse.buffer : new ArrayBuffer(Math.ceil(size * 1.25)), 0, size)
  const starts: number[] = []
  let at = 0
  for (const chunk of chunks) {
    readFully(fd, bytes.subarray(at, at + chunk.size), chunk.offset, path)
    starts.push(at)
    at += chunk.size
  }
  return { bytes, starts }
}

/** The file's footer (FileMetaData): its length and magic from the last 8 bytes, then the footer itself. */
function readFooterSync(fd: number, path: string): FileMetaData {
  const size = fstatSync(fd).size
  const tail = Buffer.alloc(8)
  if (size < 12) throw new Error(`${path}: ${size} bytes is too short for a Parquet file`)
  readFully(fd, tail, size - 8, path)
  const footerLength = tail.readUInt32LE(0)
  if (tail.toString('latin1', 4) !== 'PAR1' || footerLength + 12 > size) throw new Error(`${path}: not a Parquet file (bad footer)`)
  const footer = Buffer.alloc(footerLength + 8)
  readFully(fd, footer, size - footerLength - 8, path)
  return parquetMetadata(footer.buffer.slice(footer.byteOffset, footer.byteOffset + footer.length))
}

function readFully(fd: number, into: Uint8Array, position: number, path: string): void {
  let done = 0
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, position + done)
    if (n === 0) throw new Error(`${path}: file ends at byte ${position + done}, expected ${into.length - done} more; the file is truncated`)
    done += n
  }
}

/** Little-endian int32 bytes of `values` (the layout of token blobs). */
export function int32Blob(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 4)
  const view = new DataView(out.buffer)
  for (let i = 0; i < values.length; i++) view.setInt32(i * 4, values[i], true)
  return out
}

/** Inverse of `int32Blob`. */
export function readInt32Blob(bytes: Uint8Array): Int32Array {
  if (bytes.length % 4 !== 0) throw new Error(`int32 blob of ${bytes.length} bytes is not a multiple of 4`)
  const out = new Int32Array(bytes.length / 4)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let i = 0; i < out.length; i++) out[i] = view.getInt32(i * 4, true)
  return out
}

async function readFooter(path: string): Promise<FileMetaData> {
  const fd = openSync(path, 'r')
  try {
    return readFooterSync(fd, path)
  } finally {
    closeSync(fd)
  }
}

function describe(metadata: FileMetaData): TableInfo {
  const rowGroups: TableInfo['rowGroups'] = []
  let rowStart = 0
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows)
    rowGroups.push({ rowStart, rowEnd })
    rowStart = rowEnd
  }
  return {
    numRows: Number(metadata.num_rows),
    columns: parquetSchema(metadata).children.map((child) => child.element.name),
    metadata: Object.fromEntries((metadata.key_value_metadata ?? []).map(({ key, value }) => [key, value ?? ''])),
    rowGroups,
  }
}

function schemaOf(columns: readonly ColumnSpec[]): SchemaElement[] {
  const schema: SchemaElement[] = [{ name: 'root', num_children: columns.length }]
  for (const { name, type, nullable = false } of columns) {
    const repetition_type = nullable ? 'OPTIONAL' : 'REQUIRED'
    if (type === 'INT32_LIST') {
      // The standard three-level LIST: <name> (LIST) → repeated group list → element.
      schema.push(
        { name, repetition_type, converted_type: 'LIST', num_children: 1 },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', type: 'INT32', repetition_type: 'REQUIRED' },
      )
    } else if (type === 'STRING') {
      schema.push({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type })
    } else {
      schema.push({ name, type, repetition_type })
    }
  }
  return schema
}

const DIRECT_WRITE_BYTES = 64 << 10
const SYNC_BEHIND_BYTES = 16 << 20

/** hyparquet-writer's byte buffer, emptied into a file descriptor after every row group. */
class FileSink extends ByteWriter {
  readonly hash = createContentHash()
  private fd: number | undefined
  private readonly path: string
  private readonly direct: DirectWriter | undefined // set: every byte goes through it, past the page cache
  // Write-behind: every SYNC_BEHIND_BYTES an fdatasync starts on a second descriptor in libuv's thread pool, so
  // the disk takes the file while this thread builds the rest and finish()'s fsync waits for the tail only.
  // Durability rests on finish()'s fsync alone; these only start the writeback early.
  private syncFd: number | undefined
  private syncsInFlight = 0
  private unsynced = 0

  constructor(path: string, direct: boolean) {
    super(1 << 20)
    this.path = path
    this.direct = direct ? DirectWriter.open(path) : undefined
    if (!this.direct) this.fd = openSync(path, 'w')
  }

  flush(): void {
    this.write(new Uint8Array(this.buffer, 0, this.index))
    this.index = 0
  }

  // A large run of bytes (a data page) goes to the file as it is, after what is buffered: copying it into the
  // buffer first would cost a pass over every activation byte, and grow the buffer to a row group's size.
  override appendBytes(bytes: Uint8Array): void {
    if (bytes.length < DIRECT_WRITE_BYTES) return super.appendBytes(bytes)
    this.flush()
    this.write(bytes)
    this.offset += bytes.length
  }

  private write(bytes: Uint8Array): void {
    this.hash.update(bytes)
    if (this.direct) return this.direct.write(bytes)
    if (this.fd === undefined) throw new Error(`${this.path}: write after close`)
    let written = 0
    while (written < bytes.length) written += writeSync(this.fd, bytes, written, bytes.length - written)
    this.unsynced += bytes.length
    if (this.unsynced >= SYNC_BEHIND_BYTES) this.syncBehind()
  }

  private syncBehind(): void {
    this.unsynced = 0
    this.syncFd ??= openSync(this.path, 'r')
    this.syncsInFlight++
    fdatasync(this.syncFd, () => {
      // An error is not lost: finish()'s fsync reports any failed writeback of the file.
      this.syncsInFlight--
      this.closeSyncFd()
    })
  }

  // The write-behind descriptor closes once the file is done with and no fdatasync still uses it.
  private closeSyncFd(): void {
    if (this.fd !== undefined || this.syncsInFlight > 0 || this.syncFd === undefined) return
    closeSync(this.syncFd)
    this.syncFd = undefined
  }

  override finish(): void {
    this.flush()
    if (this.direct) return this.direct.finish()
    fsyncSync(this.fd!)
    closeSync(this.fd!)
    this.fd = undefined
    this.closeSyncFd()
  }

  discard(): void {
    this.direct?.close()
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
    this.closeSyncFd()
    rmSync(this.path, { force: true })
  }
}
