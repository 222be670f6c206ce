// The sums one seed pair needs (SPEC §3), fed by aligned chunks of valid tokens from either mode: stored shards
// (this stage) or forward passes in memory (streamed mode). One PairSums covers a block of A's layers against
// every layer of B, plus each seed's within-layer second moments for the rotation baseline.
import { BaselineMaxima, RotatedLayers, WithinLayerMoments, type WithinLayerState } from '../../stats/baseline.js'
import { gemm64ViaFloat32, type Gemm } from '../../stats/gemm.js'
import { PairMaxima } from '../../stats/maxima.js'
import { PearsonAccumulator, type PearsonState } from '../../stats/pearson.js'
import type { RotationKind } from '../../stats/rotation.js'

export interface ModelLayout {
  nLayers: number
  dMlp: number
}

/** Layers [first, first + count) of A. */
export interface LayerBlock {
  first: number
  count: number
}

export interface PairSumsState {
  block: LayerBlock
  cross: PearsonState
  withinA: WithinLayerState
  withinB: WithinLayerState
}

export class PairSums {
  readonly block: LayerBlock
  readonly cross: PearsonAccumulator
  readonly withinA: WithinLayerMoments
  readonly withinB: WithinLayerMoments
  private readonly a: ModelLayout
  private readonly b: ModelLayout
  private readonly withinDone: boolean // within-layer moments come from an earlier pass: do not add again

  constructor(
    a: ModelLayout,
    b: ModelLayout,
    block: LayerBlock,
    gemm: Gemm,
    within?: { a: WithinLayerMoments; b: WithinLayerMoments; complete: boolean },
  ) {
    this.a = a
    this.b = b
    this.block = block
    this.cross = new PearsonAccumulator({
      a: { start: block.first * a.dMlp, count: block.count * a.dMlp },
      b: { start: 0, count: b.nLayers * b.dMlp },
      gemm,
    })
    this.withinA = within?.a ?? new WithinLayerMoments({ dMlp: a.dMlp, nLayers: a.nLayers, gemm })
    this.withinB = within?.b ?? new WithinLayerMoments({ dMlp: b.dMlp, nLayers: b.nLayers, gemm })
    this.withinDone = within?.complete ?? false
  }

  /** Resume from a checkpoint; `withinComplete` when the within-layer moments were finished by an earlier block. */
  static fromState(a: ModelLayout, b: ModelLayout, state: PairSumsState, gemm: Gemm, withinComplete: boolean): PairSums {
    const within = {
      a: WithinLayerMoments.fromState(state.withinA, gemm),
      b: WithinLayerMoments.fromState(state.withinB, gemm),
      complete: withinComplete,
    }
    const sums = new PairSums(a, b, state.block, gemm, within)
    sums.cross.merge(state.cross)
    return sums
  }

  get tokens(): number {
    return this.cross.n
  }

  state(): PairSumsState {
    return { block: { ...this.block }, cross: this.cross.state(), withinA: this.withinA.state(), withinB: this.withinB.state() }
  }

  /** Add `tokens` valid tokens: `a` is [A's neurons (all layers), tokens], `b` is [B's neurons, tokens]. */
  add(a: Float32Array, b: Float32Array, tokens: number): void {
    const rowStart = this.block.first * this.a.dMlp * tokens
    const rowEnd = (this.block.first + this.block.count) * this.a.dMlp * tokens
    this.cross.add(a.subarray(rowStart, rowEnd), b, tokens)
    if (!this.withinDone) {
      this.withinA.add(a, tokens)
      this.withinB.add(b, tokens)
    }
  }

  /**
   * Row and column maxima, and both baselines, of this block. `rotatedA` and `rotatedB` view each seed through its
   * own random directions (built once per seed from the finished within-layer moments, see `rotatedLayers`).
   */
  maxima(rotatedA: RotatedLayers, rotatedB: RotatedLayers): { maxima: PairMaxima; baselineA: BaselineMaxima; baselineB: BaselineMaxima } {
    const nA = this.a.nLayers * this.a.dMlp
    const nB = this.b.nLayers * this.b.dMlp
    const maxima = new PairMaxima(nA, nB)
    maxima.add(this.cross)
    const baselineA = new BaselineMaxima(nA, this.b.nLayers) // A's neurons against B's rotated layers
    baselineA.addRows(this.cross, rotatedB)
    const baselineB = new BaselineMaxima(nB, this.a.nLayers) // B's neurons against A's rotated layers (this block's)
    baselineB.addColumns(this.cross, rotatedA)
    return { maxima, baselineA, baselineB }
  }
}

/**
 * A seed's layers seen through random directions. Each seed gets its own directions, the same in every pair it
 * belongs to: the rotation seed is derived from the configured seed and the seed's name (and recorded).
 */
export function rotatedLayers(within: WithinLayerMoments, kind: RotationKind, baseSeed: number, seedName: string, gemm: Gemm): RotatedLayers {
  return new RotatedLayers(within, { kind, seed: rotationSeed(baseSeed, seedName), gemm64: gemm64ViaFloat32(gemm) })
}

/** FNV-1a of "<baseSeed>:<seed name>", a 32-bit rotation seed. */
export function rotationSeed(baseSeed: number, seedName: string): number {
  let h = 0x811c9dc5
  for (const byte of Buffer.from(`${baseSeed}:${seedName}`)) h = Math.imul(h ^ byte, 0x01000193) >>> 0
  return h
}

/** Split A's layers into blocks whose float64 cross sums (block × all of B) fit `bytes`. */
export function layerBlocks(a: ModelLayout, b: ModelLayout, bytes: number): LayerBlock[] {
  const perLayer = a.dMlp * b.nLayers * b.dMlp * 8 * 2 // the float64 sums plus the float32 chunk product and its margin
  const perBlock = Math.max(1, Math.min(a.nLayers, Math.floor(bytes / perLayer)))
  const blocks: LayerBlock[] = []
  for (let first = 0; first < a.nLayers; first += perBlock) blocks.push({ first, count: Math.min(perBlock, a.nLayers - first) })
  return blocks
}
