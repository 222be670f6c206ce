// The screened correlate against brute force in float64 on a planted family: the same maxima, argmaxes and
// flags; baseline intervals that contain the exact baseline and collapse to it where refined; a resume from any
// pass's checkpoint gives the same results.
import { describe, expect, test } from 'vitest'
import { rotatedLayers, rotationSeed } from '../../stages/correlate/pair-sums.js'
import { WithinLayerMoments } from '../baseline.js'
import { gemmFallback } from '../gemm.js'
import { rotationMatrix } from '../rotation.js'
import { universality } from '../universality.js'
import { screenFamily, type ScreenOptions, type ScreenSource, type ScreenState } from './family.js'

const S = 3, L = 2, D = 16, N = L * D
const SHARDS = [300, 250, 350]
const T = SHARDS.reduce((a, b) => a + b, 0)
const NAMES = ['s0', 's1', 's2']

function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (Math.imul(state ^ (state >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0
    return state / 2 ** 32
  }
}

/** Activations [N, T] per seed: shared latent signals (some neurons nearly copy one), noise, large means, a dead neuron. */
function plantedFamily(): Float64Array[] {
  const u = random(7)
  const gauss = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u())
  const latents = Array.from({ length: 8 }, () => Float64Array.from({ length: T }, gauss))
  return NAMES.map((_, s) => {
    const x = new Float64Array(N * T)
    for (let g = 0; g < N; g++) {
      const copies = g % 5 === s ? latents[g % 8] : undefined // a near-copy of one latent: a universal-looking neuron
      const weights = Array.from({ length: 8 }, () => gauss() * 0.4)
      const mean = 100 * gauss(), scale = 0.01 + u()
      for (let t = 0; t < T; t++) {
        let v = copies ? 3 * copies[t] : 0
        for (let f = 0; f < 8; f++) v += weights[f] * latents[f][t]
        x[g * T + t] = mean + scale * (v + 0.3 * gauss())
      }
    }
    if (s === 1) x.fill(4.5, 3 * T, 4 * T) // neuron 3 of seed 1 is dead
    return x
  })
}

const family = plantedFamily()
const f32 = family.map((x) => Float32Array.from(x))

function shardRows(s: number, k: number): Float32Array {
  const start = SHARDS.slice(0, k).reduce((a, b) => a + b, 0), t = SHARDS[k]
  const out = new Float32Array(N * t)
  for (let g = 0; g < N; g++) out.set(f32[s].subarray(g * T + start, g * T + start + t), g * t)
  return out
}

const source: ScreenSource = {
  layouts: NAMES.map(() => ({ nLayers: L, dMlp: D })),
  shardTokens: SHARDS,
  read: async (s, k) => shardRows(s, k),
}

function options(threshold: number, extra: Partial<ScreenOptions> = {}): ScreenOptions {
  const within = NAMES.map((_, s) => {
    const w = new WithinLayerMoments({ dMlp: D, nLayers: L })
    SHARDS.forEach((t, k) => w.add(shardRows(s, k), t))
    return w
  })
  return {
    directions: 3, basis: 8, threshold, gemm: gemmFallback, memoryBytes: 1 << 26,
    within, rotated: within.map((w, s) => rotatedLayers(w, 'gaussian-unit-rows', 0, NAMES[s], gemmFallback)),
    ...extra,
  }
}

// ── brute force, float64 over the float32 values the pipeline stores ──
const centred = f32.map((x) => {
  const c = new Float64Array(N * T)
  for (let g = 0; g < N; g++) {
    let mean = 0
    for (let t = 0; t < T; t++) mean += x[g * T + t]
    mean /= T
    for (let t = 0; t < T; t++) c[g * T + t] = x[g * T + t] - mean
  }
  return c
})
const norm = (c: Float64Array, g: number) => Math.sqrt(dot(c, g, c, g))
function dot(x: Float64Array, i: number, y: Float64Array, j: number): number {
  let sum = 0
  for (let t = 0; t < T; t++) sum += x[i * T + t] * y[j * T + t]
  return sum
}
function corr(a: number, i: number, b: number, j: number): number {
  const na = norm(centred[a], i), nb = norm(centred[b], j)
  return na > 0 && nb > 0 ? dot(centred[a], i, centred[b], j) / (na * nb) : NaN
}
function bruteMax(a: number, b: number): { value: number[]; index: number[] } {
  const value: number[] = [], index: number[] = []
  for (let i = 0; i < N; i++) {
    let best = NaN, at = -1
    for (let j = 0; j < N; j++) {
      const r = corr(a, i, b, j)
      if (r === r && !(r <= best)) [best, at] = [r, j]
    }
    value.push(best)
    index.push(at)
  }
  return { value, index }
}
function bruteBaseline(a: number, b: number): number[] {
  const out: number[] = new Array(N).fill(NaN)
  for (let m = 0; m < L; m++) {
    const r = rotationMatrix(D, 'gaussian-unit-rows', rotationSeed(0, NAMES[b]), m)
    const rotated = new Float64Array(D * T)
    for (let k = 0; k < D; k++) for (let j = 0; j < D; j++) for (let t = 0; t < T; t++) rotated[k * T + t] += r[k * D + j] * centred[b][(m * D + j) * T + t]
    for (let i = 0; i < N; i++) {
      const na = norm(centred[a], i)
      if (!(na > 0)) continue
      for (let k = 0; k < D; k++) {
        const v = dot(centred[a], i, rotated, k) / (na * norm(rotated, k))
        if (!(v <= out[i])) out[i] = v
      }
    }
  }
  return out
}
const pairs = [[0, 1], [0, 2], [1, 2]]
const maxima = new Map(pairs.flatMap(([a, b]) => [[`${a}:${b}`, bruteMax(a, b)], [`${b}:${a}`, bruteMax(b, a)]]))
const baselines = new Map(pairs.flatMap(([a, b]) => [[`${a}:${b}`, bruteBaseline(a, b)], [`${b}:${a}`, bruteBaseline(b, a)]]))
function bruteFlags(a: number, threshold: number): Uint8Array {
  const others = NAMES.map((_, b) => b).filter((b) => b !== a)
  return universality(others.map((b) => ({ maxCorr: Float64Array.from(maxima.get(`${a}:${b}`)!.value), baseline: Float64Array.from(baselines.get(`${a}:${b}`)!) })), { threshold }).isUniversal
}
/** A threshold among the excess values, so that some flags sit right at it and must be refined. */
const excess = universality([1, 2].map((b) => ({ maxCorr: Float64Array.from(maxima.get(`0:${b}`)!.value), baseline: Float64Array.from(baselines.get(`0:${b}`)!) })), {}).excessCorr
const THRESHOLD = [...excess].filter((v) => v === v).sort((p, q) => p - q)[Math.floor(N / 2)] - 1e-3

describe('screened correlate', () => {
  test('has the brute force maxima, argmaxes and flags; baseline intervals hold it, exactly where refined', async () => {
    const { pairs: screened, report } = await screenFamily(source, options(THRESHOLD))
    expect(report.undecided).toBeGreaterThan(0) // the threshold forces refinement
    expect(report.candidatesPerNeuron).toBeLessThan(N / 4) // the bounds prune most partners
    for (const p of screened) {
      for (const [anchor, other, side, base] of [[p.a, p.b, p.rows, p.baselineA], [p.b, p.a, p.cols, p.baselineB]] as const) {
        const brute = maxima.get(`${anchor}:${other}`)!
        const exact = baselines.get(`${anchor}:${other}`)!
        for (let i = 0; i < N; i++) {
          if (brute.value[i] !== brute.value[i]) {
            expect(side.value[i]).toBeNaN()
            expect(side.index[i]).toBe(-1)
            continue
          }
          expect(side.value[i]).toBeCloseTo(brute.value[i], 5)
          expect(side.index[i]).toBe(brute.index[i])
          expect(base.lo[i]).toBeLessThanOrEqual(exact[i] + 1e-6)
          expect(base.hi[i]).toBeGreaterThanOrEqual(exact[i] - 1e-6)
          if (base.lo[i] === base.hi[i]) expect(base.lo[i]).toBeCloseTo(exact[i], 5)
        }
      }
    }
    for (let a = 0; a < S; a++) {
      const others = NAMES.map((_, b) => b).filter((b) => b !== a)
      const seeds = others.map((b) => {
        const p = screened.find((x) => (x.a === a && x.b === b) || (x.a === b && x.b === a))!
        return p.a === a ? { maxCorr: p.rows.value, baseline: p.baselineA.hi } : { maxCorr: p.cols.value, baseline: p.baselineB.hi }
      })
      expect(universality(seeds, { threshold: THRESHOLD }).isUniversal).toEqual(bruteFlags(a, THRESHOLD))
    }
  })

  test('resumes from any checkpoint, between passes or within one, with the same results', async () => {
    const states: ScreenState[] = []
    const save = (s: ScreenState) => states.push(structuredClone(s))
    // A checkpoint after every shard: within each pass too (the first token budget is always reached).
    const full = await screenFamily(source, options(THRESHOLD, { checkpoint: save, checkpointEvery: { tokens: 1, minutes: 60 } }))
    const passes = states.filter((s) => !s.inPass).length
    const within = new Set(states.filter((s) => s.inPass).map((s) => s.inPass!.pass))
    expect(passes).toBeGreaterThanOrEqual(5) // gram, projections, candidates, dots, a refinement round
    expect([...within]).toEqual(expect.arrayContaining(['projections', 'dots', 'refinement round 1']))
    for (const resume of states) {
      const again = await screenFamily(source, options(THRESHOLD, { resume: structuredClone(resume) }))
      expect(again.pairs).toEqual(full.pairs)
      expect(again.report).toEqual(full.report)
    }
  })
})
