import { describe, expect, it } from 'vitest'
import { seededRandom } from './random.js'
import { TopActivations, type TokenPlaces, type TopActivation, type TopActivationsState } from './top-activations.js'

const N_POS = 16

// The neuron-major rows [width, tokens] of a token-major chunk [tokens, width], as a shard buffer holds them.
function rowsOf(chunk: Float32Array, tokens: number, width: number): Float32Array {
  return Float32Array.from({ length: chunk.length }, (_, i) => chunk[(i % tokens) * width + Math.floor(i / tokens)])
}

// Token t of rows starting at firstRow sits at row firstRow + ⌊t / N_POS⌋, position t mod N_POS.
function placesOf(tokens: number, firstRow: number): TokenPlaces {
  return { row: Int32Array.from({ length: tokens }, (_, t) => firstRow + Math.floor(t / N_POS)), pos: Int32Array.from({ length: tokens }, (_, t) => t % N_POS) }
}

// Small integers, so that many values tie and the (row, pos) tie-break decides.
function tiedChunk(tokens: number, width: number, seed: number): Float32Array {
  const random = seededRandom(seed, 0)
  return Float32Array.from({ length: tokens * width }, () => Math.floor(random() * 6) - 2)
}

// Reference: sort every (value, row, pos) and take the first k.
function bruteForce(chunk: Float32Array, tokens: number, width: number, j: number, k: number): TopActivation[] {
  const all: TopActivation[] = []
  for (let t = 0; t < tokens; t++) {
    const value = chunk[t * width + j]
    if (!Number.isFinite(value)) continue
    all.push({ value, row: Math.floor(t / N_POS), pos: t % N_POS })
  }
  all.sort((x, y) => (y.value - x.value) || (x.row - y.row) || (x.pos - y.pos))
  return all.slice(0, k)
}

describe('TopActivations', () => {
  it('keeps the top k per neuron with ties broken by the earlier (row, pos)', () => {
    const tokens = 40 * N_POS, width = 5, k = 7
    const chunk = tiedChunk(tokens, width, 1)
    const top = new TopActivations(width, k)
    top.addRows(rowsOf(chunk, tokens, width), tokens, placesOf(tokens, 0))
    for (let j = 0; j < width; j++) expect(top.top(j)).toEqual(bruteForce(chunk, tokens, width, j, k))
  })

  it('gives the same result whatever the sharding and merge order', () => {
    const rows = 50, tokens = rows * N_POS, width = 4, k = 10
    const chunk = tiedChunk(tokens, width, 2)
    const shards = [[0, 3], [3, 4], [4, 30], [30, 50]].map(([r0, r1]) => {
      const shard = new TopActivations(width, k)
      const tokens = (r1 - r0) * N_POS
      shard.addRows(rowsOf(chunk.subarray(r0 * N_POS * width, r1 * N_POS * width), tokens, width), tokens, placesOf(tokens, r0))
      return structuredClone(shard.state()) as TopActivationsState
    })
    const forward = new TopActivations(width, k), backward = new TopActivations(width, k)
    shards.forEach((s) => forward.merge(s))
    shards.reverse().forEach((s) => backward.merge(s))
    for (let j = 0; j < width; j++) {
      const expected = bruteForce(chunk, tokens, width, j, k)
      expect(forward.top(j)).toEqual(expected)
      expect(backward.top(j)).toEqual(expected)
    }
    expect(TopActivations.fromState(forward.state()).top(2)).toEqual(forward.top(2))
  })

  it('skips non-finite values, and returns fewer than k when fewer exist', () => {
    const row = Float32Array.from([NaN, Infinity, 3, -Infinity, 8, 1, 2])  // 1 neuron × 7 tokens
    const places = { row: Int32Array.from([5, 5, 5, 6, 6, 6, 6]), pos: Int32Array.from([0, 2, 3, 0, 1, 2, 3]) }
    const top = new TopActivations(1, 10)
    top.addRows(row, 7, places)
    expect(top.top(0)).toEqual([
      { value: 8, row: 6, pos: 1 }, { value: 3, row: 5, pos: 3 },
      { value: 2, row: 6, pos: 3 }, { value: 1, row: 6, pos: 2 },
    ])
  })

  it('fills a slice of neurons with neuronOffset', () => {
    const tokens = 3 * N_POS
    const chunk = tiedChunk(tokens, 2, 3)
    const top = new TopActivations(6, 3)
    top.addRows(rowsOf(chunk, tokens, 2), tokens, placesOf(tokens, 0), 4)
    expect(top.top(3)).toEqual([])
    expect(top.top(5)).toEqual(bruteForce(chunk, tokens, 2, 1, 3))
  })

  it('keeps the earliest of many equal values (a constant neuron), and refuses tokens out of corpus order', () => {
    const tokens = 5 * N_POS
    const top = new TopActivations(1, 3)
    top.addRows(new Float32Array(tokens).fill(0.5), tokens, placesOf(tokens, 2))
    expect(top.top(0)).toEqual([0, 1, 2].map((pos) => ({ value: 0.5, row: 2, pos })))
    const swapped = placesOf(tokens, 0)
    swapped.pos[3] = 1
    expect(() => top.addRows(new Float32Array(tokens), tokens, swapped)).toThrow(/token 3 .* is not after token 2/)
  })
})
