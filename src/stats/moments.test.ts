import { describe, expect, it } from 'vitest'
import {
  binnedMoments, HISTOGRAM_BINS, HISTOGRAM_EDGES, histogramBin, NeuronMoments, type MomentsState,
} from './moments.js'
import { gaussianMatrix, seededRandom } from './random.js'

// Reference: direct two-pass float64 moments of one neuron's values.
function direct(values: number[]): { mean: number; variance: number; skew: number; kurtosis: number } {
  const n = values.length
  const mean = values.reduce((s, x) => s + x, 0) / n
  let m2 = 0, m3 = 0, m4 = 0
  for (const x of values) {
    const d = x - mean
    m2 += d * d; m3 += d ** 3; m4 += d ** 4
  }
  const variance = m2 / n
  return { mean, variance, skew: m3 / n / variance ** 1.5, kurtosis: m4 / n / variance ** 2 }
}

// A token-major chunk [tokens, width] of skewed values (exp of a Gaussian, shifted and scaled per neuron).
function skewedChunk(tokens: number, width: number, seed: number, scale = 1, offset = 0): Float32Array {
  const g = gaussianMatrix(tokens, width, seededRandom(seed, 1))
  const out = new Float32Array(tokens * width)
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < width; j++) out[t * width + j] = offset + scale * (Math.exp(0.5 * g[t * width + j]) - 1 + j)
  }
  return out
}

function column(chunk: Float32Array, width: number, j: number, valid?: Uint8Array): number[] {
  const out: number[] = []
  for (let t = 0; t < chunk.length / width; t++) if (!valid || valid[t]) out.push(chunk[t * width + j])
  return out
}

function expectRelative(actual: number, expected: number, tolerance: number): void {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(expected)))
}

describe('NeuronMoments', () => {
  it('matches a direct two-pass float64 computation over several masked chunks', () => {
    const width = 6
    const chunks = [skewedChunk(500, width, 1), skewedChunk(37, width, 2), skewedChunk(1200, width, 3)]
    const masks = chunks.map((c, i) => {
      return Uint8Array.from({ length: c.length / width }, (_, t) => ((t * 7 + i) % 5 === 0 ? 0 : 1))
    })
    const moments = new NeuronMoments(width)
    chunks.forEach((c, i) => moments.add(c, c.length / width, { valid: masks[i] }))
    const summary = moments.summary()
    for (let j = 0; j < width; j++) {
      const values = chunks.flatMap((c, i) => column(c, width, j, masks[i]))
      const ref = direct(values)
      expect(summary.count[j]).toBe(values.length)
      expectRelative(summary.mean[j], ref.mean, 1e-12)
      expectRelative(summary.variance[j], ref.variance, 1e-11)
      expectRelative(summary.skew[j], ref.skew, 1e-10)
      expectRelative(summary.kurtosis[j], ref.kurtosis, 1e-10)
      expect(summary.frequency[j]).toBe(values.filter((x) => x > 0).length / values.length)
    }
  })

  it('stays exact for a large mean and a small variance (mean 1e4, std 1e-2)', () => {
    const tokens = 20000, width = 2
    const chunk = skewedChunk(tokens, width, 4, 1e-2, 1e4)
    const moments = new NeuronMoments(width)
    for (let t0 = 0; t0 < tokens; t0 += 4096) {
      const t1 = Math.min(tokens, t0 + 4096)
      moments.add(chunk.subarray(t0 * width, t1 * width), t1 - t0)
    }
    const summary = moments.summary()
    for (let j = 0; j < width; j++) {
      const ref = direct(column(chunk, width, j))
      expectRelative(summary.variance[j], ref.variance, 1e-9)
      expectRelative(summary.skew[j], ref.skew, 1e-7)
      expectRelative(summary.kurtosis[j], ref.kurtosis, 1e-7)
    }
  })

  it('merges shards exactly: shards (through a serialised state) equal one pass', () => {
    const width = 5, tokens = 3000
    const chunk = skewedChunk(tokens, width, 5)
    const whole = new NeuronMoments(width)
    whole.add(chunk, tokens)
    const cuts = [0, 1, 700, 710, 2999, 3000]
    const merged = new NeuronMoments(width)
    for (let s = 0; s + 1 < cuts.length; s++) {
      const shard = new NeuronMoments(width)
      shard.add(chunk.subarray(cuts[s] * width, cuts[s + 1] * width), cuts[s + 1] - cuts[s])
      merged.merge(structuredClone(shard.state()) as MomentsState)
    }
    const a = whole.summary(), b = merged.summary()
    for (let j = 0; j < width; j++) {
      expect(b.count[j]).toBe(a.count[j])
      expectRelative(b.mean[j], a.mean[j], 1e-13)
      expectRelative(b.variance[j], a.variance[j], 1e-12)
      expectRelative(b.skew[j], a.skew[j], 1e-11)
      expectRelative(b.kurtosis[j], a.kurtosis[j], 1e-11)
    }
    expect(merged.state().histogram).toEqual(whole.state().histogram)
    expect(NeuronMoments.fromState(merged.state()).summary()).toEqual(b)
  })

  it('updates a slice of neurons with neuronOffset (one accumulator for all layers)', () => {
    const chunk = skewedChunk(100, 3, 6)
    const moments = new NeuronMoments(8)
    moments.add(chunk, 100, { neuronOffset: 5 })
    const summary = moments.summary()
    expect(summary.count[4]).toBe(0)
    expect(summary.mean[4]).toBeNaN()
    expectRelative(summary.mean[6], direct(column(chunk, 3, 1)).mean, 1e-12)
    expect(() => moments.add(chunk, 100, { neuronOffset: 6 })).toThrow(/covers neurons 6..8, accumulator has 8/)
  })

  it('counts NaN and ±Infinity separately and keeps them out of every statistic', () => {
    const chunk = Float32Array.from([1, NaN, 3, Infinity, -Infinity, 5, NaN, 7])  // [8 tokens, 1 neuron]
    const moments = new NeuronMoments(1)
    moments.add(chunk, 8)
    const summary = moments.summary()
    expect(summary.nonFinite[0]).toBe(4)
    expect(summary.count[0]).toBe(4)
    expect(summary.mean[0]).toBe(4)
    expect(moments.histogram(0).reduce((s, c) => s + c, 0)).toBe(4)
  })

  it('reports NaN skew and kurtosis for a constant neuron, NaN everything for an empty one', () => {
    const moments = new NeuronMoments(2)
    moments.add(Float32Array.from([2, 0, 2, 0, 2, 0]), 3)  // neuron 0 constant at 2, neuron 1 constant at 0
    const s = moments.summary()
    expect([s.mean[0], s.variance[0], s.frequency[0], s.frequency[1]]).toEqual([2, 0, 1, 0])
    expect(s.skew[0]).toBeNaN()
    expect(s.kurtosis[0]).toBeNaN()
    const empty = new NeuronMoments(1).summary()
    expect([empty.mean[0], empty.variance[0], empty.frequency[0]].every(Number.isNaN)).toBe(true)
  })

  it('gives kurtosis ≈ 3 and skew ≈ 0 for a Gaussian (non-excess kurtosis)', () => {
    const g = gaussianMatrix(200000, 1, seededRandom(7, 0))
    const moments = new NeuronMoments(1)
    moments.add(Float32Array.from(g), g.length)
    const s = moments.summary()
    expect(Math.abs(s.kurtosis[0] - 3)).toBeLessThan(0.05)
    expect(Math.abs(s.skew[0])).toBeLessThan(0.02)
  })
})

describe('histogram', () => {
  it('uses the study layout: 256 edges on [−10, 15], 257 counts with the end bins open', () => {
    expect(HISTOGRAM_EDGES.length).toBe(256)
    expect(HISTOGRAM_BINS).toBe(257)
    expect([HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[255]]).toEqual([-10, 15])
    const e = HISTOGRAM_EDGES
    const cases: [number, number][] = [
      [-1e6, 0], [-10.5, 0], [-10, 0], [e[0] + 1e-9, 1], [e[5], 5], [e[5] + 1e-9, 6],
      [0, 102], [1e-9, 103], [15, 255], [15.001, 256], [1e9, 256],
    ]
    for (const [x, bin] of cases) expect(histogramBin(x), `x = ${x}`).toBe(bin)
  })

  it('places values on, just below and just above every edge (the estimate is corrected near edges)', () => {
    const step = (x: number, direction: 1 | -1) => {
      const view = new DataView(new ArrayBuffer(8))
      view.setFloat64(0, x)
      view.setBigInt64(0, view.getBigInt64(0) + BigInt(x > 0 ? direction : -direction))
      return x === 0 ? direction * Number.MIN_VALUE : view.getFloat64(0)
    }
    HISTOGRAM_EDGES.forEach((edge, i) => {
      expect(histogramBin(edge), `edge ${i}`).toBe(i)
      expect(histogramBin(step(edge, -1)), `below edge ${i}`).toBe(i)
      expect(histogramBin(step(edge, 1)), `above edge ${i}`).toBe(i + 1)
    })
  })

  it('counts like searchsorted (left) against a linear scan of the edges', () => {
    const random = seededRandom(8, 0)
    const values = Float32Array.from({ length: 20000 }, () => random() * 30 - 12.5)
    const moments = new NeuronMoments(1)
    moments.add(values, values.length)
    const expected = new Float64Array(HISTOGRAM_BINS)
    for (const x of values) expected[HISTOGRAM_EDGES.filter((edge) => edge < x).length]++
    expect(Array.from(moments.histogram(0))).toEqual(Array.from(expected))
  })

  it('binnedMoments reproduces exact moments when every value sits on an interior bin centre', () => {
    const e = HISTOGRAM_EDGES
    const centres = [10, 50, 100, 102, 103, 180, 250].map((i) => (e[i - 1] + e[i]) / 2)
    const moments = new NeuronMoments(1)
    moments.add(Float32Array.from(centres), centres.length)
    const binned = binnedMoments(moments.state().histogram, 1)
    const ref = direct(Array.from(Float32Array.from(centres)))
    expectRelative(binned.mean[0], ref.mean, 1e-6)
    expectRelative(binned.variance[0], ref.variance, 1e-6)
    expectRelative(binned.skew[0], ref.skew, 1e-5)
    expectRelative(binned.kurtosis[0], ref.kurtosis, 1e-5)
    // The study's "sparsity" counts bins from the first edge ≥ 0 (edge 102 = 0) on: bin 102 is (−0.098, 0], so
    // its negative centre counts as active, unlike the exact frequency (x > 0).
    expect(binned.frequency[0]).toBe(4 / 7)
    expect(moments.summary().frequency[0]).toBe(3 / 7)
  })
})
