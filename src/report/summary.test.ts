import { describe, expect, it } from 'vitest'
import { medianBaseline } from './summary.js'

describe('medianBaseline', () => {
  it('is the median of exact baselines, dead neurons (NaN) left out', () => {
    const rows = [0.3, 0.1, NaN, 0.2, 0.5, 0.4].map((b) => ({ mean_baseline: b }))
    expect(medianBaseline(rows)).toBe('0.300')
  })

  it('encloses the true median where the screened mode only bounded some baselines', () => {
    // True baselines 0.1, 0.2, 0.3 known only within ±0.05 (NaN in mean_baseline, as screened tables hold them),
    // 0.6 and 0.7 exactly. The true median is 0.3; the exact ones alone would say 0.7.
    const bounded = [0.1, 0.2, 0.3].map((b) => ({ mean_baseline: NaN, mean_baseline_lo: b - 0.05, mean_baseline_hi: b + 0.05 }))
    const exact = [0.6, 0.7].map((b) => ({ mean_baseline: b, mean_baseline_lo: b, mean_baseline_hi: b }))
    expect(medianBaseline([...bounded, ...exact])).toBe('0.250–0.350')
  })
})
