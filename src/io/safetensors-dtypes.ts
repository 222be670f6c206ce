// Element types of checkpoint tensors under their safetensors names (torch storages map onto the same names), and
// the exact decoding of their little-endian bytes into typed arrays. golden.md pitfall 21: F16 is IEEE binary16,
// subnormals included; reading it as bfloat16 moves GPT-2 logits by 7.
import { UserError } from '../errors.js'

/** The dtypes seedscope decodes. Floats come back as Float32Array (F64 as Float64Array), integers as their own arrays. */
export type Dtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8' | 'BOOL'
export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array

/** A decoded tensor: row-major `data` of `shape` (`[]` for a scalar, which holds one element). */
export interface Tensor {
  dtype: Dtype
  shape: number[]
  data: TensorData
}

/**
 * Bytes per element of every dtype the safetensors format defines, so that a header can be validated even when a
 * tensor's dtype is one seedscope does not decode (an int8 buffer, an fp8 experiment).
 */
const DTYPE_BYTES = new Map<string, number>([
  ['F64', 8], ['F32', 4], ['F16', 2], ['BF16', 2], ['F8_E4M3', 1], ['F8_E5M2', 1],
  ['I64', 8], ['I32', 4], ['I16', 2], ['I8', 1], ['U64', 8], ['U32', 4], ['U16', 2], ['U8', 1], ['BOOL', 1],
])

const DECODED: ReadonlySet<string> = new Set<Dtype>(['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'U8', 'BOOL'])

/** Bytes per element of `dtype`, or undefined when the safetensors format does not define it. */
export function dtypeBytes(dtype: string): number | undefined {
  return DTYPE_BYTES.get(dtype)
}

export function isDecodedDtype(dtype: string): dtype is Dtype {
  return DECODED.has(dtype)
}

/** True for every floating-point dtype, including the ones seedscope cannot decode (F8_*): those must not be skipped as buffers. */
export function isFloatingDtype(dtype: string): boolean {
  return dtype.startsWith('F') || dtype === 'BF16'
}

/** Elements of a shape; `[]` (a scalar) has one. */
export function numel(shape: readonly number[]): number {
  let n = 1
  for (const d of shape) n *= d
  return n
}

/** Decode little-endian `bytes` as `dtype`. The result may be a view of `bytes` (F32, F64, integers) when aligned. */
export function decodeTensorData(dtype: string, bytes: Uint8Array): TensorData {
  if (!isDecodedDtype(dtype)) {
    throw new UserError(`dtype ${dtype} is not supported (supported: ${[...DECODED].join(', ')})`)
  }
  const size = DTYPE_BYTES.get(dtype)!
  if (bytes.byteLength % size !== 0) {
    throw new UserError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`)
  }
  switch (dtype) {
    case 'F32': return elements(bytes, 4, (b, o, n) => new Float32Array(b, o, n))
    case 'F64': return elements(bytes, 8, (b, o, n) => new Float64Array(b, o, n))
    case 'I64': return elements(bytes, 8, (b, o, n) => new BigInt64Array(b, o, n))
    case 'I32': return elements(bytes, 4, (b, o, n) => new Int32Array(b, o, n))
    case 'U8':
    case 'BOOL': return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) // a plain view, even of a Buffer
    case 'F16': return decodeF16(elements(bytes, 2, (b, o, n) => new Uint16Array(b, o, n)))
    case 'BF16': return decodeBF16(elements(bytes, 2, (b, o, n) => new Uint16Array(b, o, n)))
  }
}

export const FLOAT16_MAX = 65504

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** float32 → IEEE binary16 bits, round to nearest even (subnormals included). */
export function toFloat16Bits(value: number): number {
  f32[0] = value
  const x = u32[0]
  const sign = (x >>> 16) & 0x8000
  const exponent = (x >>> 23) & 0xff
  let mantissa = x & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0)
  let e = exponent - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    mantissa |= 0x800000
    const shift = 14 - e
    const half = 1 << (shift - 1)
    let bits = mantissa >>> shift
    const rest = mantissa & ((1 << shift) - 1)
    if (rest > half || (rest === half && bits & 1)) bits++
    return sign | bits
  }
  let bits = (e << 10) | (mantissa >>> 13)
  const rest = mantissa & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && bits & 1)) bits++
  return sign | bits
}

/** IEEE binary16 bits → float32, exact (every binary16 value, subnormals included, is a float32). */
export function decodeF16(bits: Uint16Array): Float32Array {
  const table = f16Table()
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]]
  return out
}

/** bfloat16 bits → float32: bfloat16 is the top half of a float32, so shift the bits into place. */
export function decodeBF16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length)
  const out32 = new Uint32Array(out.buffer)
  for (let i = 0; i < bits.length; i++) out32[i] = bits[i] << 16
  return out
}

let F16_TABLE: Float32Array | undefined

/** All 65536 binary16 values (256 KB), built once: a lookup beats bit twiddling in the decode loop. */
function f16Table(): Float32Array {
  if (F16_TABLE) return F16_TABLE
  const table = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1
    const exponent = (h >> 10) & 0x1f
    const mantissa = h & 0x3ff
    if (exponent === 0) table[h] = sign * mantissa * 2 ** -24 // zero and subnormals: no implicit leading 1
    else if (exponent === 0x1f) table[h] = mantissa === 0 ? sign * Infinity : NaN
    else table[h] = sign * (1024 + mantissa) * 2 ** (exponent - 25) // (1 + m/1024) · 2^(e-15)
  }
  F16_TABLE = table
  return table
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/**
 * A typed array over `bytes`: a view when the host is little-endian and the offset is aligned (the common case),
 * otherwise an aligned copy, byte-swapped on a big-endian host.
 */
function elements<T>(bytes: Uint8Array, size: number, view: (buffer: ArrayBufferLike, offset: number, length: number) => T): T {
  const length = bytes.byteLength / size
  if (LITTLE_ENDIAN_HOST && bytes.byteOffset % size === 0) return view(bytes.buffer, bytes.byteOffset, length)
  const copy = bytes.slice()
  if (!LITTLE_ENDIAN_HOST) swapBytes(copy, size)
  return view(copy.buffer, 0, length)
}

/** The little-endian bytes of `data` (a view on little-endian hosts), for writers. */
export function littleEndianBytes(data: ArrayBufferView): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  const size = 'BYTES_PER_ELEMENT' in data ? Number(data.BYTES_PER_ELEMENT) : 1
  if (LITTLE_ENDIAN_HOST || size === 1) return bytes
  const copy = bytes.slice()
  swapBytes(copy, size)
  return copy
}

function swapBytes(bytes: Uint8Array, size: number): void {
  for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse()
}
