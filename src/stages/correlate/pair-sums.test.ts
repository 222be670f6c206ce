import { describe, expect, it } from 'vitest'
import { UserError } from '../../errors.js'
import { layerBlocks, unorderedPairs } from './pair-sums.js'

const GiB = 2 ** 30
const gpt2Small = { nLayers: 12, dMlp: 3072 }   // N = 36,864: a layer of A against all of B is 0.84 GiB of float64 sums

describe('layerBlocks', () => {
  it('puts as many of A\'s layers in a block as the budget holds (float64 sums and the float32 product: 16 bytes per entry)', () => {
    expect(layerBlocks(gpt2Small, gpt2Small, 8 * GiB).map((b) => b.count)).toEqual([4, 4, 4])   // 8 GiB / 1.69 GiB per layer
    expect(layerBlocks(gpt2Small, gpt2Small, 1 * GiB)).toHaveLength(12)   // at least one layer, whatever the budget
    expect(layerBlocks({ nLayers: 4, dMlp: 512 }, { nLayers: 4, dMlp: 512 }, 8 * GiB)).toEqual([{ first: 0, count: 4 }])
  })

  it('keeps a block\'s float64 sums within 4 GiB, the most a checkpoint can write from one array in Node 20', () => {
    const blocks = layerBlocks(gpt2Small, gpt2Small, 64 * GiB)
    expect(blocks.map((b) => b.count)).toEqual([4, 4, 4])
    for (const b of blocks) expect(b.count * 3072 * 36_864 * 8).toBeLessThanOrEqual(4 * GiB)
  })

  it('refuses, in one line, a model so wide that one layer\'s sums exceed that', () => {
    const wide = { nLayers: 36, dMlp: 5120 }   // GPT-2 large: one layer against all of B is 7 GiB
    expect(() => layerBlocks(wide, wide, 64 * GiB)).toThrow(UserError)
    expect(() => layerBlocks(wide, wide, 64 * GiB)).toThrow(/needs 7\.0 GiB of float64 sums, more than the 4 GiB/)
  })
})

describe('unorderedPairs', () => {
  it('lists each pair of distinct items once, in order', () => {
    expect(unorderedPairs(['a', 'b', 'c'])).toEqual([['a', 'b'], ['a', 'c'], ['b', 'c']])
    expect(unorderedPairs(['a'])).toEqual([])
  })
})
