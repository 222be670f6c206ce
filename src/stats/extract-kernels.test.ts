// Extract's kernels (kernels.ts, native/kernels/extract.c): each backend against brute force, then native against
// JavaScript bit for bit.
import { describe, expect, it } from 'vitest'
import { decodeF16 } from '../io/safetensors-dtypes.js'
import { HISTOGRAM_BINS, HISTOGRAM_EDGES } from './histogram.js'
import { jsKernels, loadNativeKernels, type Kernels } from './kernels.js'
import { seededRandom } from './random.js'
import type { TopHeaps } from './top-heap.js'

const native = loadNativeKernels()
const portable = loadNativeKernels({ portable: true }) // the C loops without AVX-512, which other CPUs run
const backends: [string, Kernels][] = native && portable ? [['js', jsKernels], ['native', native], ['native portable', portable]] : [['js', jsKernels]]

/** x rounded to float32, and its two float32 neighbours (by bit pattern: one each side). */
function float32Steps(x: number): number[] {
  const f = new Float32Array([x]), bits = new Int32Array(f.buffer)
  const at = f[0], pattern = bits[0]
  return [at, ...[-1, 1].map((d) => ((bits[0] = pattern + d), f[0]))]
}

/**
 * A token-major chunk [tokens, width] with every hard value: each edge of the histogram and its float32 neighbours,
 * both ends and beyond, ±0, NaN, ±Infinity, among random values on [−12, 17).
 */
function hardChunk(tokens: number, width: number, seed: number): Float32Array {
  const random = seededRandom(seed, 0)
  const hard = [...Array.from(HISTOGRAM_EDGES).flatMap(float32Steps), -0, 0, -1e30, 1e30, NaN, Infinity, -Infinity]
  return Float32Array.from({ length: tokens * width }, (_, i) => (i % 3 === 0 ? hard[(i / 3) % hard.length] : random() * 29 - 12))
}

function validMask(tokens: number, seed: number): Uint8Array {
  const random = seededRandom(seed, 1)
  return Uint8Array.from({ length: tokens }, () => (random() < 0.8 ? 1 : 0))
}

/** Values of neuron j at the tokens that count (valid and finite), in token order. */
function finiteValues(chunk: Float32Array, tokens: number, width: number, j: number, valid: Uint8Array | undefined): number[] {
  const out: number[] = []
  for (let t = 0; t < tokens; t++) if ((!valid || valid[t]) && Number.isFinite(chunk[t * width + j])) out.push(chunk[t * width + j])
  return out
}

const filled = (n: number, value: number) => new Float64Array(n).fill(value)

/** The bytes of every typed array in a record, in key order: equal bytes are bit-identical results. */
function bytesOf(arrays: Record<string, ArrayBufferView>): Buffer {
  return Buffer.concat(Object.keys(arrays).sort().map((key) => Buffer.from(arrays[key].buffer, arrays[key].byteOffset, arrays[key].byteLength)))
}

describe.each(backends)('%s kernels: extract', (_name, k) => {
  const tokens = 301, width = 37 // neither a multiple of the vector width
  const chunk = hardChunk(tokens, width, 1)
  const valid = validMask(tokens, 2)

  it('chunkMoments: counts, means and power sums around them in token order, positives and searchsorted bins (brute force)', () => {
    for (const mask of [valid, undefined]) {
      // The chunk's own sums start dirty (they are written); the running totals are added into: positive starts at 2,
      // nonFinite at 3, every bin at 1.
      const own = () => filled(width, 7)
      const count = own(), mean = own(), s1 = own(), s2 = own(), s3 = own(), s4 = own()
      const positive = filled(width, 2), nonFinite = filled(width, 3), histogram = filled(width * HISTOGRAM_BINS, 1)
      k.chunkMoments(chunk, tokens, width, mask, count, mean, s1, s2, s3, s4, positive, nonFinite, histogram)
      for (let j = 0; j < width; j++) {
        const values = finiteValues(chunk, tokens, width, j, mask)
        let all = 0
        for (let t = 0; t < tokens; t++) all += !mask || mask[t] ? 1 : 0
        expect(count[j]).toBe(values.length)
        const mu = values.reduce((sum, x) => sum + x, 0) / values.length
        expect(mean[j]).toBe(mu)
        const expected = [0, 0, 0, 0]
        for (const x of values) {
          const d = x - mu
          expected[0] += d
          expected[1] += d * d
          expected[2] += d * d * d
          expected[3] += d * d * (d * d)
        }
        expect([s1[j], s2[j], s3[j], s4[j]]).toEqual(expected)
        expect(positive[j]).toBe(2 + values.filter((x) => x > 0).length)
        expect(nonFinite[j]).toBe(3 + all - values.length)
        const bins = filled(HISTOGRAM_BINS, 1)
        for (const x of values) bins[HISTOGRAM_EDGES.filter((edge) => edge < x).length]++
        expect(histogram.subarray(j * HISTOGRAM_BINS, (j + 1) * HISTOGRAM_BINS)).toEqual(bins)
      }
    }
  })

  it('chunkMoments gives a neuron without finite values count 0 and mean 0, and counts 65,536 tokens and more', () => {
    const width2 = 19, tokens2 = 70_000 // past the 16-bit counts the vector path keeps per block
    const values = Float32Array.from({ length: tokens2 * width2 }, (_, i) => (i % width2 === 4 ? NaN : (i % 7) - 3.5))
    const own = () => filled(width2, 7)
    const count = own(), mean = own(), s = [own(), own(), own(), own()]
    const positive = filled(width2, 0), nonFinite = filled(width2, 0), histogram = filled(width2 * HISTOGRAM_BINS, 0)
    k.chunkMoments(values, tokens2, width2, undefined, count, mean, s[0], s[1], s[2], s[3], positive, nonFinite, histogram)
    expect([count[4], mean[4], s[1][4], nonFinite[4], positive[4]]).toEqual([0, 0, 0, tokens2, 0])
    expect(histogram.subarray(4 * HISTOGRAM_BINS, 5 * HISTOGRAM_BINS).every((c) => c === 0)).toBe(true)
    for (const j of [0, 5, 18]) {
      expect(count[j]).toBe(tokens2)
      expect(histogram.subarray(j * HISTOGRAM_BINS, (j + 1) * HISTOGRAM_BINS).reduce((a, b) => a + b)).toBe(tokens2)
    }
  })

  it('topKRows keeps each neuron\'s k strongest (value, then earlier row and position) across calls (brute force)', () => {
    const nPos = 16, k5 = 5, offset = 3, neurons = offset + width
    const random = seededRandom(3, 0)
    // Neuron-major rows [width, tokens] of small integers (many ties), with NaN and ±Infinity among them.
    const special = [NaN, Infinity, -Infinity]
    const rows = Float32Array.from({ length: width * tokens }, (_, i) => (i % 11 === 0 ? special[(i / 11) % 3] : Math.floor(random() * 6) - 2))
    const row = Int32Array.from({ length: tokens }, (_, t) => 100 + Math.floor(t / nPos)), pos = Int32Array.from({ length: tokens }, (_, t) => t % nPos)
    const heaps: TopHeaps = { k: k5, size: new Int32Array(neurons), value: new Float64Array(neurons * k5), row: new Int32Array(neurons * k5), pos: new Int32Array(neurons * k5) }
    const split = 10 * nPos // two calls, as two shards of the same neurons: tokens [0, split) and [split, tokens)
    const part = (from: number, to: number) => Float32Array.from({ length: width * (to - from) }, (_, i) => rows[Math.floor(i / (to - from)) * tokens + from + (i % (to - from))])
    k.topKRows(part(0, split), width, split, row.subarray(0, split), pos.subarray(0, split), offset, heaps)
    k.topKRows(part(split, tokens), width, tokens - split, row.subarray(split), pos.subarray(split), offset, heaps)
    expect(Array.from(heaps.size.subarray(0, offset))).toEqual([0, 0, 0])
    for (let j = 0; j < width; j++) {
      const all: [number, number, number][] = []
      for (let t = 0; t < tokens; t++) if (Number.isFinite(rows[j * tokens + t])) all.push([rows[j * tokens + t], row[t], pos[t]])
      all.sort((x, y) => y[0] - x[0] || x[1] - y[1] || x[2] - y[2])
      const g = offset + j
      const kept: [number, number, number][] = []
      for (let e = 0; e < heaps.size[g]; e++) kept.push([heaps.value[g * k5 + e], heaps.row[g * k5 + e], heaps.pos[g * k5 + e]])
      kept.sort((x, y) => y[0] - x[0] || x[1] - y[1] || x[2] - y[2])
      expect(kept).toEqual(all.slice(0, k5))
    }
  })

  it('scatterNeuronMajor copies the valid tokens into consecutive columns of neuron-major rows (brute force)', () => {
    const outTokens = 500, column = 7
    const out = new Float32Array(width * outTokens).fill(-1)
    const end = k.scatterNeuronMajor(chunk, tokens, width, valid, out, outTokens, column)
    const expected = new Float32Array(width * outTokens).fill(-1)
    let c = column
    for (let t = 0; t < tokens; t++) {
      if (!valid[t]) continue
      for (let j = 0; j < width; j++) expected[j * outTokens + c] = chunk[t * width + j]
      c++
    }
    expect(end).toBe(c)
    expect(out).toEqual(expected)
  })

  it('refuses arrays too short for the chunk', () => {
    const short = new Float64Array(width - 1), ok = () => new Float64Array(width)
    const moments = (histogram: Float64Array, s3 = ok(), t = tokens, mask: Uint8Array | undefined = valid) =>
      () => k.chunkMoments(chunk, t, width, mask, ok(), ok(), ok(), ok(), s3, ok(), ok(), ok(), histogram)
    const bins = () => new Float64Array(width * HISTOGRAM_BINS)
    expect(moments(new Float64Array(width * HISTOGRAM_BINS - 1))).toThrow(RangeError)
    expect(moments(bins(), short)).toThrow(RangeError)
    expect(moments(bins(), ok(), tokens + 1, undefined)).toThrow(RangeError)
    expect(moments(bins(), ok(), tokens, valid.subarray(1))).toThrow(RangeError)
    expect(() => k.scatterNeuronMajor(chunk, tokens, width, undefined, new Float32Array(width * tokens), tokens, 1)).toThrow(RangeError)
  })
})

describe.each(backends)('%s kernels: float16 encoding', (_name, k) => {
  const HALVES = decodeF16(Uint16Array.from({ length: 0x7c00 }, (_, h) => h)) // every finite non-negative half, in order

  /** The binary16 bits nearest to x by brute force over every half; ties go to the even bit pattern. */
  function nearestHalf(x: number): number {
    const magnitude = Math.abs(x)
    let lo = 0, hi = HALVES.length - 1 // binary search for the halves either side of |x|
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1
      if (HALVES[mid] <= magnitude) lo = mid
      else hi = mid
    }
    const dLo = magnitude - HALVES[lo], dHi = HALVES[hi] - magnitude
    const bits = dLo < dHi || (dLo === dHi && lo % 2 === 0) || magnitude <= HALVES[lo] ? lo : hi
    return bits | (Object.is(x, -0) || x < 0 ? 0x8000 : 0)
  }

  it('rounds to the nearest half, ties to even, over every half, every midpoint and random floats', () => {
    const random = seededRandom(11, 0)
    const values: number[] = []
    for (let h = 0; h < HALVES.length; h++) {
      values.push(HALVES[h], -HALVES[h])
      if (h + 1 < HALVES.length) values.push((HALVES[h] + HALVES[h + 1]) / 2) // a tie: exact in float32
    }
    for (let i = 0; i < 20000; i++) values.push((random() - 0.5) * 2 ** Math.floor(random() * 44 - 28)) // 2^-29 … 2^15
    values.push(-0, 1e-40, -1e-40, 65504, -65504) // float32 subnormals and the largest half
    const input = Float32Array.from(values)
    const out = new Uint16Array(input.length)
    expect(k.toFloat16(input, out)).toBe(-1)
    const wrong = Array.from(input).findIndex((x, i) => out[i] !== nearestHalf(x))
    expect(wrong, `value ${input[wrong]}: got ${out[wrong]?.toString(16)}, want ${nearestHalf(input[wrong]).toString(16)}`).toBe(-1)
  })

  it('refuses the first value float16 cannot hold instead of writing ±Inf', () => {
    for (const bad of [65520, -1e6, Infinity, NaN]) {
      const input = Float32Array.from({ length: 10000 }, (_, i) => (i === 7777 ? bad : i / 100))
      expect(k.toFloat16(input, new Uint16Array(input.length))).toBe(7777)
    }
  })
})

describe.runIf(native)('native and JavaScript extract kernels agree bit for bit', () => {
  const tokens = 2048, width = 203
  const random = seededRandom(5, 0)
  // Gaussian-like values with a large mean and rare non-finite ones, over two chunks.
  const chunk = Float32Array.from({ length: tokens * width }, (_, i) => (i % 4099 === 0 ? NaN : 1000 + (random() + random() + random() - 1.5) * 8))
  const hard = hardChunk(tokens, width, 6)
  const valid = validMask(tokens, 7)

  it('chunkMoments, on AVX-512 and without', () => {
    const out = (k: Kernels) => {
      const o = { positive: filled(width, 0), nonFinite: filled(width, 0), histogram: filled(width * HISTOGRAM_BINS, 0) }
      const own: Float64Array[] = []
      for (const c of [chunk, hard]) {
        const sums = Array.from({ length: 6 }, () => filled(width, 0))
        k.chunkMoments(c, tokens, width, valid, sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], o.positive, o.nonFinite, o.histogram)
        own.push(...sums)
      }
      return bytesOf({ ...o, ...Object.fromEntries(own.map((sums, i) => [`own${String(i).padStart(2, '0')}`, sums])) })
    }
    const js = out(jsKernels)
    expect(out(native!).equals(js)).toBe(true)
    expect(out(portable!).equals(js)).toBe(true)
  })

  it('topKRows and scatterNeuronMajor, on AVX-512 and without', () => {
    const out = (k: Kernels) => {
      const top = 50, columns = 2 * valid.reduce((n, v) => n + v, 0) // both chunks' valid tokens, one after the other
      const heaps: TopHeaps = { k: top, size: new Int32Array(width), value: new Float64Array(width * top), row: new Int32Array(width * top), pos: new Int32Array(width * top) }
      const acts = new Float32Array(width * columns)
      let column = 0
      for (const c of [chunk, hard]) column = k.scatterNeuronMajor(c, tokens, width, valid, acts, columns, column)
      const row = Int32Array.from({ length: columns }, (_, t) => Math.floor(t / 256)), pos = Int32Array.from({ length: columns }, (_, t) => t % 256)
      k.topKRows(acts, width, columns, row, pos, 0, heaps)
      return bytesOf({ size: heaps.size, value: heaps.value, row: heaps.row, pos: heaps.pos, acts })
    }
    const js = out(jsKernels)
    expect(out(native!).equals(js)).toBe(true)
    expect(out(portable!).equals(js)).toBe(true)
  })
})
