import { describe, expect, it } from 'vitest'
import { gaussianMatrix, seededRandom } from './random.js'
import { VarianceReduction, varianceReduction, type VarianceReductionState } from './variance-reduction.js'

// Reference: the definition, with population variances of the whole and of each group (two-pass).
function direct(a: number[], f: boolean[]): number {
  const variance = (x: number[]) => {
    const m = x.reduce((s, v) => s + v, 0) / x.length
    return x.reduce((s, v) => s + (v - m) ** 2, 0) / x.length
  }
  const inF = a.filter((_, t) => f[t]), outF = a.filter((_, t) => !f[t])
  const p = inF.length / a.length
  return (variance(a) - (p * variance(inF) + (1 - p) * variance(outF))) / variance(a)
}

const NEURONS = 3, FEATURES = 4, TOKENS = 2000
const random = seededRandom(3, 0)
const RATES = [0.5, 0.1, 0.02, 0.3]
const FEATURE = Uint8Array.from({ length: FEATURES * TOKENS }, (_, q) => (random() < RATES[Math.floor(q / TOKENS)] ? 1 : 0))
const NOISE = gaussianMatrix(NEURONS, TOKENS, seededRandom(4, 0))
// Neuron i responds to feature i (strength 3, 1, 0.2), on a large mean.
const ACTS = Float32Array.from({ length: NEURONS * TOKENS }, (_, q) => {
  const i = Math.floor(q / TOKENS), t = q % TOKENS
  return 1000 + [3, 1, 0.2][i] * FEATURE[i * TOKENS + t] + NOISE[q]
})

function slice(x: Float32Array | Uint8Array, rows: number, t0: number, t1: number) {
  const out = new (x.constructor as new (n: number) => typeof x)(rows * (t1 - t0))
  for (let i = 0; i < rows; i++) out.set(x.subarray(i * TOKENS + t0, i * TOKENS + t1), i * (t1 - t0))
  return out
}

describe('VarianceReduction', () => {
  it('matches the definition, streamed over chunks and merged across shards', () => {
    const merged = new VarianceReduction(NEURONS, FEATURES)
    for (const [t0, t1] of [[0, 900], [900, 901], [901, TOKENS]]) {
      const shard = new VarianceReduction(NEURONS, FEATURES)
      for (let c0 = t0; c0 < t1; c0 += 256) {
        const c1 = Math.min(t1, c0 + 256)
        shard.add(slice(ACTS, NEURONS, c0, c1) as Float32Array, slice(FEATURE, FEATURES, c0, c1) as Uint8Array, c1 - c0)
      }
      merged.merge(structuredClone(shard.state()) as VarianceReductionState)
    }
    const vr = merged.result()
    for (let i = 0; i < NEURONS; i++) {
      const a = Array.from(ACTS.subarray(i * TOKENS, (i + 1) * TOKENS))
      for (let f = 0; f < FEATURES; f++) {
        const feature = Array.from(FEATURE.subarray(f * TOKENS, (f + 1) * TOKENS), Boolean)
        expect(Math.abs(vr[i * FEATURES + f] - direct(a, feature))).toBeLessThan(1e-10)
      }
    }
    expect(vr[0]).toBeGreaterThan(0.6)  // neuron 0 is mostly explained by feature 0
  })

  it('is 1 for a neuron that is a function of the feature; NaN for degenerate features or dead neurons', () => {
    // [2 features, 6 tokens], the second always present; [2 neurons, 6 tokens], the second constant.
    const feature = Uint8Array.from([1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1])
    const acts = Float32Array.from([5, 2, 5, 5, 2, 2, 7, 7, 7, 7, 7, 7])
    const vr = new VarianceReduction(2, 2)
    vr.add(acts, feature, 6)
    const out = vr.result()
    expect(out[0]).toBeCloseTo(1, 12)
    expect(out[1]).toBeNaN()
    expect(out[2]).toBeNaN()
    expect(out[3]).toBeNaN()
    expect(varianceReduction(4, 10, 30, 0, 0)).toBeNaN()
  })

  it('rejects non-finite activations and mismatched shapes', () => {
    const vr = new VarianceReduction(1, 1)
    expect(() => vr.add(Float32Array.from([1, NaN]), Uint8Array.from([1, 0]), 2))
      .toThrow(/non-finite activation NaN for neuron 0 at token 1/)
    expect(() => vr.add(Float32Array.from([1, 2]), Uint8Array.from([1]), 2)).toThrow(/do not match/)
  })
})
