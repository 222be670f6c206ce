// SPEC §2, the token stream: documents shuffled with a fixed, recorded seed, split by document into the main
// stream and a held-out stream (for causal evaluation), joined with EOS, cut into rows of ctx − 1 tokens with
// BOS prepended. Pure: token ids in, rows out.
//
// Which document a position belongs to is kept per row as segments: (start position, doc index) pairs, each
// running to the next start or the end of the row. Position 0 is BOS and belongs to no document (doc −1). The
// EOS that joins document d to the next one belongs to d: it ends d's text. The last document of a stream has
// no EOS after it, and the tokens that do not fill a final row are dropped (counted, never padded).

export type Split = 'main' | 'heldout'

/** SplitMix64 (Steele, Lea & Flood 2014; Vigna's reference splitmix64.c): a small, well-known seeded PRNG. */
export class SplitMix64 {
  private state: bigint

  constructor(seed: number | bigint) {
    this.state = BigInt.asUintN(64, BigInt(seed))
  }

  next(): bigint {
    this.state = BigInt.asUintN(64, this.state + 0x9e3779b97f4a7c15n)
    let z = this.state
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n)
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn)
    return z ^ (z >> 31n)
  }

  /** Uniform integer in [0, n), without modulo bias (values past the last whole multiple of n are redrawn). */
  below(n: number): number {
    const bound = BigInt(n)
    const limit = (1n << 64n) - ((1n << 64n) % bound)
    for (;;) {
      const value = this.next()
      if (value < limit) return Number(value % bound)
    }
  }
}

/** A permutation of 0..n−1: Fisher–Yates driven by SplitMix64(seed). */
export function shuffledOrder(n: number, seed: number): Int32Array {
  const order = new Int32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  const random = new SplitMix64(seed)
  for (let i = n - 1; i > 0; i--) {
    const j = random.below(i + 1)
    const swap = order[i]
    order[i] = order[j]
    order[j] = swap
  }
  return order
}

export interface DocumentSplit {
  main: Int32Array // doc indices of the main stream, in stream order
  heldout: Int32Array // doc indices of the held-out stream, in stream order
}

/**
 * Shuffle documents 0..n−1 and hold out the first round(heldOutFraction · n) of the shuffled order. A document
 * lies wholly in one split, so no row mixes the two.
 */
export function splitDocuments(n: number, seed: number, heldOutFraction: number): DocumentSplit {
  if (!(heldOutFraction >= 0 && heldOutFraction < 1)) throw new RangeError(`heldOutFraction ${heldOutFraction} not in [0, 1)`)
  const order = shuffledOrder(n, seed)
  const heldOut = Math.round(heldOutFraction * n)
  return { heldout: order.subarray(0, heldOut), main: order.subarray(heldOut) }
}

/** The split the corpus names (heldOut[doc] = 1: held out), each stream in the same shuffled order. */
export function splitDocumentsByLabel(heldOut: Uint8Array, seed: number): DocumentSplit {
  const order = shuffledOrder(heldOut.length, seed)
  return { main: order.filter((doc) => heldOut[doc] === 0), heldout: order.filter((doc) => heldOut[doc] === 1) }
}

export interface PackedRow {
  tokens: Int32Array // [pos]: ctx ids, tokens[0] = BOS
  segmentStart: number[] // ascending row positions ≥ 1 where a document's tokens begin
  segmentDoc: number[] // the doc index of each segment
}

export interface RowShape {
  ctx: number // tokens per row, BOS included
  bos: number
  eos: number
}

/**
 * Packs one stream: feed it documents in stream order with `add`, and it returns the rows each completes.
 * `pendingTokens` after the last document is what the final, partial row would have held (dropped).
 */
export class RowPacker {
  private readonly shape: RowShape
  private row: Int32Array
  private pos = 1
  private segmentStart: number[] = []
  private segmentDoc: number[] = []
  private previousDoc = -1
  private done: PackedRow[] = []

  constructor(shape: RowShape) {
    if (!Number.isInteger(shape.ctx) || shape.ctx < 2) throw new RangeError(`ctx ${shape.ctx}: rows need BOS and at least one token`)
    this.shape = shape
    this.row = this.freshRow()
  }

  /** Append document `doc` (after the EOS that ends the previous one); returns the rows this completed. */
  add(doc: number, ids: ArrayLike<number>): PackedRow[] {
    if (this.previousDoc !== -1) this.append(this.previousDoc, [this.shape.eos])
    this.previousDoc = doc
    this.append(doc, ids)
    const done = this.done
    this.done = []
    return done
  }

  /** Tokens waiting for a row that the stream will not fill. */
  get pendingTokens(): number {
    return this.pos - 1
  }

  private append(doc: number, ids: ArrayLike<number>): void {
    const { ctx } = this.shape
    let i = 0
    while (i < ids.length) {
      if (this.segmentDoc.at(-1) !== doc) {
        this.segmentStart.push(this.pos)
        this.segmentDoc.push(doc)
      }
      const take = Math.min(ids.length - i, ctx - this.pos)
      for (let k = 0; k < take; k++) this.row[this.pos + k] = ids[i + k]
      this.pos += take
      i += take
      if (this.pos === ctx) this.emit()
    }
  }

  private emit(): void {
    this.done.push({ tokens: this.row, segmentStart: this.segmentStart, segmentDoc: this.segmentDoc })
    this.row = this.freshRow()
    this.pos = 1
    this.segmentStart = []
    this.segmentDoc = []
  }

  private freshRow(): Int32Array {
    const row = new Int32Array(this.shape.ctx)
    row[0] = this.shape.bos
    return row
  }
}

/** The document of every position of a row (−1 for BOS), from its segments. */
export function documentAtPositions(segmentStart: ArrayLike<number>, segmentDoc: ArrayLike<number>, ctx: number): Int32Array {
  const out = new Int32Array(ctx).fill(-1)
  for (let s = 0; s < segmentStart.length; s++) {
    const end = s + 1 < segmentStart.length ? segmentStart[s + 1] : ctx
    out.fill(segmentDoc[s], segmentStart[s], end)
  }
  return out
}
