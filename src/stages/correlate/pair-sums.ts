// The sums a seed pair needs (SPEC §3) and what is computed from them, shared by both modes: stored (shards read
// back from Parquet, src/stages/correlate/pair.ts) and streamed (forward passes in memory,
// src/stages/extract/stream.ts). The cross sums cover a block of A's layers against every layer of B; each seed's
// within-layer second moments, for the rotation baseline, are kept once per seed by the driver.
import { UserError } from '../../errors.js'
import { BaselineMaxima, RotatedLayers, type WithinLayerMoments } from '../../stats/baseline.js'
import type { Gemm } from '../../stats/gemm.js'
import { PairMaxima } from '../../stats/maxima.js'
import { PearsonAccumulator } from '../../stats/pearson.js'
import type { RotationKind } from '../../stats/rotation.js'

export interface ModelLayout {
  nLayers: number
  dMlp: number
}

/** Every unordered pair of distinct items, in order: (0,1), (0,2), …, (1,2), …: the seed pairs. */
export function unorderedPairs<T>(items: readonly T[]): [T, T][] {
  return items.flatMap((a, i) => items.slice(i + 1).map((b): [T, T] => [a, b]))
}

/** Layers [first, first + count) of A. */
export interface LayerBlock {
  first: number
  count: number
}

export const ALL_LAYERS = (a: ModelLayout): LayerBlock => ({ first: 0, count: a.nLayers })

/** The cross sums of a block of A's layers against all of B. */
export function crossSums(a: ModelLayout, b: ModelLayout, block: LayerBlock, gemm: Gemm): PearsonAccumulator {
  return new PearsonAccumulator({
    a: { start: block.first * a.dMlp, count: block.count * a.dMlp },
    b: { start: 0, count: b.nLayers * b.dMlp },
    gemm,
  })
}

/** Add a chunk: `a` is [A's neurons (all layers), tokens], `b` is [B's neurons, tokens]; only the block's rows of A enter. */
export function addChunk(cross: PearsonAccumulator, a: Float32Array, b: Float32Array, tokens: number): void {
  cross.add(a.subarray(cross.a.start * tokens, (cross.a.start + cross.a.count) * tokens), b, tokens)
}

export interface PairResults {
  maxima: PairMaxima // rows: A's neurons against B; cols: B's neurons against A
  baselineA: BaselineMaxima // A's neurons against B's rotated layers
  baselineB: BaselineMaxima // B's neurons against A's rotated layers
}

/** Row and column maxima and both baselines of one block's cross sums. */
export function pairResults(cross: PearsonAccumulator, a: ModelLayout, b: ModelLayout, rotatedA: RotatedLayers, rotatedB: RotatedLayers): PairResults {
  const nA = a.nLayers * a.dMlp
  const nB = b.nLayers * b.dMlp
  const maxima = new PairMaxima(nA, nB)
  maxima.add(cross)
  const baselineA = new BaselineMaxima(nA, b.nLayers)
  baselineA.addRows(cross, rotatedB)
  const baselineB = new BaselineMaxima(nB, a.nLayers)
  baselineB.addColumns(cross, rotatedA)
  return { maxima, baselineA, baselineB }
}

/** Fold a later block's results into `into`. */
export function mergePairResults(into: PairResults, from: PairResults): PairResults {
  into.maxima.merge(from.maxima)
  into.baselineA.merge(from.baselineA)
  into.baselineB.merge(from.baselineB)
  return into
}

/**
 * A seed's layers seen through random directions. Each seed gets its own directions, the same in every pair it
 * belongs to: the rotation seed is derived from the configured seed and the seed's name (and recorded).
 */
export function rotatedLayers(within: WithinLayerMoments, kind: RotationKind, baseSeed: number, seedName: string, gemm: Gemm): RotatedLayers {
  return new RotatedLayers(within, { kind, seed: rotationSeed(baseSeed, seedName), gemm })
}

/** FNV-1a of "<baseSeed>:<seed name>", a 32-bit rotation seed. */
export function rotationSeed(baseSeed: number, seedName: string): number {
  let h = 0x811c9dc5
  for (const byte of Buffer.from(`${baseSeed}:${seedName}`)) h = Math.imul(h ^ byte, 0x01000193) >>> 0
  return h
}

export function rotationKind(kind: 'gaussian_rows' | 'orthogonal'): RotationKind {
  return kind === 'orthogonal' ? 'orthogonal' : 'gaussian-unit-rows'
}

// A checkpoint writes a block's float64 sums through one byte view, and Node 20 makes none longer than 2^32 bytes
// (buffer.constants.MAX_LENGTH): a block's sums stay within that whatever the memory budget.
const MAX_BLOCK_SUMS_BYTES = 2 ** 32

/** Split A's layers into blocks whose float64 cross sums (block × all of B) fit `bytes`, and 4 GiB per block. */
export function layerBlocks(a: ModelLayout, b: ModelLayout, bytes: number): LayerBlock[] {
  const sumsPerLayer = a.dMlp * b.nLayers * b.dMlp * 8
  if (sumsPerLayer > MAX_BLOCK_SUMS_BYTES) {
    throw new UserError(`one layer of d_mlp ${a.dMlp} against ${b.nLayers} × ${b.dMlp} neurons needs ${(sumsPerLayer / 2 ** 30).toFixed(1)} GiB ` +
      'of float64 sums, more than the 4 GiB one array can be checkpointed from in Node 20: models this wide are not supported yet')
  }
  const perLayer = sumsPerLayer * 2 // the float64 sums plus the float32 chunk product and its margin
  const perBlock = Math.max(1, Math.min(a.nLayers, Math.floor(bytes / perLayer), Math.floor(MAX_BLOCK_SUMS_BYTES / sumsPerLayer)))
  const blocks: LayerBlock[] = []
  for (let first = 0; first < a.nLayers; first += perBlock) blocks.push({ first, count: Math.min(perBlock, a.nLayers - first) })
  return blocks
}
