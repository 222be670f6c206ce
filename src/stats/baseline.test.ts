import { describe, expect, it } from 'vitest'
import { BaselineMaxima, RotatedLayers, WithinLayerMoments } from './baseline.js'
import { gemmFallback } from './gemm.js'
import { PearsonAccumulator, type NeuronRange } from './pearson.js'
import { gaussianMatrix, seededRandom } from './random.js'
import { rotationMatrix, type RotationKind } from './rotation.js'
import { referencePearson } from '../../test/helpers/pearson-reference.js'

const D = 6, LA = 2, LB = 3, TOKENS = 1500, SEED_A = 11, SEED_B = 12

// Integer activations with shared latent structure: with zero shifts every float32 sum is exact, so the test
// isolates the baseline formula from the rounding of the accumulation.
function integerModel(neurons: number, seed: number, latents: Float64Array): Float32Array {
  const noise = gaussianMatrix(neurons, TOKENS, seededRandom(seed, 1))
  return Float32Array.from({ length: neurons * TOKENS }, (_, q) => {
    const i = Math.floor(q / TOKENS), t = q % TOKENS
    return Math.round(2 * latents[(i % 4) * TOKENS + t] * (0.3 + (i % 5) / 6) + 1.5 * noise[q] + (i % 3))
  })
}
const latents = gaussianMatrix(4, TOKENS, seededRandom(13, 0))
const A = integerModel(LA * D, 1, latents)
const B = integerModel(LB * D, 2, latents)

function rowsOf(x: Float32Array, range: NeuronRange): Float32Array {
  return x.subarray(range.start * TOKENS, (range.start + range.count) * TOKENS)
}

function pearson(a: Float32Array, b: Float32Array, range: { a: NeuronRange; b: NeuronRange }): PearsonAccumulator {
  const shiftA = new Float64Array(range.a.count), shiftB = new Float64Array(range.b.count)
  const acc = new PearsonAccumulator({ ...range, shiftA, shiftB })
  for (let t0 = 0; t0 < TOKENS; t0 += 500) {  // three chunks, neuron-major
    const slice = (x: Float32Array, r: NeuronRange) => {
      const out = new Float32Array(r.count * 500)
      for (let i = 0; i < r.count; i++) {
        const from = (r.start + i) * TOKENS + t0
        out.set(x.subarray(from, from + 500), i * 500)
      }
      return out
    }
    acc.add(slice(a, range.a), slice(b, range.b), 500)
  }
  return acc
}

function within(x: Float32Array, nLayers: number): WithinLayerMoments {
  const moments = new WithinLayerMoments({ dMlp: D, nLayers, shift: new Float64Array(nLayers * D) })
  moments.add(x, TOKENS)
  return moments
}

const correlation = referencePearson

/** The explicit baseline: rotate the other model's activations token by token, then brute-force Pearson. */
function explicitBaseline(
  anchors: Float32Array, nAnchors: number, other: Float32Array, nLayers: number, kind: RotationKind, seed: number,
) {
  const layerValue = new Float64Array(nAnchors * nLayers).fill(-Infinity)
  for (let l = 0; l < nLayers; l++) {
    const r = rotationMatrix(D, kind, seed, l)
    for (let k = 0; k < D; k++) {
      const rotated = new Float64Array(TOKENS)
      for (let t = 0; t < TOKENS; t++) {
        let v = 0
        for (let j = 0; j < D; j++) v += r[k * D + j] * other[(l * D + j) * TOKENS + t]
        rotated[t] = v
      }
      for (let i = 0; i < nAnchors; i++) {
        const c = correlation(anchors.subarray(i * TOKENS, (i + 1) * TOKENS), rotated)
        layerValue[i * nLayers + l] = Math.max(layerValue[i * nLayers + l], c)
      }
    }
  }
  const value = Float64Array.from({ length: nAnchors }, (_, i) => {
    return Math.max(...layerValue.subarray(i * nLayers, (i + 1) * nLayers))
  })
  return { value, layerValue }
}

function expectRelative(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number): void {
  expect(actual.length).toBe(expected.length)
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i])
    expect(error, `entry ${i}: ${actual[i]} vs ${expected[i]}`).toBeLessThanOrEqual(tolerance * Math.abs(expected[i]))
  }
}

const FULL = { a: { start: 0, count: LA * D }, b: { start: 0, count: LB * D } }

describe.each<RotationKind>(['gaussian-unit-rows', 'orthogonal'])('rotation baseline (%s)', (kind) => {
  const rotatedA = new RotatedLayers(within(A, LA), { kind, seed: SEED_A })
  const rotatedB = new RotatedLayers(within(B, LB), { kind, seed: SEED_B })

  it('rows: matches explicitly rotated activations of B to 1e-9 relative', () => {
    const baseline = new BaselineMaxima(LA * D, LB)
    baseline.addRows(pearson(A, B, FULL), rotatedB)
    const expected = explicitBaseline(A, LA * D, B, LB, kind, SEED_B)
    expectRelative(baseline.layerValue, expected.layerValue, 1e-9)
    expectRelative(baseline.value, expected.value, 1e-9)
  })

  it('columns: matches explicitly rotated activations of A to 1e-9 relative', () => {
    const baseline = new BaselineMaxima(LB * D, LA)
    baseline.addColumns(pearson(A, B, FULL), rotatedA)
    const expected = explicitBaseline(B, LB * D, A, LA, kind, SEED_A)
    expectRelative(baseline.layerValue, expected.layerValue, 1e-9)
    expectRelative(baseline.value, expected.value, 1e-9)
  })

  it('with float32 products (the fast GEMM path) matches the explicit rotation to 1e-5 relative', () => {
    const fast = new RotatedLayers(within(B, LB), { kind, seed: SEED_B, gemm: gemmFallback })
    const baseline = new BaselineMaxima(LA * D, LB)
    baseline.addRows(pearson(A, B, FULL), fast)
    const expected = explicitBaseline(A, LA * D, B, LB, kind, SEED_B)
    expectRelative(baseline.value, expected.value, 1e-5)
  })

  it('streams over layer blocks to the same result', () => {
    const rows = new BaselineMaxima(LA * D, LB), cols = new BaselineMaxima(LB * D, LA)
    for (const a of [{ start: 0, count: D }, { start: D, count: D }]) {
      for (const b of [{ start: 0, count: D }, { start: D, count: 2 * D }]) {
        const acc = pearson(A, B, { a, b })
        const part = new BaselineMaxima(LA * D, LB)
        part.addRows(acc, rotatedB)
        rows.merge(part)
        cols.addColumns(acc, rotatedA)
      }
    }
    const whole = pearson(A, B, FULL)
    const rowsWhole = new BaselineMaxima(LA * D, LB), colsWhole = new BaselineMaxima(LB * D, LA)
    rowsWhole.addRows(whole, rotatedB)
    colsWhole.addColumns(whole, rotatedA)
    expectRelative(rows.layerValue, rowsWhole.layerValue, 1e-12)
    expectRelative(cols.layerValue, colsWhole.layerValue, 1e-12)
  })
})

describe('rotation baseline, edges', () => {
  it('agrees with the exact baseline on float data with the default first-chunk shifts', () => {
    const a = A.map((x, q) => x + 0.37 * Math.sin(q)), b = B.map((x, q) => 100 + x * 0.5 + 0.21 * Math.cos(q))
    const acc = new PearsonAccumulator(FULL)
    acc.add(a, b, TOKENS)
    const moments = new WithinLayerMoments({ dMlp: D, nLayers: LB })
    moments.add(b, TOKENS)
    const baseline = new BaselineMaxima(LA * D, LB)
    baseline.addRows(acc, new RotatedLayers(moments, { kind: 'gaussian-unit-rows', seed: 5 }))
    expectRelative(baseline.layerValue, explicitBaseline(a, LA * D, b, LB, 'gaussian-unit-rows', 5).layerValue, 1e-6)
  })

  it('gives NaN for a dead anchor and refuses blocks that split a rotated layer or saw other tokens', () => {
    const a = A.slice()
    rowsOf(a, { start: 4, count: 1 }).fill(3)
    const baseline = new BaselineMaxima(LA * D, LB)
    const rotatedB = new RotatedLayers(within(B, LB), { kind: 'gaussian-unit-rows', seed: 1 })
    baseline.addRows(pearson(a, B, FULL), rotatedB)
    expect(baseline.value[4]).toBeNaN()
    expect(baseline.layerValue[4 * LB + 2]).toBeNaN()
    expect(Number.isNaN(baseline.value[5])).toBe(false)
    expect(() => baseline.addRows(pearson(A, B, { a: FULL.a, b: { start: 3, count: 6 } }), rotatedB))
      .toThrow(/not whole layers of d_mlp 6; block the accumulators by layer/)
    const half = new WithinLayerMoments({ dMlp: D, nLayers: LB })
    half.add(B.slice(0, LB * D * 10), 10)
    expect(() => baseline.addRows(pearson(A, B, FULL), new RotatedLayers(half, { kind: 'orthogonal', seed: 1 })))
      .toThrow(/the pair saw 1500 tokens but the rotated model's within-layer moments saw 10/)
  })
})

describe('WithinLayerMoments', () => {
  it('gives the centred scatter Σ(b − b̄)(b − b̄)ᵀ of each layer, also after a shard merge', () => {
    const whole = within(B, LB)
    const merged = new WithinLayerMoments({ dMlp: D, nLayers: LB })
    for (const [t0, t1] of [[0, 700], [700, TOKENS]]) {
      const shard = new WithinLayerMoments({ dMlp: D, nLayers: LB })
      const chunk = new Float32Array(LB * D * (t1 - t0))
      for (let i = 0; i < LB * D; i++) chunk.set(B.subarray(i * TOKENS + t0, i * TOKENS + t1), i * (t1 - t0))
      shard.add(chunk, t1 - t0)
      merged.merge(structuredClone(shard.state()))
    }
    // Zero shifts keep `whole` exact; the shards' first-chunk shifts round the shifted values to float32.
    const b = (j: number) => B.subarray((D + j) * TOKENS, (D + j + 1) * TOKENS)  // neuron j of layer 1
    const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / TOKENS
    const scatter = (j: number, k: number) => {
      const x = b(j), y = b(k), mx = mean(x), my = mean(y)
      let s = 0
      for (let t = 0; t < TOKENS; t++) s += (x[t] - mx) * (y[t] - my)
      return s
    }
    // Zero shifts keep `whole` exact; the shards' first-chunk shifts round the shifted values to float32, an
    // error on the scale of √(C_jj·C_kk).
    for (const [moments, tolerance] of [[whole, 1e-12], [merged, 1e-7]] as const) {
      const c = moments.centredScatter(1)
      for (let j = 0; j < D; j++) {
        for (let k = 0; k < D; k++) {
          const scale = Math.sqrt(scatter(j, j) * scatter(k, k))
          expect(Math.abs(c[j * D + k] - scatter(j, k))).toBeLessThanOrEqual(tolerance * scale)
        }
      }
    }
  })
})

describe('rotationMatrix', () => {
  it('has unit-norm rows (gaussian-unit-rows) and is orthogonal to 1e-12 (orthogonal)', () => {
    const d = 150  // three Gram–Schmidt blocks of 64 rows
    for (const kind of ['gaussian-unit-rows', 'orthogonal'] as const) {
      const r = rotationMatrix(d, kind, 3, 0)
      for (let k = 0; k < d; k++) {
        for (let q = 0; q < d; q++) {
          let dot = 0
          for (let j = 0; j < d; j++) dot += r[k * d + j] * r[q * d + j]
          if (k === q) expect(Math.abs(dot - 1)).toBeLessThan(1e-12)
          else if (kind === 'orthogonal') expect(Math.abs(dot)).toBeLessThan(1e-12)
        }
      }
    }
  })

  it('is deterministic in (seed, layer) and differs between layers and seeds', () => {
    expect(rotationMatrix(8, 'gaussian-unit-rows', 7, 2)).toEqual(rotationMatrix(8, 'gaussian-unit-rows', 7, 2))
    expect(rotationMatrix(8, 'gaussian-unit-rows', 7, 2)).not.toEqual(rotationMatrix(8, 'gaussian-unit-rows', 7, 3))
    expect(rotationMatrix(8, 'gaussian-unit-rows', 7, 2)).not.toEqual(rotationMatrix(8, 'gaussian-unit-rows', 8, 2))
    expect(() => rotationMatrix(8, 'orthogonal', -1, 0)).toThrow(/seed must be an integer in \[0, 2\^32\), got -1/)
  })

  it('draws standard normal entries', () => {
    const g = gaussianMatrix(1, 100001, seededRandom(1, 0))
    const mean = g.reduce((s, x) => s + x, 0) / g.length
    const variance = g.reduce((s, x) => s + (x - mean) ** 2, 0) / g.length
    expect(Math.abs(mean)).toBeLessThan(0.01)
    expect(Math.abs(variance - 1)).toBeLessThan(0.02)
  })
})
