import { describe, expect, it } from 'vitest'
import { universality } from './universality.js'

const f = (...values: number[]) => Float64Array.from(values)

describe('universality', () => {
  // Four neurons, three other seeds. Values are dyadic, so the expected aggregates are exact.
  const seeds = [
    { maxCorr: f(0.875, 0.5, NaN, 0.75), baseline: f(0.125, 0.25, NaN, 0.25) },
    { maxCorr: f(0.75, 0.5, NaN, 0.75), baseline: f(0.25, 0.25, NaN, 0.25) },
    { maxCorr: f(0.625, 0.25, NaN, 0.75), baseline: f(0.125, 0.25, NaN, 0.25) },
  ]

  it('aggregates max, mean and min over seeds and flags excess_corr > 0.5', () => {
    const u = universality(seeds)
    expect(Array.from(u.maxCorr.subarray(0, 2))).toEqual([0.875, 0.5])
    expect(Array.from(u.minCorr.subarray(0, 2))).toEqual([0.625, 0.25])
    expect(u.meanCorr[0]).toBe(0.75)
    expect(u.meanBaseline[0]).toBeCloseTo(1 / 6, 15)
    expect(u.excessCorr[0]).toBeCloseTo(0.75 - 1 / 6, 15)
    expect(u.isUniversal[0]).toBe(1)
    expect(u.isUniversal[1]).toBe(0)
    // Neuron 3: excess exactly 0.5 is not universal (strictly greater, as the study's notebook).
    expect(u.excessCorr[3]).toBe(0.5)
    expect(u.isUniversal[3]).toBe(0)
    expect(u.counts).toEqual({ neurons: 4, universal: 1, undefined: 1 })
  })

  it('gives a dead neuron NaN everywhere and is_universal false', () => {
    const u = universality(seeds)
    for (const column of [u.maxCorr, u.meanCorr, u.minCorr, u.meanBaseline, u.excessCorr]) expect(column[2]).toBeNaN()
    expect(u.isUniversal[2]).toBe(0)
  })

  it('does not average over only the finite seeds', () => {
    const u = universality([{ maxCorr: f(0.9), baseline: f(0.1) }, { maxCorr: f(NaN), baseline: f(0.1) }])
    expect(u.meanCorr[0]).toBeNaN()
    expect(u.counts.undefined).toBe(1)
  })

  it('takes the threshold from the options', () => {
    expect(universality(seeds, { threshold: 0.125 }).counts.universal).toBe(3)  // neuron 1: excess 5/12 − 1/4 = 1/6
  })

  it('rejects mismatched lengths and an empty seed list', () => {
    expect(() => universality([])).toThrow(/at least one other seed/)
    expect(() => universality([seeds[0], { maxCorr: f(1), baseline: f(1) }]))
      .toThrow(/seed 1 has 1 max_corr and 1 baseline values, expected 4/)
  })
})
