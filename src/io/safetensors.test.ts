// Headers and tensors built byte by byte; expected values computed by hand from the IEEE formats.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { decodeSafetensors, encodeSafetensors, readSafetensors, writeSafetensors } from './safetensors.js'
import { decodeTensorData } from './safetensors-dtypes.js'
import { userErrorMessage } from '../../test/helpers/user-error.js'

/** u64 LE header length, the header text (padded with `pad` spaces), then the data bytes. */
function file(header: object | string, data: number[] = [], pad = 0): Uint8Array {
  const text = Buffer.from((typeof header === 'string' ? header : JSON.stringify(header)) + ' '.repeat(pad))
  const bytes = Buffer.alloc(8 + text.length + data.length)
  bytes.writeBigUInt64LE(BigInt(text.length), 0)
  text.copy(bytes, 8)
  Buffer.from(data).copy(bytes, 8 + text.length)
  return new Uint8Array(bytes)
}

const u16 = (...xs: number[]) => xs.flatMap((x) => [x & 0xff, x >> 8])
const f32 = (...xs: number[]) => [...new Uint8Array(new Float32Array(xs).buffer)]

const bytesOf = (data: ArrayBufferView) => Buffer.from(data.buffer, data.byteOffset, data.byteLength)

const message = userErrorMessage

describe('F16 decoding (IEEE binary16, not bfloat16)', () => {
  // bits → value, worked out by hand: (-1)^s · 2^(e-15) · (1 + m/1024), subnormals 2^-14 · m/1024.
  const cases: [number, number][] = [
    [0x0000, 0], [0x3c00, 1], [0xc000, -2], [0x3555, 0.333251953125], [0x7bff, 65504],
    [0x0400, 2 ** -14], // smallest normal: 6.103515625e-5
    [0x0001, 2 ** -24], // smallest subnormal: 5.960464477539063e-8
    [0x8001, -(2 ** -24)],
    [0x03ff, 1023 * 2 ** -24], // largest subnormal: 6.097555160522461e-5
    [0x0200, 2 ** -15], // a subnormal bfloat16 decoding would read as 2^-121-ish
    [0x7c00, Infinity], [0xfc00, -Infinity],
  ]
  test.each(cases)('bits %i', (bits, value) => {
    expect(decodeTensorData('F16', new Uint8Array(u16(bits)))[0]).toBe(value)
  })

  test('negative zero and NaNs', () => {
    const data = decodeTensorData('F16', new Uint8Array(u16(0x8000, 0x7e00, 0x7c01, 0xfe00)))
    expect(Object.is(data[0], -0)).toBe(true)
    expect([...data].slice(1).every(Number.isNaN)).toBe(true)
  })

  test('every normal value matches its float32 bit pattern', () => {
    // Independent of the decoder's arithmetic: a normal binary16 maps to float32 bits s | (e + 112) << 23 | m << 13.
    const bits = new Uint16Array(65536).map((_, i) => i)
    const decoded = decodeTensorData('F16', new Uint8Array(bits.buffer)) as Float32Array
    const got = new Uint32Array(decoded.buffer)
    for (let h = 0; h < 65536; h++) {
      const e = (h >> 10) & 0x1f
      if (e === 0 || e === 31) continue
      const expected = (((h & 0x8000) << 16) | ((e + 112) << 23) | ((h & 0x3ff) << 13)) >>> 0
      if (got[h] !== expected) expect.fail(`0x${h.toString(16)}: got 0x${got[h].toString(16)}, want 0x${expected.toString(16)}`)
    }
  })

  test('the F16 bits of 1.0 are not read as bfloat16 (2^-7)', () => {
    expect(decodeTensorData('F16', new Uint8Array(u16(0x3c00)))[0]).toBe(1)
    expect(decodeTensorData('BF16', new Uint8Array(u16(0x3c00)))[0]).toBe(2 ** -7)
  })
})

test('BF16 decoding: the top half of a float32', () => {
  const data = decodeTensorData('BF16', new Uint8Array(u16(0x3f80, 0xc000, 0x3eaa, 0x0001, 0x7f80, 0xff80, 0x7fc0)))
  expect([...data]).toEqual([1, -2, 0.33203125, 2 ** -133, Infinity, -Infinity, NaN])
})

test('integer, bool and F64 dtypes keep their types', () => {
  const i64 = decodeTensorData('I64', new Uint8Array(new BigInt64Array([-3n, 2n ** 60n + 1n]).buffer))
  expect(i64).toBeInstanceOf(BigInt64Array)
  expect([...i64]).toEqual([-3n, 2n ** 60n + 1n])
  expect([...decodeTensorData('I32', new Uint8Array([0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0]))]).toEqual([-1, 7])
  expect(decodeTensorData('U8', new Uint8Array([0, 255]))).toEqual(new Uint8Array([0, 255]))
  expect(decodeTensorData('BOOL', new Uint8Array([1, 0]))).toEqual(new Uint8Array([1, 0]))
  const f64 = decodeTensorData('F64', new Uint8Array(new Float64Array([0.1]).buffer))
  expect(f64).toBeInstanceOf(Float64Array)
  expect(f64[0]).toBe(0.1)
})

describe('decodeSafetensors', () => {
  test('finds tensors by data_offsets, not header order, and ignores __metadata__', () => {
    const header = {
      a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] }, // listed first, stored second
      __metadata__: { format: 'pt', anything: 'goes' },
      b: { dtype: 'F16', shape: [1, 2], data_offsets: [0, 4] },
      empty: { dtype: 'F32', shape: [0, 3], data_offsets: [12, 12] },
      scalar: { dtype: 'I64', shape: [], data_offsets: [12, 20] },
    }
    const bytes = file(header, [...u16(0x0001, 0xbc00), ...f32(1.5, -2), 9, 0, 0, 0, 0, 0, 0, 0])
    const tensors = decodeSafetensors(bytes)
    expect([...tensors.keys()]).toEqual(['a', 'b', 'empty', 'scalar'])
    expect(tensors.get('a')).toEqual({ dtype: 'F32', shape: [2], data: new Float32Array([1.5, -2]) })
    expect(tensors.get('b')).toEqual({ dtype: 'F16', shape: [1, 2], data: new Float32Array([2 ** -24, -1]) })
    expect(tensors.get('empty')!.data.length).toBe(0)
    expect(tensors.get('scalar')).toEqual({ dtype: 'I64', shape: [], data: new BigInt64Array([9n]) })
  })

  test('decodes tensors at unaligned offsets (header not padded to 8)', () => {
    const header = '{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    expect((8 + header.length) % 4).not.toBe(0)
    const bytes = file(header, f32(3.25, -0.5))
    expect([...decodeSafetensors(bytes).get('x')!.data]).toEqual([3.25, -0.5])
  })

  const one = (entry: object) => ({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8], ...entry } })
  test.each([
    ['a file shorter than 8 bytes', new Uint8Array(5), /^file is 5 bytes, too short .*truncated download\? fetch it again/],
    ['a header length past the end', (() => { const b = new Uint8Array(1024); b[0] = 0x34; b[1] = 0x07; return b })(),
      /^header length 1844 exceeds file size 1024 \(truncated download\? fetch it again\)$/],
    ['a header that is not JSON', file('{"t": nope}'), /^header is not valid JSON/],
    ['a header that is a list', file('[]'), /^header is JSON but not an object/],
    ['an unknown dtype', file(one({ dtype: 'Q8' }), f32(1, 2)), /^header entry "t": unknown dtype "Q8"/],
    ['a fractional shape', file(one({ shape: [1.5] }), f32(1, 2)), /^header entry "t": shape must be a list of non-negative integers/],
    ['reversed offsets', file(one({ data_offsets: [8, 0] }), f32(1, 2)), /data_offsets must be \[begin, end\] with 0 <= begin <= end/],
    ['offsets past the data', file(one({ data_offsets: [0, 16] }), f32(1, 2)),
      /^header entry "t": data_offsets \[0, 16\] run past the data region \(8 bytes\) \(truncated download\? fetch it again\)$/],
    ['a shape that does not match the bytes', file(one({ shape: [3] }), f32(1, 2)),
      /^header entry "t": shape \[3\] of F32 needs 12 bytes, but data_offsets \[0, 8\] hold 8 \(corrupt header; fetch it again\)$/],
  ])('rejects %s', (_, bytes, expected) => {
    expect(message(() => decodeSafetensors(bytes))).toMatch(expected)
  })

  test('a dtype the format defines but seedscope does not decode names the tensor', () => {
    const bytes = file({ t: { dtype: 'I16', shape: [1], data_offsets: [0, 2] } }, [1, 0])
    expect(message(() => decodeSafetensors(bytes))).toMatch(/^tensor t: dtype I16 is not supported \(supported: F64, F32, F16, BF16, I64, I32, U8, BOOL\)$/)
  })
})

describe('encodeSafetensors', () => {
  test('writes the exact layout: u64 length, padded JSON with __metadata__ first, data by element size then name', () => {
    const bytes = encodeSafetensors({
      w: { dtype: 'F32', shape: [2], data: new Float32Array([1, -2]) },
      ids: { dtype: 'I64', shape: [1, 1], data: new BigInt64Array([-5n]) },
    })
    const json =
      '{"__metadata__":{"format":"pt"},"ids":{"dtype":"I64","shape":[1,1],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}'
    const padded = json + ' '.repeat((8 - (json.length % 8)) % 8)
    expect(Buffer.from(bytes)).toEqual(Buffer.from(file(padded, [...new Uint8Array(new BigInt64Array([-5n]).buffer), ...f32(1, -2)])))
    expect((bytes.length - 16) % 8).toBe(0)
  })

  test('round-trips every writable dtype', () => {
    const tensors = {
      f64: { dtype: 'F64', shape: [1], data: new Float64Array([0.1]) },
      f16: { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0x0001]) },
      bf16: { dtype: 'BF16', shape: [], data: new Uint16Array([0xc000]) },
      i32: { dtype: 'I32', shape: [2, 1], data: new Int32Array([-7, 8]) },
      u8: { dtype: 'U8', shape: [1], data: new Uint8Array([200]) },
      mask: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
    } as const
    const back = decodeSafetensors(encodeSafetensors(tensors))
    expect([...back.get('f64')!.data]).toEqual([0.1])
    expect([...back.get('f16')!.data]).toEqual([1, 2 ** -24])
    expect(back.get('bf16')).toEqual({ dtype: 'BF16', shape: [], data: new Float32Array([-2]) })
    expect([...back.get('i32')!.data]).toEqual([-7, 8])
    expect([...back.get('u8')!.data]).toEqual([200])
    expect([...back.get('mask')!.data]).toEqual([1, 0])
  })

  test('refuses data that does not match its dtype or shape', () => {
    expect(() => encodeSafetensors({ x: { dtype: 'F32', shape: [1], data: new Float64Array([1]) } })).toThrow(/written from a Float32Array, got a Float64Array/)
    expect(() => encodeSafetensors({ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(/shape \[3\] does not match 2 elements/)
  })
})

describe('files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'seedscope-safetensors-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  test('writeSafetensors then readSafetensors, in memory and range by range', () => {
    const path = join(dir, 'w.safetensors')
    writeSafetensors(path, { w: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) } })
    for (const maxInMemory of [undefined, 0]) {
      expect(readSafetensors(path, { maxInMemory }).get('w')).toEqual({ dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) })
    }
  })

  test('the range-by-range path reads a golden checkpoint exactly like the in-memory one', () => {
    const path = 'test/fixtures/golden/pythia-tiny-f16/model.safetensors'
    const byRange = readSafetensors(path, { maxInMemory: 0 })
    const inMemory = readSafetensors(path)
    expect([...byRange.keys()]).toEqual([...inMemory.keys()])
    for (const [name, { dtype, shape, data }] of inMemory) {
      const other = byRange.get(name)!
      expect([other.dtype, other.shape]).toEqual([dtype, shape])
      expect(Buffer.compare(bytesOf(other.data), bytesOf(data)), name).toBe(0)
    }
  })

  test('select decodes only the chosen tensors', () => {
    const path = 'test/fixtures/golden/gpt2-tiny/golden.safetensors'
    const only = readSafetensors(path, { select: (entry) => entry.dtype === 'I64' })
    expect([...only.keys()]).toEqual(['input_ids'])
    expect(only.get('input_ids')!.shape).toEqual([3, 32])
  })

  test('errors name the file', () => {
    const path = join(dir, 'truncated.safetensors')
    writeFileSync(path, readFileSync('test/fixtures/golden/gpt2-tiny/model.safetensors').subarray(0, 4000))
    expect(message(() => readSafetensors(path))).toMatch(
      new RegExp(`^${path}: header entry "transformer\\.h\\.\\d\\.[a-z_.]+": data_offsets \\[\\d+, \\d+\\] run past the data region .*truncated download\\? fetch it again`),
    )
    expect(message(() => readSafetensors(join(dir, 'absent.safetensors')))).toMatch(/absent\.safetensors: ENOENT/)
  })
})
