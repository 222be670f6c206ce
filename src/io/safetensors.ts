// The safetensors format (golden.md pitfall 16): u64 LE header length N, an N-byte JSON header mapping each tensor
// name to {dtype, shape, data_offsets}, then the data. Offsets are relative to byte 8 + N, and writers order tensors
// by (dtype, name), so a tensor is found by its offsets, never by its place in the header.
import { UserError } from '../errors.js'
import { writeFileAtomic } from './atomic-write.js'
import { type ByteSource, bytesSource, decodeFile } from './checkpoint-bytes.js'
import { type Dtype, type Tensor, type TensorData, decodeTensorData, dtypeBytes, littleEndianBytes, numel } from './safetensors-dtypes.js'

/** One header entry; `begin`/`end` are absolute byte offsets in the file. */
export interface SafetensorsEntry {
  name: string
  dtype: string // any dtype the format defines; decoding supports the `Dtype` subset
  shape: number[]
  begin: number
  end: number
}

/** Entries in header order (not data order). */
export interface SafetensorsHeader {
  dataStart: number // 8 + N
  entries: SafetensorsEntry[]
}

/** A tensor to write: the typed array must match the dtype; F16 and BF16 take their raw bits as a Uint16Array. */
export interface TensorToWrite {
  dtype: Dtype
  shape: readonly number[]
  data: TensorData | Uint16Array
}

export interface ReadSafetensorsOptions {
  select?: (entry: SafetensorsEntry) => boolean // which tensors to decode; default all
  maxInMemory?: number // files larger than this are read tensor by tensor; default 2 GiB - 1 (Node's Buffer limit)
}

/** Real headers are kilobytes; the reference implementation refuses more than 100 MB, and so do we. */
const MAX_HEADER_BYTES = 100_000_000

/** Parse and validate the header: lengths against the file size, offsets inside the data region, shape × dtype = bytes. */
export function readSafetensorsHeader(source: ByteSource): SafetensorsHeader {
  const size = source.byteLength
  if (size < 8) {
    throw new UserError(`file is ${size} bytes, too short for the 8-byte header length (truncated download? fetch it again)`)
  }
  const first = source.read(0, 8)
  const length = new DataView(first.buffer, first.byteOffset, 8).getBigUint64(0, true)
  if (length > BigInt(size - 8)) {
    throw new UserError(`header length ${length} exceeds file size ${size} (truncated download? fetch it again)`)
  }
  const headerLength = Number(length)
  if (headerLength > MAX_HEADER_BYTES) {
    throw new UserError(`header length ${headerLength} is over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`)
  }
  const json = parseHeaderJson(source.read(8, 8 + headerLength))
  const dataStart = 8 + headerLength
  const dataLength = size - dataStart
  const entries: SafetensorsEntry[] = []
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') continue // free-form string map ({"format": "pt"}); nothing in it changes decoding
    entries.push(headerEntry(name, value, dataStart, dataLength))
  }
  return { dataStart, entries }
}

/** Decode every tensor of a whole safetensors file held in memory. */
export function decodeSafetensors(bytes: Uint8Array): Map<string, Tensor> {
  return decodeEntries(bytesSource(bytes), readSafetensorsHeader(bytesSource(bytes)).entries)
}

/** Read a safetensors file; errors name the file. */
export function readSafetensors(path: string, options: ReadSafetensorsOptions = {}): Map<string, Tensor> {
  return decodeFile(path, options.maxInMemory, (source) => {
    const { entries } = readSafetensorsHeader(source)
    return decodeEntries(source, options.select ? entries.filter(options.select) : entries)
  })
}

/**
 * Encode tensors as safetensors bytes: `__metadata__: {format: "pt"}` first, tensors ordered by element size then
 * name (so every tensor starts aligned to its element size), header padded with spaces to a multiple of 8.
 */
export function encodeSafetensors(tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>): Uint8Array {
  return Buffer.concat(encodeChunks(tensors))
}

/** Write tensors to `path` atomically, without first joining them into one buffer. */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>): void {
  writeFileAtomic(path, encodeChunks(tensors))
}

function decodeEntries(source: ByteSource, entries: SafetensorsEntry[]): Map<string, Tensor> {
  const tensors = new Map<string, Tensor>()
  for (const entry of entries) {
    try {
      const data = decodeTensorData(entry.dtype, source.read(entry.begin, entry.end))
      tensors.set(entry.name, { dtype: entry.dtype as Dtype, shape: entry.shape, data })
    } catch (error) {
      throw error instanceof UserError ? new UserError(`tensor ${entry.name}: ${error.message}`, { cause: error }) : error
    }
  }
  return tensors
}

function parseHeaderJson(bytes: Uint8Array): Record<string, unknown> {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (error) {
    throw new UserError(`header is not valid JSON (${(error as Error).message}); not a safetensors file, or a corrupt one (fetch it again)`)
  }
  if (!isObject(json)) throw new UserError(`header is JSON but not an object (found ${describe(json)}); not a safetensors file`)
  return json
}

function headerEntry(name: string, value: unknown, dataStart: number, dataLength: number): SafetensorsEntry {
  const where = `header entry ${JSON.stringify(name)}`
  if (!isObject(value)) throw new UserError(`${where}: expected {dtype, shape, data_offsets}, found ${describe(value)}`)
  const { dtype, shape, data_offsets: offsets } = value
  const size = typeof dtype === 'string' ? dtypeBytes(dtype) : undefined
  if (typeof dtype !== 'string' || size === undefined) {
    throw new UserError(`${where}: unknown dtype ${JSON.stringify(dtype)} (not a safetensors dtype; corrupt header?)`)
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw new UserError(`${where}: shape must be a list of non-negative integers, found ${JSON.stringify(shape)}`)
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0] > offsets[1]) {
    throw new UserError(`${where}: data_offsets must be [begin, end] with 0 <= begin <= end, found ${JSON.stringify(offsets)}`)
  }
  const [begin, end] = offsets as [number, number]
  if (end > dataLength) {
    throw new UserError(`${where}: data_offsets [${begin}, ${end}] run past the data region (${dataLength} bytes) (truncated download? fetch it again)`)
  }
  const expected = numel(shape) * size
  if (end - begin !== expected) {
    throw new UserError(
      `${where}: shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes, but data_offsets [${begin}, ${end}] hold ${end - begin} (corrupt header; fetch it again)`,
    )
  }
  return { name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end }
}

function encodeChunks(tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>): Uint8Array[] {
  const named = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))]
  named.sort(([a, x], [b, y]) => dtypeBytes(y.dtype)! - dtypeBytes(x.dtype)! || (a < b ? -1 : a > b ? 1 : 0))
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } }
  const chunks: Uint8Array[] = []
  let offset = 0
  for (const [name, tensor] of named) {
    if (name === '__metadata__') throw new Error('a tensor cannot be named __metadata__ (the header reserves it)')
    checkTensorToWrite(name, tensor)
    const bytes = littleEndianBytes(tensor.data)
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes.byteLength] }
    chunks.push(bytes)
    offset += bytes.byteLength
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8)
  const text = Buffer.from(json)
  const prefix = Buffer.alloc(8 + text.length)
  prefix.writeBigUInt64LE(BigInt(text.length), 0)
  text.copy(prefix, 8)
  return [prefix, ...chunks]
}

const ARRAY_FOR_DTYPE: Record<Dtype, { name: string; [Symbol.hasInstance](x: unknown): boolean }> = {
  F64: Float64Array, F32: Float32Array, F16: Uint16Array, BF16: Uint16Array,
  I64: BigInt64Array, I32: Int32Array, U8: Uint8Array, BOOL: Uint8Array,
}

function checkTensorToWrite(name: string, { dtype, shape, data }: TensorToWrite): void {
  const expected = Object.hasOwn(ARRAY_FOR_DTYPE, dtype) ? ARRAY_FOR_DTYPE[dtype] : undefined
  if (expected === undefined) throw new Error(`tensor ${name}: cannot write dtype ${dtype} (writable: ${Object.keys(ARRAY_FOR_DTYPE).join(', ')})`)
  if (!(data instanceof expected)) {
    throw new Error(`tensor ${name}: dtype ${dtype} is written from a ${expected.name}, got a ${data.constructor.name}`)
  }
  if (!shape.every(isCount) || numel(shape) !== data.length) {
    throw new Error(`tensor ${name}: shape [${shape.join(', ')}] does not match ${data.length} elements`)
  }
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

function describe(x: unknown): string {
  return Array.isArray(x) ? 'a list' : x === null ? 'null' : `a ${typeof x}`
}
