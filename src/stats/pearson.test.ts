import { describe, expect, it } from 'vitest'
import type { Gemm } from './gemm.js'
import { toNeuronMajor } from './layout.js'
import { PairMaxima, splitNeuronIndex } from './maxima.js'
import { PearsonAccumulator, type PearsonState } from './pearson.js'
import { gaussianMatrix, seededRandom } from './random.js'
import { referencePearson } from '../../test/helpers/pearson-reference.js'

const bruteForce = referencePearson

function row(x: Float32Array, i: number, tokens: number): Float32Array {
  return x.subarray(i * tokens, (i + 1) * tokens)
}

function bruteForceMatrix(a: Float32Array, na: number, b: Float32Array, nb: number, tokens: number): Float64Array {
  const out = new Float64Array(na * nb)
  for (let i = 0; i < na; i++) {
    for (let j = 0; j < nb; j++) out[i * nb + j] = bruteForce(row(a, i, tokens), row(b, j, tokens))
  }
  return out
}

/**
 * Planted structure: a few latent signals z; neuron i of a model reads latent (i·7 mod L) with its own strength
 * ρ, mean and scale: a_i = μ_i + σ_i (ρ_i z + √(1−ρ_i²) ε). Returns neuron-major [neurons, tokens].
 */
function plantedModel(
  latents: Float64Array, nLatent: number, neurons: number, tokens: number, seed: number,
): Float32Array {
  const noise = gaussianMatrix(neurons, tokens, seededRandom(seed, 1))
  const out = new Float32Array(neurons * tokens)
  for (let i = 0; i < neurons; i++) {
    const z = (i * 7) % nLatent, rho = 0.35 + 0.6 * (((i * 5 + seed) % 11) / 11)
    const mu = (i % 3) * 4 - 2, sigma = 0.5 + (i % 4), rest = Math.sqrt(1 - rho * rho)
    for (let t = 0; t < tokens; t++) {
      out[i * tokens + t] = mu + sigma * (rho * latents[z * tokens + t] + rest * noise[i * tokens + t])
    }
  }
  return out
}

function accumulate(
  acc: PearsonAccumulator, a: Float32Array, b: Float32Array, tokens: number, chunkSizes: number[],
): void {
  const na = acc.a.count, nb = acc.b.count
  let t0 = 0
  for (const size of chunkSizes) {
    const t1 = Math.min(tokens, t0 + size)
    // Slice each neuron's row to the chunk's tokens: [neurons, t1 − t0].
    const slice = (x: Float32Array, start: number, count: number) => {
      const out = new Float32Array(count * (t1 - t0))
      for (let i = 0; i < count; i++) out.set(x.subarray((start + i) * tokens + t0, (start + i) * tokens + t1), i * (t1 - t0))
      return out
    }
    acc.add(slice(a, acc.a.start, na), slice(b, acc.b.start, nb), t1 - t0)
    t0 = t1
  }
}

const D_MLP = 5
const NA = 2 * D_MLP, NB = 3 * D_MLP, TOKENS = 3000, CHUNKS = [1000, 7, 993, 1000]
const latents = gaussianMatrix(6, TOKENS, seededRandom(10, 0))
const A = plantedModel(latents, 6, NA, TOKENS, 1)
const B = plantedModel(latents, 6, NB, TOKENS, 2)
const REF = bruteForceMatrix(A, NA, B, NB, TOKENS)

function fullAccumulator(a = A, b = B): PearsonAccumulator {
  const acc = new PearsonAccumulator({ a: { start: 0, count: NA }, b: { start: 0, count: NB } })
  accumulate(acc, a, b, TOKENS, CHUNKS)
  return acc
}

function maxAbsDifference(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let worst = 0
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]) !== Number.isNaN(y[i])) return Infinity
    if (!Number.isNaN(x[i])) worst = Math.max(worst, Math.abs(x[i] - y[i]))
  }
  return worst
}

describe('PearsonAccumulator', () => {
  it('matches brute-force float64 correlation on planted pairs', () => {
    const acc = fullAccumulator()
    expect(acc.n).toBe(TOKENS)
    expect(maxAbsDifference(acc.correlation(), REF)).toBeLessThan(1e-6)
  })

  it('recovers every argmax exactly, both directions', () => {
    const maxima = new PairMaxima(NA, NB)
    maxima.add(fullAccumulator())
    for (let i = 0; i < NA; i++) {
      const r = Array.from(REF.subarray(i * NB, (i + 1) * NB))
      const best = r.indexOf(Math.max(...r))
      const runnerUp = Math.max(...r.filter((_, j) => j !== best))
      expect(r[best] - runnerUp).toBeGreaterThan(1e-4)  // the planted match is unambiguous
      expect(maxima.rows.index[i]).toBe(best)
      expect(Math.abs(maxima.rows.value[i] - r[best])).toBeLessThan(1e-6)
    }
    for (let j = 0; j < NB; j++) {
      const r = Array.from({ length: NA }, (_, i) => REF[i * NB + j])
      const best = r.indexOf(Math.max(...r))
      expect(maxima.cols.index[j]).toBe(best)
      expect(Math.abs(maxima.cols.value[j] - r[best])).toBeLessThan(1e-6)
    }
    expect(splitNeuronIndex(12, D_MLP)).toEqual({ layer: 2, neuron: 2 })  // neuron 2.2 of B
  })

  it('gives the same blocks and maxima when blocked as when not', () => {
    const full = fullAccumulator()
    const r = full.correlation()
    const whole = new PairMaxima(NA, NB)
    whole.add(full)
    const blocked = new PairMaxima(NA, NB)
    for (const a of [{ start: 0, count: 4 }, { start: 4, count: 6 }]) {
      for (const b of [{ start: 0, count: 7 }, { start: 7, count: 1 }, { start: 8, count: 7 }]) {
        const acc = new PearsonAccumulator({ a, b })
        accumulate(acc, A, B, TOKENS, CHUNKS)
        const block = acc.correlation()
        for (let i = 0; i < a.count; i++) {
          const expected = r.subarray((a.start + i) * NB + b.start, (a.start + i) * NB + b.start + b.count)
          expect(maxAbsDifference(block.subarray(i * b.count, (i + 1) * b.count), expected)).toBeLessThan(1e-12)
        }
        const part = new PairMaxima(NA, NB)
        part.add(acc)
        blocked.merge(part)
      }
    }
    expect(blocked.rows.index).toEqual(whole.rows.index)
    expect(blocked.cols.index).toEqual(whole.cols.index)
    expect(maxAbsDifference(blocked.rows.value, whole.rows.value)).toBeLessThan(1e-12)
    expect(maxAbsDifference(blocked.cols.value, whole.cols.value)).toBeLessThan(1e-12)
  })

  it('is symmetric: the pair (B, A) gives the transpose, rows and columns swapped', () => {
    const ab = fullAccumulator()
    const ba = new PearsonAccumulator({ a: { start: 0, count: NB }, b: { start: 0, count: NA } })
    accumulate(ba, B, A, TOKENS, CHUNKS)
    const rab = ab.correlation(), rba = ba.correlation()
    for (let i = 0; i < NA; i++) {
      for (let j = 0; j < NB; j++) expect(Math.abs(rab[i * NB + j] - rba[j * NA + i])).toBeLessThan(1e-12)
    }
    const mab = new PairMaxima(NA, NB), mba = new PairMaxima(NB, NA)
    mab.add(ab)
    mba.add(ba)
    expect(mba.rows.index).toEqual(mab.cols.index)
    expect(mba.cols.index).toEqual(mab.rows.index)
  })

  it('merges shards with different shifts exactly into the single-pass result, through a serialised state', () => {
    // Integer activations, and 8-token first chunks so each shift (a first-chunk mean) is a multiple of 1/8:
    // every float32 value and chunk product is then exact, and any difference would be the merge algebra's.
    const a = A.map(Math.round), b = B.map(Math.round)
    const sizes = (tokens: number) => [8, ...Array.from({ length: Math.ceil(tokens / 64) }, () => 64)]
    const single = new PearsonAccumulator({ a: { start: 0, count: NA }, b: { start: 0, count: NB } })
    accumulate(single, a, b, TOKENS, sizes(TOKENS))
    const merged = new PearsonAccumulator({ a: { start: 0, count: NA }, b: { start: 0, count: NB } })
    for (const [t0, t1] of [[0, 1200], [1200, 1208], [1208, 3000]]) {
      const slice = (x: Float32Array, n: number) => {
        const out = new Float32Array(n * (t1 - t0))
        for (let i = 0; i < n; i++) out.set(x.subarray(i * TOKENS + t0, i * TOKENS + t1), i * (t1 - t0))
        return out
      }
      const shard = new PearsonAccumulator({ a: { start: 0, count: NA }, b: { start: 0, count: NB } })
      accumulate(shard, slice(a, NA), slice(b, NB), t1 - t0, sizes(t1 - t0))
      merged.merge(structuredClone(shard.state()) as PearsonState)
    }
    expect(merged.n).toBe(TOKENS)
    expect(maxAbsDifference(merged.correlation(), single.correlation())).toBeLessThan(1e-13)
    expect(maxAbsDifference(merged.correlation(), bruteForceMatrix(a, NA, b, NB, TOKENS))).toBeLessThan(1e-13)
    expect(maxAbsDifference(PearsonAccumulator.fromState(merged.state()).correlation(), merged.correlation())).toBe(0)
  })

  it('marks dead (zero-variance) neurons NaN, counts them, and keeps them out of the maxima', () => {
    const a = A.slice(), b = B.slice()
    row(a, 3, TOKENS).fill(5.25)  // constant: a dead neuron with a non-zero value
    row(b, 7, TOKENS).fill(0)
    const acc = fullAccumulator(a, b)
    expect(acc.deadCounts()).toEqual({ a: 1, b: 1 })
    const r = acc.correlation()
    for (let j = 0; j < NB; j++) expect(r[3 * NB + j]).toBeNaN()
    for (let i = 0; i < NA; i++) expect(r[i * NB + 7]).toBeNaN()
    expect(maxAbsDifference(r, bruteForceMatrix(a, NA, b, NB, TOKENS))).toBeLessThan(1e-6)
    const maxima = new PairMaxima(NA, NB)
    maxima.add(acc)
    expect(maxima.rows.value[3]).toBeNaN()
    expect(maxima.rows.index[3]).toBe(-1)
    expect(maxima.cols.index[7]).toBe(-1)
    for (let i = 0; i < NA; i++) if (i !== 3) expect(maxima.rows.index[i]).not.toBe(7)
    expect(Number.isNaN(maxima.rows.value[0])).toBe(false)
  })

  it('rejects a non-finite activation, naming it, and leaves the accumulator unchanged', () => {
    const acc = new PearsonAccumulator({ a: { start: 10, count: 2 }, b: { start: 0, count: 1 } })
    acc.add(Float32Array.from([1, 2, 3, 4]), Float32Array.from([1, 3]), 2)
    const before = acc.state()
    expect(() => acc.add(Float32Array.from([1, 2, NaN, 4]), Float32Array.from([1, 3]), 2))
      .toThrow('pearson: non-finite activation NaN for neuron 11 of A at token 0 of the chunk')
    expect(acc.state()).toEqual(before)
    expect(() => acc.add(new Float32Array(3), new Float32Array(2), 2)).toThrow('pearson: chunk a holds 3 values, which does not match [2, 2]')
  })
})

describe('numerical stability', () => {
  // A float32 GEMM that accumulates naively in float32 (worse than a blocked FMA sgemm), for contrast with the
  // fallback, which sums each chunk in float64 and rounds the chunk product to float32 once.
  const naiveFloat32: Gemm = (a, b, m, n, k, out) => {
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0
        for (let p = 0; p < k; p++) s = Math.fround(s + Math.fround(a[i * k + p] * b[j * k + p]))
        out[i * n + j] = s
      }
    }
  }
  const tokens = 1_000_000, n = 3
  const z = gaussianMatrix(2, tokens, seededRandom(20, 0))
  const a = new Float32Array(n * tokens), b = new Float32Array(n * tokens)
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < n; i++) {
      a[i * tokens + t] = 1e4 + i + 1e-2 * (z[t] * (1 - 0.3 * i) + 0.3 * i * z[tokens + t])
      b[i * tokens + t] = -1e4 + 1e-2 * (z[tokens + t] * (0.2 + 0.3 * i) + z[t] * (1 - 0.3 * i))
    }
  }
  const reference = bruteForceMatrix(a, n, b, n, tokens)  // on the same float32 values
  const run = (gemm?: Gemm, shift?: Float64Array) => {
    const range = { start: 0, count: n }
    const acc = new PearsonAccumulator({ a: range, b: range, gemm, shiftA: shift, shiftB: shift })
    accumulate(acc, a, b, tokens, Array.from({ length: Math.ceil(tokens / 12288) }, () => 12288))
    return acc.correlation()
  }

  it('keeps r accurate to 1e-6 for mean 1e4, std 1e-2 over 1e6 tokens (chunks of 24×512)', () => {
    expect(maxAbsDifference(run(), reference)).toBeLessThan(1e-6)
  })

  it('needs the shift when the chunk GEMM sums in float32', () => {
    // Shifted, a naive float32 GEMM is limited only by its own summation (≈3e-6 here); unshifted it is useless.
    expect(maxAbsDifference(run(naiveFloat32), reference)).toBeLessThan(1e-5)
    expect(maxAbsDifference(run(naiveFloat32, new Float64Array(n)), reference)).toBeGreaterThan(1e-2)
  })
})

describe('toNeuronMajor', () => {
  it('transposes [tokens, width] to [width, valid tokens], dropping invalid positions', () => {
    const tokens = 150, width = 70
    const chunk = Float32Array.from({ length: tokens * width }, (_, i) => i)
    const valid = Uint8Array.from({ length: tokens }, (_, t) => (t % 3 === 0 ? 0 : 1))
    const { values, tokens: kept } = toNeuronMajor(chunk, tokens, valid)
    const keptTokens = Array.from({ length: tokens }, (_, t) => t).filter((t) => valid[t])
    expect(kept).toBe(keptTokens.length)
    for (let j = 0; j < width; j++) keptTokens.forEach((t, q) => expect(values[j * kept + q]).toBe(chunk[t * width + j]))
  })
})
