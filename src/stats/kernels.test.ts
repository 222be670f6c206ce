import { describe, expect, it } from 'vitest'
import { decodeF16, toFloat16Bits } from '../io/safetensors-dtypes.js'
import { jsKernels, loadNativeKernels, nativeGaussians, type Kernels } from './kernels.js'
import { boxMullerFill, seededRandom, xoshiroState } from './random.js'

const native = loadNativeKernels()
const backends: Kernels[] = native ? [jsKernels, native] : [jsKernels]

function randomRows(rows: number, tokens: number, seed: number): Float32Array {
  let s = seed
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32)
  return Float32Array.from({ length: rows * tokens }, (_, i) => 1000 + (i % 7) + next() * 3 - 1.5)
}

/** Float32 rows as little-endian blobs at odd byte offsets inside one buffer (as in a Parquet page). */
function asBlobs(values: Float32Array, rows: number, tokens: number, width: 2 | 4): { bytes: Uint8Array; offsets: Float64Array } {
  const stride = tokens * width + 5
  const bytes = new Uint8Array(3 + rows * stride)
  const offsets = new Float64Array(rows)
  const view = new DataView(bytes.buffer)
  for (let i = 0; i < rows; i++) {
    offsets[i] = 3 + i * stride
    for (let t = 0; t < tokens; t++) {
      const at = offsets[i] + t * width
      if (width === 4) view.setFloat32(at, values[i * tokens + t], true)
      else view.setUint16(at, toFloat16Bits(values[i * tokens + t]), true)
    }
  }
  return { bytes, offsets }
}

describe.each(backends.map((k) => [k.name, k] as const))('%s kernels: shift rows', (_name, k) => {
  const rows = 5, tokens = 37 // not a multiple of the 8 lanes
  const src = randomRows(rows, tokens, 7)
  const shift = Float64Array.from({ length: rows }, (_, i) => 1000 + i * 0.25)

  it('shifts and sums each row as float64 over the rounded shifted values (brute force)', () => {
    const dst = new Float32Array(rows * tokens), sum = new Float64Array(rows), sumSq = new Float64Array(rows)
    expect(k.shiftRows(src, rows, tokens, shift, dst, sum, sumSq)).toBe(-1)
    for (let i = 0; i < rows; i++) {
      let s1 = 0, s2 = 0
      for (let t = 0; t < tokens; t++) {
        const y = Math.fround(src[i * tokens + t] - shift[i])
        expect(dst[i * tokens + t]).toBe(y)
        s1 += y
        s2 += y * y
      }
      expect(sum[i]).toBeCloseTo(s1, 10)
      expect(sumSq[i]).toBeCloseTo(s2, 10)
    }
  })

  it('reads float32 and float16 blobs at unaligned offsets like the same rows', () => {
    for (const width of [4, 2] as const) {
      const values = width === 4 ? src : Float32Array.from(src, (x) => x - 1000) // float16 needs small values
      const { bytes, offsets } = asBlobs(values, rows, tokens, width)
      const fromRows = { dst: new Float32Array(rows * tokens), sum: new Float64Array(rows), sumSq: new Float64Array(rows) }
      const fromBlobs = { dst: new Float32Array(rows * tokens), sum: new Float64Array(rows), sumSq: new Float64Array(rows) }
      const expected = width === 4 ? values : jsDecodedHalf(values)
      k.shiftRows(expected, rows, tokens, shift, fromRows.dst, fromRows.sum, fromRows.sumSq)
      expect(k.shiftBlobs(bytes, offsets, width, tokens, shift, fromBlobs.dst, fromBlobs.sum, fromBlobs.sumSq)).toBe(-1)
      expect(fromBlobs).toEqual(fromRows)
    }
  })

  it('reports the first non-finite value by flat index', () => {
    const bad = src.slice()
    bad[2 * tokens + 11] = NaN
    bad[3 * tokens + 1] = Infinity
    const dst = new Float32Array(rows * tokens)
    expect(k.shiftRows(bad, rows, tokens, shift, dst, new Float64Array(rows), new Float64Array(rows))).toBe(2 * tokens + 11)
  })

  it('refuses a blob that runs past the buffer', () => {
    const { bytes, offsets } = asBlobs(src, rows, tokens, 4)
    offsets[4] = bytes.length - 8
    expect(() => k.shiftBlobs(bytes, offsets, 4, tokens, shift, new Float32Array(rows * tokens), new Float64Array(rows), new Float64Array(rows))).toThrow(/runs past/)
  })
})

// Rounds float32 values through float16 the way a float16 shard stores them.
function jsDecodedHalf(values: Float32Array): Float32Array {
  const { bytes, offsets } = asBlobs(values, 1, values.length, 2)
  const out = new Float32Array(values.length)
  jsKernels.shiftBlobs(bytes, offsets, 2, values.length, new Float64Array(1), out, new Float64Array(1), new Float64Array(1))
  return out
}

describe.each(backends.map((k) => [k.name, k] as const))('%s kernels: addFloat32Into', (_name, k) => {
  it('adds each float32 value into the float64 sums, on any thread count', () => {
    const n = (1 << 21) + 3 // enough for two threads
    const from = Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i) * 1e3))
    for (const threads of [1, 2]) {
      k.setThreads(threads)
      const into = Float64Array.from({ length: n }, (_, i) => i * 0.5)
      k.addFloat32Into(into, from)
      for (const i of [0, 1, n >> 1, n - 1]) expect(into[i]).toBe(i * 0.5 + from[i])
    }
    k.setThreads(1)
    expect(() => k.addFloat32Into(new Float64Array(4), new Float32Array(3))).toThrow(/from has 3 values/)
  })
})

describe.runIf(native)('native and JavaScript kernels agree bit for bit', () => {
  it('on long rows with large means', () => {
    const rows = 3, tokens = 10_001
    const src = randomRows(rows, tokens, 11)
    const shift = Float64Array.from([1001, 999.5, 1003])
    const out = (k: Kernels) => {
      const o = { dst: new Float32Array(rows * tokens), sum: new Float64Array(rows), sumSq: new Float64Array(rows) }
      k.shiftRows(src, rows, tokens, shift, o.dst, o.sum, o.sumSq)
      return o
    }
    expect(out(native!)).toEqual(out(jsKernels))
  })

  it('whatever the thread count, and the first bad value is found across threads', () => {
    const rows = 96, tokens = 20_000 // enough values for several threads
    const src = randomRows(rows, tokens, 5)
    src[70 * tokens + 3] = -Infinity
    src[90 * tokens + 9] = NaN
    const shift = new Float64Array(rows).fill(1000)
    const run = (k: Kernels, threads: number, values: Float32Array) => {
      k.setThreads(threads)
      const o = { dst: new Float32Array(rows * tokens), sum: new Float64Array(rows), sumSq: new Float64Array(rows) }
      const bad = k.shiftRows(values, rows, tokens, shift, o.dst, o.sum, o.sumSq)
      return { bad, o }
    }
    const clean = src.map((x) => (Number.isFinite(x) ? x : 1000))
    const reference = run(jsKernels, 1, clean)
    const sameBytes = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer)) // toEqual takes seconds on 2M values
    for (const threads of [1, 2, 3, 8]) {
      const { bad, o } = run(native!, threads, clean)
      expect({ bad, sum: o.sum, sumSq: o.sumSq }).toEqual({ bad: reference.bad, sum: reference.o.sum, sumSq: reference.o.sumSq })
      expect(sameBytes(o.dst, reference.o.dst)).toBe(true)
      expect(run(native!, threads, src).bad).toBe(70 * tokens + 3)
    }
    native!.setThreads(1)
  })
})

describe.each(backends.map((k) => [k.name, k] as const))('%s kernels: sparse dots', (_name, k) => {
  const rowsA = 7, rowsB = 5, tokens = 1037 // not a multiple of the 8 lanes
  const za = randomRows(rowsA, tokens, 3).map((v) => v - 1001), zb = randomRows(rowsB, tokens, 4).map((v) => v - 1001)
  // Row 1 and row 4 have no candidates; row 6 has six (the native kernel takes four at a time, then the rest).
  const rowStart = Int32Array.from([0, 2, 2, 5, 6, 6, 8, 14])
  const cols = Int32Array.from([0, 4, 1, 2, 3, 4, 0, 1, 3, 0, 4, 2, 1, 3])

  it('adds each candidate\'s dot product over the tokens into dots (brute force, float64)', () => {
    k.setThreads(2)
    const dots = new Float64Array(cols.length).fill(1)
    k.sparseDots(za, zb, tokens, rowStart, cols, dots)
    for (let i = 0; i < rowsA; i++) {
      for (let e = rowStart[i]; e < rowStart[i + 1]; e++) {
        let sum = 0
        for (let t = 0; t < tokens; t++) sum += za[i * tokens + t] * zb[cols[e] * tokens + t]
        expect(dots[e]).toBeCloseTo(1 + sum, 9)
      }
    }
  })

  it('gives the JavaScript kernels\' bits', () => {
    const mine = new Float64Array(cols.length), js = new Float64Array(cols.length)
    k.sparseDots(za, zb, tokens, rowStart, cols, mine)
    jsKernels.sparseDots(za, zb, tokens, rowStart, cols, js)
    expect(mine).toEqual(js)
  })

  it('refuses a candidate outside B and a CSR that does not add up', () => {
    const outside = Int32Array.from(cols)
    outside[5] = 9
    expect(() => k.sparseDots(za, zb, tokens, rowStart, outside, new Float64Array(cols.length))).toThrow(/names row 9 of B/)
    expect(() => k.sparseDots(za, zb, tokens, Int32Array.from([0, 2, 9]), cols, new Float64Array(cols.length))).toThrow(/sparseDots given/)
  })
})

describe.each(backends.map((k) => [k.name, k] as const))('%s kernels: the rotation baseline\'s loops', (_name, k) => {
  // A pair's sums: A has 3 layers of d = 70 against B's 130 columns (not multiples of the 64 × 64 transpose blocks).
  const d = 70, rowsA = 3 * d, cols = 130, n = 1234
  const cross = Float64Array.from(randomRows(rowsA, cols, 11), (v) => (v - 1001) * 50)
  const sumA = Float64Array.from(randomRows(1, rowsA, 12), (v) => v - 1001)
  const sumB = Float64Array.from(randomRows(1, cols, 13), (v) => v - 1001)

  it('centres a tile of the cross sums, as rows and transposed (brute force, each value rounded to float32 once)', () => {
    k.setThreads(2)
    // A's rows 7…56 against B's columns 60…129.
    const rows = 50, i0 = 7, width = cols - 60
    const out = new Float32Array(rows * width)
    k.centredCross(cross, cols, sumA, sumB, n, 60, width, false, i0, rows, out)
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < width; j++) expect(out[i * width + j]).toBe(Math.fround(cross[(i0 + i) * cols + 60 + j] - (sumA[i0 + i] / n) * sumB[60 + j]))
    }
    // Transposed: B's columns 3…102 as rows against A's layer 1 (rows 70…139).
    const transposed = new Float32Array(100 * d)
    k.centredCross(cross, cols, sumA, sumB, n, d, d, true, 3, 100, transposed)
    for (let i = 0; i < 100; i++) {
      for (let j = 0; j < d; j++) expect(transposed[i * d + j]).toBe(Math.fround(cross[(d + j) * cols + 3 + i] - (sumA[d + j] / n) * sumB[3 + i]))
    }
  })

  it('finds each row\'s largest scaled entry, skipping NaN directions; NaN for a dead anchor or a row with nothing defined', () => {
    const rows = 5, width = 37
    const cov = Float32Array.from(randomRows(rows, width, 14), (v) => v - 1001)
    const scatter = Float64Array.from([4, 0, 2.5, 9, 1])        // anchor 1 is dead
    const inverseRoot = Float64Array.from({ length: width }, (_, j) => (j % 5 === 0 ? NaN : 1 / (1 + j)))
    const best = new Float64Array(rows).fill(-7)
    k.rotatedRowMaxima(cov, rows, width, scatter, inverseRoot, best)
    for (let i = 0; i < rows; i++) {
      const products = Array.from({ length: width }, (_, j) => cov[i * width + j] * (1 / Math.sqrt(scatter[i])) * inverseRoot[j]).filter((r) => !Number.isNaN(r))
      expect(best[i]).toBe(scatter[i] > 0 ? Math.max(...products) : NaN)
    }
    k.rotatedRowMaxima(cov, 1, width, scatter, new Float64Array(width).fill(NaN), best)
    expect(best[0]).toBeNaN()
  })

  it('refuses a tile outside the sums', () => {
    expect(() => k.centredCross(cross, cols, sumA, sumB, n, 100, d, false, 0, 10, new Float32Array(10 * d))).toThrow(/centredCross of 10 × 70/)
    expect(() => k.rotatedRowMaxima(new Float32Array(10), 2, 6, new Float64Array(2), new Float64Array(6), new Float64Array(2))).toThrow(/rotatedRowMaxima of 2 × 6/)
  })
})

describe.each(backends.map((k) => [k.name, k] as const))('%s kernels: Gaussian directions', (_name, k) => {
  it('make random.ts\'s normals bit for bit, odd counts included, and advance the state as its draws do', () => {
    k.setThreads(2)
    for (const [count, seed, stream] of [[1, 0, 0], [7, 1, 5], [70_001, 0xffffffff, 3], [300_000, 12345, 0]]) {
      const state = xoshiroState(seed, stream), out = new Float64Array(count)
      k.gaussianPairs(state, out)
      const random = seededRandom(seed, stream), expected = new Float64Array(count)
      boxMullerFill(random, expected)
      expect(out).toEqual(expected)
      const next = new Float64Array(3), expectedNext = new Float64Array(3)
      k.gaussianPairs(state, next)   // the state went on from where the draws stopped
      boxMullerFill(random, expectedNext)
      expect(next).toEqual(expectedNext)
    }
  })

  it('refuses a state that is not four words', () => {
    expect(() => k.gaussianPairs(new Uint32Array(3), new Float64Array(2))).toThrow(/4 words, got 3/)
  })
})

describe('native Gaussian directions', () => {
  const wrong = (_state: Uint32Array, out: Float64Array) => (out.fill(0.5), true)
  it('fall back to the JavaScript ones when the native fill is unavailable or disagrees on its first call', () => {
    for (const fill of [() => false, wrong]) {
      const out = new Float64Array(5), expected = new Float64Array(5)
      nativeGaussians(fill)(xoshiroState(3, 4), out)
      jsKernels.gaussianPairs(xoshiroState(3, 4), expected)
      expect(out).toEqual(expected)
    }
  })
})

describe.each(backends.map((k) => [k.name, k] as const))('%s kernels: float16 rows', (_name, k) => {
  it('convert every finite float16 value exactly, subnormals included (decodeF16 as the reference)', () => {
    const halves = Uint16Array.from({ length: 65536 }, (_, bits) => bits).filter((bits) => (bits & 0x7c00) !== 0x7c00)
    const tokens = halves.length, bytes = new Uint8Array(halves.buffer)
    const dst = new Float32Array(tokens), sum = new Float64Array(1), sumSq = new Float64Array(1)
    k.setThreads(2)
    expect(k.shiftBlobs(bytes, Float64Array.of(0), 2, tokens, new Float64Array(1), dst, sum, sumSq)).toBe(-1)
    expect(dst).toEqual(decodeF16(halves))
  })
})

describe.each(backends.map((k) => [k.name, k] as const))('%s kernels: sparse dots, many candidates a row', (_name, k) => {
  it('sums eight, then four, then single candidates as the JavaScript does (a row of 13)', () => {
    const rowsB = 13, tokens = 515
    const za = randomRows(2, tokens, 8).map((v) => v - 1001), zb = randomRows(rowsB, tokens, 9).map((v) => v - 1001)
    const rowStart = Int32Array.from([0, 13, 14]), cols = Int32Array.from([12, 0, 3, 5, 1, 2, 4, 6, 7, 8, 9, 11, 10, 4])
    const mine = new Float64Array(cols.length), js = new Float64Array(cols.length)
    k.setThreads(2)
    k.sparseDots(za, zb, tokens, rowStart, cols, mine)
    jsKernels.sparseDots(za, zb, tokens, rowStart, cols, js)
    expect(mine).toEqual(js)
    let sum = 0
    for (let t = 0; t < tokens; t++) sum += za[t] * zb[12 * tokens + t]
    expect(mine[0]).toBeCloseTo(sum, 9)
  })
})
