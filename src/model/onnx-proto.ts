// A minimal protobuf encoder for the ONNX messages seedscope emits (ModelProto, GraphProto, NodeProto,
// AttributeProto, TensorProto, ValueInfoProto). Encoding produces lists of chunks so that large weights
// (raw_data) are never copied until the bytes are handed to onnxruntime. Field numbers are from onnx.proto.

/** Encoded bytes as a list of chunks plus their total length. */
export interface Encoded {
  chunks: Uint8Array[]
  length: number
}

export const DataType = { FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10 } as const
export type DataTypeCode = (typeof DataType)[keyof typeof DataType]

const WIRE_VARINT = 0
const WIRE_FIXED32 = 5
const WIRE_BYTES = 2

/** Appends protobuf fields; nested messages are Encoded values, prefixed with their length. */
class MessageWriter {
  private chunks: Uint8Array[] = []
  private length = 0
  private scratch: number[] = []

  private flushScratch(): void {
    if (this.scratch.length === 0) return
    const bytes = Uint8Array.from(this.scratch)
    this.chunks.push(bytes)
    this.length += bytes.length
    this.scratch = []
  }

  private varint(value: bigint | number): void {
    // Negative int64 values are encoded as their 64-bit two's complement (10 bytes), as protobuf requires.
    let v = BigInt.asUintN(64, BigInt(value))
    do {
      let byte = Number(v & 0x7fn)
      v >>= 7n
      if (v !== 0n) byte |= 0x80
      this.scratch.push(byte)
    } while (v !== 0n)
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire)
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT)
    this.varint(value)
    return this
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32)
    const b = new Uint8Array(4)
    new DataView(b.buffer).setFloat32(0, value, true)
    this.scratch.push(...b)
    return this
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_BYTES)
    this.varint(value.length)
    this.flushScratch()
    this.chunks.push(value)
    this.length += value.length
    return this
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value))
  }

  message(field: number, value: Encoded): this {
    this.tag(field, WIRE_BYTES)
    this.varint(value.length)
    this.flushScratch()
    this.chunks.push(...value.chunks)
    this.length += value.length
    return this
  }

  finish(): Encoded {
    this.flushScratch()
    return { chunks: this.chunks, length: this.length }
  }
}

export interface TensorProto {
  name: string
  dataType: DataTypeCode
  dims: number[]
  rawData: Uint8Array
  /** Where the bytes lie instead, in a file in the session's external initializers folder (weights-file.ts). */
  external?: { location: string; offset: number; length: number }
}

export type AttributeValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: number[] }
  | { kind: 'floats'; value: number[] }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: TensorProto }

export interface NodeProto {
  opType: string
  inputs: string[]
  outputs: string[]
  name: string
  domain?: string
  attributes: Record<string, AttributeValue>
}

/** A tensor's element type and shape; a string dimension is symbolic (e.g. 'batch'). */
export interface ValueInfo {
  name: string
  dataType: DataTypeCode
  dims: (number | string)[]
}

export interface GraphProto {
  name: string
  nodes: NodeProto[]
  initializers: TensorProto[]
  inputs: ValueInfo[]
  outputs: ValueInfo[]
}

export interface ModelProto {
  irVersion: number
  opsets: { domain: string; version: number }[]
  producerName: string
  graph: GraphProto
}

export function encodeTensor(t: TensorProto): Encoded {
  const w = new MessageWriter()
  for (const d of t.dims) w.int(1, d)
  w.int(2, t.dataType).string(8, t.name)
  if (!t.external) return w.bytes(9, t.rawData).finish()
  // external_data (13): key/value entries; data_location (14) EXTERNAL = 1
  const entry = (key: string, value: string) => new MessageWriter().string(1, key).string(2, value).finish()
  const { location, offset, length } = t.external
  w.message(13, entry('location', location)).message(13, entry('offset', String(offset))).message(13, entry('length', String(length)))
  return w.int(14, 1).finish()
}

const ATTRIBUTE_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const

function encodeAttribute(name: string, a: AttributeValue): Encoded {
  const w = new MessageWriter().string(1, name)
  switch (a.kind) {
    case 'float': w.float(2, a.value); break
    case 'int': w.int(3, a.value); break
    case 'string': w.string(4, a.value); break
    case 'tensor': w.message(5, encodeTensor(a.value)); break
    case 'floats': for (const f of a.value) w.float(7, f); break
    case 'ints': for (const i of a.value) w.int(8, i); break
  }
  w.int(20, ATTRIBUTE_TYPE[a.kind])
  return w.finish()
}

function encodeNode(n: NodeProto): Encoded {
  const w = new MessageWriter()
  for (const i of n.inputs) w.string(1, i)
  for (const o of n.outputs) w.string(2, o)
  w.string(3, n.name).string(4, n.opType)
  for (const [name, a] of Object.entries(n.attributes)) w.message(5, encodeAttribute(name, a))
  if (n.domain) w.string(7, n.domain)
  return w.finish()
}

function encodeValueInfo(v: ValueInfo): Encoded {
  const shape = new MessageWriter()
  for (const d of v.dims) {
    const dim = new MessageWriter()
    if (typeof d === 'number') dim.int(1, d)
    else dim.string(2, d)
    shape.message(1, dim.finish())
  }
  const tensorType = new MessageWriter().int(1, v.dataType).message(2, shape.finish()).finish()
  const type = new MessageWriter().message(1, tensorType).finish()
  return new MessageWriter().string(1, v.name).message(2, type).finish()
}

function encodeGraph(g: GraphProto): Encoded {
  const w = new MessageWriter()
  for (const n of g.nodes) w.message(1, encodeNode(n))
  w.string(2, g.name)
  for (const t of g.initializers) w.message(5, encodeTensor(t))
  for (const i of g.inputs) w.message(11, encodeValueInfo(i))
  for (const o of g.outputs) w.message(12, encodeValueInfo(o))
  return w.finish()
}

export function encodeModel(m: ModelProto): Encoded {
  const w = new MessageWriter().int(1, m.irVersion).string(2, m.producerName).message(7, encodeGraph(m.graph))
  for (const o of m.opsets) w.message(8, new MessageWriter().string(1, o.domain).int(2, o.version).finish())
  return w.finish()
}

/** Concatenate chunks into one buffer (onnxruntime takes the model as one Uint8Array). */
export function concatEncoded(e: Encoded): Uint8Array {
  const out = new Uint8Array(e.length)
  let offset = 0
  for (const c of e.chunks) {
    out.set(c, offset)
    offset += c.length
  }
  return out
}
