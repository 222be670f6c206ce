import { describe, expect, it } from 'vitest'
import { PairMaxima } from './maxima.js'

describe('PairMaxima', () => {
  // r for 3 neurons of A × 4 of B, split into two column blocks; NaN marks dead neurons.
  const r = [
    [0.5, 0.9, 0.9, NaN],  // tie between B1 and B2: the lower index wins
    [NaN, NaN, NaN, NaN],  // a dead neuron of A
    [0.2, -0.3, 0.9, NaN], // B3 is dead
  ]
  const block = (j0: number, j1: number) => Float64Array.from(r.flatMap((row) => row.slice(j0, j1)))

  it('keeps max and argmax both ways, skips NaN, and breaks ties by the lower global index', () => {
    for (const order of [[[0, 2], [2, 4]], [[2, 4], [0, 2]]]) {
      const maxima = new PairMaxima(3, 4)
      for (const [j0, j1] of order) maxima.addBlock(block(j0, j1), { start: 0, count: 3 }, { start: j0, count: j1 - j0 })
      expect(Array.from(maxima.rows.value)).toEqual([0.9, NaN, 0.9])
      expect(Array.from(maxima.rows.index)).toEqual([1, -1, 2])
      expect(Array.from(maxima.cols.value)).toEqual([0.5, 0.9, 0.9, NaN])
      expect(Array.from(maxima.cols.index)).toEqual([0, 0, 0, -1])  // B2: A0 and A2 tie at 0.9
    }
  })

  it('merges maxima of separate blocks', () => {
    const left = new PairMaxima(3, 4), right = new PairMaxima(3, 4), whole = new PairMaxima(3, 4)
    left.addBlock(block(0, 2), { start: 0, count: 3 }, { start: 0, count: 2 })
    right.addBlock(block(2, 4), { start: 0, count: 3 }, { start: 2, count: 2 })
    whole.addBlock(block(0, 4), { start: 0, count: 3 }, { start: 0, count: 4 })
    right.merge(left)
    expect(right.rows).toEqual(whole.rows)
    expect(right.cols).toEqual(whole.cols)
  })

  it('rejects a block outside the pair or of the wrong size', () => {
    const maxima = new PairMaxima(3, 4)
    expect(() => maxima.addBlock(block(0, 4), { start: 1, count: 3 }, { start: 0, count: 4 })).toThrow(/outside 3×4/)
    expect(() => maxima.addBlock(block(0, 2), { start: 0, count: 3 }, { start: 0, count: 3 })).toThrow(/expected 3×3/)
  })
})
