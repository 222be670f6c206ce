// Row building (SPEC §2) against a brute-force reference: the whole stream written out token by token with
// a document label for each, cut into rows; and the PRNG against its published reference outputs.
import { describe, expect, it } from 'vitest'
import { RowPacker, SplitMix64, documentAtPositions, shuffledOrder, splitDocuments } from './rows.js'
import type { PackedRow } from './rows.js'

const BOS = 900
const EOS = 901

/** The reference: documents joined with EOS (which belongs to the document before it), every label kept. */
function referenceRows(docs: { doc: number; ids: number[] }[], ctx: number) {
  const stream: { token: number; doc: number }[] = []
  docs.forEach(({ doc, ids }, k) => {
    if (k > 0) stream.push({ token: EOS, doc: docs[k - 1].doc })
    for (const token of ids) stream.push({ token, doc })
  })
  const rows: { tokens: number[]; docs: number[] }[] = []
  for (let start = 0; start + ctx - 1 <= stream.length; start += ctx - 1) {
    const body = stream.slice(start, start + ctx - 1)
    rows.push({ tokens: [BOS, ...body.map((t) => t.token)], docs: [-1, ...body.map((t) => t.doc)] })
  }
  return { rows, dropped: stream.length % (ctx - 1) }
}

function pack(docs: { doc: number; ids: number[] }[], ctx: number) {
  const packer = new RowPacker({ ctx, bos: BOS, eos: EOS })
  const rows: PackedRow[] = []
  for (const { doc, ids } of docs) rows.push(...packer.add(doc, ids))
  return { rows, dropped: packer.pendingTokens }
}

/** Documents of varied lengths (1 token to several rows) with ids that name their document and position. */
function randomDocs(seed: number, n: number, maxLength: number) {
  const random = new SplitMix64(seed)
  return Array.from({ length: n }, (_, k) => {
    const doc = 3 * k + 1 // doc indices need not be 0..n−1 in stream order
    return { doc, ids: Array.from({ length: 1 + random.below(maxLength) }, (_, i) => (doc * 1000 + i) % 800) }
  })
}

describe('RowPacker', () => {
  for (const [ctx, maxLength] of [
    [2, 3],
    [5, 4],
    [8, 30],
    [64, 200],
  ]) {
    it(`matches the brute-force stream at ctx ${ctx}`, () => {
      for (let seed = 0; seed < 20; seed++) {
        const docs = randomDocs(seed, 1 + (seed % 7) * 3, maxLength)
        const expected = referenceRows(docs, ctx)
        const { rows, dropped } = pack(docs, ctx)
        expect(rows.map((row) => Array.from(row.tokens))).toEqual(expected.rows.map((row) => row.tokens))
        expect(rows.map((row) => Array.from(documentAtPositions(row.segmentStart, row.segmentDoc, ctx)))).toEqual(
          expected.rows.map((row) => row.docs),
        )
        expect(dropped).toBe(expected.dropped)
      }
    })
  }

  it('starts every row with BOS, gives it exactly ctx tokens, and keeps segments minimal', () => {
    const { rows } = pack(randomDocs(7, 30, 50), 16)
    expect(rows.length).toBeGreaterThan(10)
    for (const row of rows) {
      expect(row.tokens.length).toBe(16)
      expect(row.tokens[0]).toBe(BOS)
      expect(row.segmentStart[0]).toBe(1)
      for (let s = 1; s < row.segmentStart.length; s++) {
        expect(row.segmentStart[s]).toBeGreaterThan(row.segmentStart[s - 1])
        expect(row.segmentDoc[s]).not.toBe(row.segmentDoc[s - 1])
      }
    }
  })

  it('puts the joining EOS in the earlier document, even at the start of a row', () => {
    // ctx 4: rows hold 3 tokens; doc 0 fills the first row exactly, so its EOS opens the second.
    const { rows } = pack(
      [
        { doc: 0, ids: [1, 2, 3] },
        { doc: 1, ids: [4, 5] },
      ],
      4,
    )
    expect(rows.map((row) => [Array.from(row.tokens), row.segmentStart, row.segmentDoc])).toEqual([
      [[BOS, 1, 2, 3], [1], [0]],
      [[BOS, EOS, 4, 5], [1, 2], [0, 1]],
    ])
  })

  it('refuses a ctx with no room for tokens', () => {
    expect(() => new RowPacker({ ctx: 1, bos: BOS, eos: EOS })).toThrow('ctx 1')
  })
})

describe('SplitMix64', () => {
  it('reproduces the reference outputs for seed 1234567 (Rosetta Code, "Pseudo-random numbers/Splitmix64")', () => {
    const random = new SplitMix64(1234567)
    expect(Array.from({ length: 5 }, () => random.next())).toEqual([
      6457827717110365317n,
      3203168211198807973n,
      9817491932198370423n,
      4593380528125082431n,
      16408922859458223821n,
    ])
  })

  it('draws below(n) uniformly enough in [0, n)', () => {
    const random = new SplitMix64(1)
    const counts = new Array(6).fill(0)
    for (let i = 0; i < 60_000; i++) counts[random.below(6)]++
    for (const count of counts) expect(Math.abs(count - 10_000)).toBeLessThan(500) // > 5 standard deviations
  })
})

describe('shuffle and split', () => {
  it('gives a permutation that depends on the seed only', () => {
    const a = shuffledOrder(1000, 42)
    expect(Array.from(a).sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    expect(shuffledOrder(1000, 42)).toEqual(a)
    expect(shuffledOrder(1000, 43)).not.toEqual(a)
    expect(shuffledOrder(0, 1)).toEqual(new Int32Array(0))
    expect(shuffledOrder(1, 1)).toEqual(new Int32Array([0]))
  })

  it('holds out round(fraction · n) documents, each document in exactly one split', () => {
    const { main, heldout } = splitDocuments(101, 5, 0.1)
    expect(heldout.length).toBe(10)
    expect(main.length).toBe(91)
    const all = [...main, ...heldout].sort((x, y) => x - y)
    expect(all).toEqual(Array.from({ length: 101 }, (_, i) => i))
    expect(splitDocuments(101, 5, 0).heldout.length).toBe(0)
    expect(() => splitDocuments(10, 5, 1)).toThrow('heldOutFraction 1 not in [0, 1)')
  })
})

describe('documentAtPositions', () => {
  it('expands segments to one doc per position, −1 for BOS', () => {
    expect(Array.from(documentAtPositions([1, 3, 4], [7, 8, 9], 6))).toEqual([-1, 7, 7, 8, 9, 9])
  })
})
