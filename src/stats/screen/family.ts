// The screened correlate (issue 5 item 8; method and measurements in bench/research/README.md): the same maxima,
// argmaxes and universality flags as the full all-pairs computation of a seed family, proven by bounds, with a
// fraction of its FLOPs. Four kinds of pass over the activations, each checkpointed when it ends (and within it,
// every `checkpointEvery` tokens or minutes):
//   1. gram         on the first shards only: Σ Y Yᵀ of each (seed, layer)'s top k principal directions over the
//                   tokens, Y = V·z (z: the layer's standardised neurons)
//   2. projections  the compressed basis Q = W·Y; Σ Q Qᵀ and every neuron's Σ y·Qᵀ over all tokens
//   3. dots         exact correlations of the candidate partners the projections' bounds cannot rule out
//   4. refine       exact rotation baselines, only where an interval straddles the threshold (≤ seeds − 1 rounds)
// y is a neuron's activation minus its mean (the stats stage's), so u = y/|y| is a unit vector and u_a·u_b is the
// Pearson correlation. Only the passes' results are kept, never activations.
import { type RotatedLayers, type WithinLayerMoments } from '../baseline.js'
import { CheckpointClock } from '../../io/state-file.js'
import { BufferPool } from '../buffer-pool.js'
import type { Gemm, GemmNN } from '../gemm.js'
import { kernels } from '../kernels.js'
import { emptyMaxima, isBetter, type Maxima } from '../maxima.js'
import { type ChunkRows, shiftChunk } from '../pearson.js'
import { universality } from '../universality.js'
import { compressBasis, correlationMatrix, inverseSquareRoot, topDirections, transpose } from './basis.js'
import { baselineInterval, type Candidates, type Projection, rotatedFrame, screenPartners } from './bounds.js'

export interface SeedLayout {
  nLayers: number
  dMlp: number
}

/** The family's activations: every seed has the same shards of the same valid tokens. */
export interface ScreenSource {
  readonly layouts: readonly SeedLayout[]
  readonly shardTokens: readonly number[]
  /** Seed s's rows for shard k: [neurons, tokens] neuron-major. Centred before the seed's next read, which may reuse their memory. */
  read(seed: number, shard: number): Promise<ChunkRows>
}

export interface ScreenOptions {
  directions: number  // k: principal directions per (seed, layer)
  basis: number       // K': rows of the compressed basis
  threshold: number   // universality threshold: which baselines must be exact depends on it
  gemm: Gemm
  gemmNN?: GemmNN  // A·B without transposing B first (native BLAS); else B is transposed and `gemm` multiplies
  within: readonly WithinLayerMoments[]  // per seed, from the stats stage: means, variances, correlations
  rotated: readonly RotatedLayers[]      // per seed: the full computation's rotations, so baselines are the same
  memoryBytes: number                    // for one shard's centred chunks of several seeds
  progress?: (tokens: number) => void
  signal?: AbortSignal
  /** Called after every pass, and within a pass as `checkpointEvery` says, with the state to save; `resume` takes it back. */
  checkpoint?: (state: ScreenState) => void
  /** Within a pass, save its sums after this many tokens or minutes, whichever comes first (default: only between passes). */
  checkpointEvery?: { tokens: number; minutes: number }
  resume?: ScreenState
}

/** What the passes produced so far: enough to resume after the last finished pass, or inside the open one. */
export interface ScreenState {
  gram?: Float64Array
  projections?: { sums: Float64Array[]; norms2: Float64Array[]; basisGram: Float64Array }  // norms2: Σ y²
  candidates?: Candidates[]   // per pair (a < b, in order)
  dots?: Float64Array[]       // per pair, per candidate: Σ y_a y_b
  refined?: Float64Array[]    // per ordered (anchor a, other b): the exact baseline where refined, else NaN
  rounds?: number             // refinement rounds done
  undecided?: number          // neurons whose flag the intervals left open, before the first round
  refinedLayers?: number      // (anchor, layer) rows computed exactly, over the rounds
  refinementFlops?: number
  inPass?: { pass: string; shards: number; sums: Float64Array[] } // the open pass: shards done, its sums so far
}

/** One pair's results, in the full computation's terms: maxima both ways, baseline intervals both ways. */
export interface ScreenedPair {
  a: number
  b: number
  rows: Maxima              // A's neurons against B
  cols: Maxima              // B's neurons against A
  baselineA: { lo: Float64Array; hi: Float64Array }   // A's neurons against B's rotated layers; lo = hi where exact
  baselineB: { lo: Float64Array; hi: Float64Array }
}

export interface ScreenReport {
  flops: Record<string, number>  // per step, as counted
  fullFlops: number              // the full computation's GEMM: 2·N_a·N_b·T per pair
  basisRows: number
  energy: number                 // share of the union's energy the basis keeps
  candidatesPerNeuron: number    // per neuron of A, per pair
  undecided: number              // flags the intervals left open, before refinement
  refinedLayers: number          // (anchor, layer) baselines computed exactly
  rounds: number
}

/**
 * FLOPs the screen spends before it prunes anything (the basis and the projections), from the shapes alone (the
 * basis Gram counted over all tokens, an upper bound): when they approach the full computation's, screening
 * cannot pay off (activations too small or the basis too large for them) and the caller should compute the
 * pairs in full.
 */
export function screeningOverheadFlops(layouts: readonly SeedLayout[], tokens: number, directions: number, basis: number): number {
  const k0 = layouts.reduce((sum, l) => sum + l.nLayers * Math.min(directions, l.dMlp), 0), k = Math.min(basis, k0)
  const basisRows = layouts.reduce((sum, l) => sum + 2 * 2 * l.nLayers * Math.min(directions, l.dMlp) * l.dMlp * tokens, 0)
  const projections = layouts.reduce((sum, l) => sum + 2 * l.nLayers * l.dMlp * k * tokens, 0)
  return basisRows + 2 * k0 * k0 * tokens + 2 * k * k0 * tokens + 2 * k * k * tokens + projections
}

// The basis Gram needs only enough tokens to pick good directions (any basis gives valid bounds): the first
// shards holding this share of the tokens.
const GRAM_SHARE = 1 / 8

/** The full computation's GEMM FLOPs: 2·N_a·N_b·T for every pair. */
export function fullFlops(layouts: readonly SeedLayout[], tokens: number): number {
  const n = layouts.map((l) => l.nLayers * l.dMlp)
  let sum = 0
  for (let a = 0; a < n.length; a++) for (let b = a + 1; b < n.length; b++) sum += 2 * n[a] * n[b] * tokens
  return sum
}

// Every bound is widened by this much for the rounding of float32 products (~1e-6 here).
const MARGIN = 1e-4

export async function screenFamily(source: ScreenSource, o: ScreenOptions): Promise<{ pairs: ScreenedPair[]; report: ScreenReport }> {
  return new ScreenedFamily(source, o).run()
}

class ScreenedFamily {
  private readonly s: number
  private readonly n: number[]
  private readonly tokens: number
  private readonly centring: Centring[]
  private readonly directions: Float32Array[][]  // [seed][layer] [k, d]: top principal directions, over √(n·Var)
  private readonly k0: number
  private readonly gramShards: number           // the first shards, for the basis Gram
  private readonly state: ScreenState
  private readonly pairs: [number, number][] = []
  private readonly gemmNN: GemmNN
  // Centred chunks' memory, reused from shard to shard (one per seed): in a profile of the demo family the
  // centring took 12.4 s with fresh buffers, 6.1 s with reused ones.
  private readonly chunkBuffers: BufferPool

  constructor(private readonly source: ScreenSource, private readonly o: ScreenOptions) {
    this.s = source.layouts.length
    this.n = source.layouts.map((l) => l.nLayers * l.dMlp)
    this.tokens = source.shardTokens.reduce((sum, t) => sum + t, 0)
    o.within.forEach((w, s) => {
      if (w.n !== this.tokens) throw new Error(`screen: seed ${s}'s within-layer moments saw ${w.n} tokens, the shards hold ${this.tokens}; rerun the stats stage`)
    })
    for (let a = 0; a < this.s; a++) for (let b = a + 1; b < this.s; b++) this.pairs.push([a, b])
    this.centring = o.within.map((w, s) => new Centring(w, source.layouts[s]))
    // The directions act on standardised neurons z = y/√(n·Var); dividing their columns by √(n·Var) lets them act
    // on the centred rows y directly (a dead neuron's column is 0).
    this.directions = o.within.map((w, s) => {
      const { nLayers, dMlp: d } = source.layouts[s]
      return Array.from({ length: nLayers }, (_, m) => {
        const scatter = w.centredScatter(m)
        const v = topDirections(correlationMatrix(scatter, d), d, o.directions, o.gemm, 1000 * s + m)
        for (let j = 0; j < d; j++) {
          const scale = scatter[j * d + j] > 0 ? 1 / Math.sqrt(scatter[j * d + j]) : 0
          for (let r = 0; r < v.length / d; r++) v[r * d + j] *= scale
        }
        return v
      })
    })
    this.k0 = this.directions.reduce((sum, layers, s) => sum + layers.reduce((rows, v) => rows + v.length / source.layouts[s].dMlp, 0), 0)
    let sampled = 0
    this.gramShards = source.shardTokens.findIndex((t) => (sampled += t) >= GRAM_SHARE * this.tokens) + 1
    this.state = o.resume ?? {}
    this.chunkBuffers = new BufferPool(this.s)
    this.gemmNN = o.gemmNN ?? ((a, b, m, n, k, out) => o.gemm(a, transpose(b, k, n, new Float32Array(k * n)), m, n, k, out))
  }

  async run(): Promise<{ pairs: ScreenedPair[]; report: ScreenReport }> {
    const o = this.o
    const gram = this.state.gram ?? this.save('gram', await this.gramPass())
    const basis = compressBasis(gram, this.k0, o.basis)
    const sums = this.state.projections ?? this.save('projections', await this.projectionPass(basis.w, basis.rows))
    const projections = this.projections(sums, basis.rows)
    const candidates = this.state.candidates ?? this.save('candidates', this.pairs.map(([a, b]) => screenPartners(projections[a], projections[b], o.gemm, MARGIN)))
    const dots = this.state.dots ?? this.save('dots', await this.dotsPass(candidates))
    const maxima = this.pairs.map((_, p) => this.pairMaxima(p, candidates[p], dots[p]))
    const intervals = this.baselineIntervals(projections)
    const undecided = await this.refine(maxima, intervals)
    const pairs = this.pairs.map(([a, b], p): ScreenedPair => ({
      a, b, rows: maxima[p].rows, cols: maxima[p].cols,
      baselineA: this.seedBaseline(a, b, intervals), baselineB: this.seedBaseline(b, a, intervals),
    }))
    const candidateCount = candidates.reduce((sum, c) => sum + c.cols.length, 0)
    return {
      pairs,
      report: {
        flops: this.flopCounts(basis.rows, candidateCount),
        fullFlops: fullFlops(this.source.layouts, this.tokens),
        basisRows: basis.rows,
        energy: basis.energy,
        candidatesPerNeuron: candidateCount / this.pairs.reduce((sum, [a]) => sum + this.n[a], 0),
        undecided,
        refinedLayers: this.state.refinedLayers ?? 0,
        rounds: this.state.rounds ?? 0,
      },
    }
  }

  /** The FLOPs of each step, from the shapes (so a resumed run reports the same numbers). */
  private flopCounts(rows: number, candidates: number): Record<string, number> {
    const t = this.tokens, layouts = this.source.layouts
    const sumSeeds = (f: (s: number) => number) => layouts.reduce((sum, _, s) => sum + f(s), 0)
    const sumPairs = (f: (a: number, b: number) => number) => this.pairs.reduce((sum, [a, b]) => sum + f(a, b), 0)
    const gramTokens = this.source.shardTokens.slice(0, this.gramShards).reduce((sum, x) => sum + x, 0)
    const directionRows = (s: number) => this.directions[s].reduce((sum, v) => sum + v.length / layouts[s].dMlp, 0)
    return {
      'basis rows': sumSeeds((s) => 2 * directionRows(s) * layouts[s].dMlp * (gramTokens + t)),
      'basis Gram (first shards)': 2 * this.k0 * this.k0 * gramTokens,
      'basis compression': 2 * rows * this.k0 * t + 2 * rows * rows * t,
      projections: sumSeeds((s) => 2 * this.n[s] * rows * t),
      'upper-bound matrices': sumPairs((a, b) => 2 * 2 * this.n[a] * this.n[b] * rows),
      'exact candidate dots': 2 * t * candidates,
      'baseline intervals': sumSeeds((b) => {
        const d = layouts[b].dMlp
        return layouts[b].nLayers * (2 * d * d * rows + 2 * d * d * d + sumSeeds((a) => (a === b ? 0 : 2 * this.n[a] * d * rows)))
      }),
      'baseline refinement': this.state.refinementFlops ?? 0,
    }
  }

  // ── passes over the activations ───────────────────────────────────────────────────────────────────────────

  /** Pass 1, over the first shards: Σ Y Yᵀ of the principal directions' rows. */
  private async gramPass(): Promise<Float64Array> {
    const gram = new Float64Array(this.k0 * this.k0)
    const product = new Float32Array(this.k0 * this.k0)
    await this.forEachShard({ pass: 'gram', sums: [gram], count: this.gramShards }, async (t, chunks) => {
      const y = await this.basisRows(chunks, t)
      this.o.gemm(y, y, this.k0, this.k0, t, product)
      kernels.addFloat32Into(gram, product)
    })
    return gram
  }

  /** Pass 2: Q = W·Y per shard, then every seed's Σ y·Qᵀ, Σ y² per neuron and Σ Q Qᵀ. */
  private async projectionPass(w: Float32Array, rows: number): Promise<NonNullable<ScreenState['projections']>> {
    const sums = this.n.map((n) => new Float64Array(n * rows))
    const norms2 = this.n.map((n) => new Float64Array(n))
    const basisGram = new Float64Array(rows * rows)
    await this.forEachShard({ pass: 'projections', sums: [...sums, ...norms2, basisGram] }, async (t, chunks) => {
      const y = await this.basisRows(chunks, t)
      const q = new Float32Array(rows * t)
      this.gemmNN(w, y, rows, t, this.k0, q)
      const qq = new Float32Array(rows * rows)
      this.o.gemm(q, q, rows, rows, t, qq)
      kernels.addFloat32Into(basisGram, qq)
      for (let s = 0; s < this.s; s++) {
        const chunk = await chunks.get(s)
        const product = new Float32Array(this.n[s] * rows)
        this.o.gemm(chunk.values, q, this.n[s], rows, t, product)
        kernels.addFloat32Into(sums[s], product)
        for (let i = 0; i < this.n[s]; i++) norms2[s][i] += chunk.norms2[i]
      }
    })
    return { sums, norms2, basisGram }
  }

  /** Pass 3: Σ y_a y_b (centred rows) for every candidate pair. */
  private async dotsPass(candidates: Candidates[]): Promise<Float64Array[]> {
    const dots = candidates.map((c) => new Float64Array(c.cols.length))
    await this.forEachShard({ pass: 'dots', sums: dots }, async (t, chunks) => {
      for (const [p, [a, b]] of this.pairs.entries()) {
        const za = (await chunks.get(a)).values, zb = (await chunks.get(b)).values
        kernels.sparseDots(za, zb, t, candidates[p].rowStart, candidates[p].cols, dots[p])
      }
    })
    return dots
  }

  /** Y for one shard: each seed's layers through their principal directions, stacked [k0, tokens]. */
  private async basisRows(chunks: ShardChunks, t: number): Promise<Float32Array> {
    const y = new Float32Array(this.k0 * t)
    let row = 0
    for (let s = 0; s < this.s; s++) {
      const { nLayers, dMlp: d } = this.source.layouts[s]
      const values = (await chunks.get(s)).values
      for (let m = 0; m < nLayers; m++) {
        // Contracts over the layer's neurons, the chunk's rows: V [k, d] · Z [d, t].
        const v = this.directions[s][m], k = v.length / d
        this.gemmNN(v, values.subarray(m * d * t, (m + 1) * d * t), k, t, d, y.subarray(row * t, (row + k) * t))
        row += k
      }
    }
    return y
  }

  /**
   * Visit the first `count` shards (default all), each with its chunks; progress counts every shard's tokens.
   * `sums` are what the visits add into: saved within the pass as `checkpointEvery` says, and restored (with the
   * shards they cover skipped) when the resumed state stopped inside this pass. Adding the same shards in the
   * same order to the same float64 sums gives the same bits as a run that never stopped.
   */
  private async forEachShard(pass: { pass: string; sums: Float64Array[]; count?: number }, visit: (tokens: number, chunks: ShardChunks) => Promise<void>): Promise<void> {
    const shardTokens = this.source.shardTokens.slice(0, pass.count)
    const resumed = this.state.inPass?.pass === pass.pass ? this.state.inPass : undefined
    if (resumed) {
      if (resumed.sums.length !== pass.sums.length) throw new Error(`screen: the checkpoint of the ${pass.pass} pass has ${resumed.sums.length} sums, this run ${pass.sums.length}`)
      resumed.sums.forEach((saved, i) => pass.sums[i].set(saved))
      this.o.progress?.(shardTokens.slice(0, resumed.shards).reduce((sum, t) => sum + t, 0))
    }
    const clock = this.o.checkpointEvery && new CheckpointClock(this.o.checkpointEvery)
    for (let shard = resumed?.shards ?? 0; shard < shardTokens.length; shard++) {
      if (this.o.signal?.aborted) throw new Error('correlate: cancelled')
      const t = shardTokens[shard]
      const chunks = new ShardChunks(this.source, this.centring, shard, t, this.o.memoryBytes, this.chunkBuffers)
      await visit(t, chunks)
      await chunks.recycle()
      this.o.progress?.(t)
      if (clock?.count(t) && shard + 1 < shardTokens.length) {
        this.state.inPass = { pass: pass.pass, shards: shard + 1, sums: pass.sums }
        this.o.checkpoint?.(this.state)
        clock.saved()
      }
    }
    delete this.state.inPass // the pass's result goes into the state next, and is saved with it
  }

  // ── between passes ────────────────────────────────────────────────────────────────────────────────────────

  /** Coordinates in an exactly orthonormal basis of Q's span (H^{-1/2}·p), of each unit vector u = y/|y|. */
  private projections(sums: NonNullable<ScreenState['projections']>, k: number): Projection[] {
    const root = inverseSquareRoot(sums.basisGram, k)
    return sums.sums.map((p, s) => {
      const n = this.n[s]
      const coords = new Float32Array(n * k), rho = new Float64Array(n), live = new Uint8Array(n)
      const row = new Float64Array(k)
      for (let i = 0; i < n; i++) {
        const norm2 = sums.norms2[s][i]
        if (!(norm2 > 0) || !this.centring[s].live[i]) continue
        live[i] = 1
        const inv = 1 / Math.sqrt(norm2)
        let length2 = 0
        for (let r = 0; r < k; r++) {
          let v = 0
          for (let c = 0; c < k; c++) v += root[r * k + c] * p[i * k + c]
          row[r] = v * inv
          length2 += row[r] * row[r]
          coords[i * k + r] = row[r]
        }
        rho[i] = Math.sqrt(Math.max(0, 1 - length2))
      }
      return { coords, rho, live, k }
    })
  }

  private pairMaxima(p: number, c: Candidates, dots: Float64Array): { rows: Maxima; cols: Maxima } {
    const [a, b] = this.pairs[p]
    const na = this.norms2(a), nb = this.norms2(b)
    const rows = emptyMaxima(this.n[a]), cols = emptyMaxima(this.n[b])
    for (let i = 0; i < this.n[a]; i++) {
      for (let e = c.rowStart[i]; e < c.rowStart[i + 1]; e++) {
        const j = c.cols[e]
        const r = dots[e] / Math.sqrt(na[i] * nb[j])
        if (isBetter(r, j, rows.value[i], rows.index[i])) {
          rows.value[i] = r
          rows.index[i] = j
        }
        if (isBetter(r, i, cols.value[j], cols.index[j])) {
          cols.value[j] = r
          cols.index[j] = i
        }
      }
    }
    return { rows, cols }
  }

  private norms2(s: number): Float64Array {
    return this.state.projections!.norms2[s]
  }

  /** Per ordered (anchor a, other b) and layer m of b: lo and hi of each anchor's baseline, [L_b][N_a]. */
  private baselineIntervals(projections: Projection[]): Map<string, { lo: Float64Array[]; hi: Float64Array[] }> {
    const out = new Map<string, { lo: Float64Array[]; hi: Float64Array[] }>()
    for (let b = 0; b < this.s; b++) {
      const { nLayers, dMlp: d } = this.source.layouts[b]
      const k = projections[b].k
      for (let m = 0; m < nLayers; m++) {
        const { matrix, inverseRoot } = this.o.rotated[b].directions(m)
        const w = Float64Array.from(this.norms2(b).subarray(m * d, (m + 1) * d), Math.sqrt) // y_j = |y_j|·u_j
        const frame = rotatedFrame(Float32Array.from(matrix), inverseRoot, w, projections[b].coords.subarray(m * d * k, (m + 1) * d * k), k, this.o.gemm)
        for (let a = 0; a < this.s; a++) {
          if (a === b) continue
          const key = `${a}:${b}`
          if (!out.has(key)) out.set(key, { lo: [], hi: [] })
          const lo = new Float64Array(this.n[a]), hi = new Float64Array(this.n[a])
          baselineInterval(projections[a], frame, this.o.gemm, MARGIN, lo, hi)
          out.get(key)!.lo[m] = lo
          out.get(key)!.hi[m] = hi
        }
      }
    }
    return out
  }

  /** Anchor a's baseline against b: exact where refined, else the max over b's layers of the intervals. */
  private seedBaseline(a: number, b: number, intervals: Map<string, { lo: Float64Array[]; hi: Float64Array[] }>): { lo: Float64Array; hi: Float64Array } {
    const { lo: layerLo, hi: layerHi } = intervals.get(`${a}:${b}`)!
    const exact = this.refined(a, b)
    const lo = new Float64Array(this.n[a]), hi = new Float64Array(this.n[a])
    for (let i = 0; i < this.n[a]; i++) {
      if (exact[i] === exact[i]) {
        lo[i] = hi[i] = exact[i]
        continue
      }
      let l = -Infinity, h = -Infinity
      for (let m = 0; m < layerLo.length; m++) {
        if (layerLo[m][i] > l) l = layerLo[m][i]
        if (layerHi[m][i] > h) h = layerHi[m][i]
      }
      lo[i] = l === -Infinity ? NaN : l
      hi[i] = h === -Infinity ? NaN : h
    }
    return { lo, hi }
  }

  private refined(a: number, b: number): Float64Array {
    this.state.refined ??= []
    const slot = a * this.s + b
    return (this.state.refined[slot] ??= new Float64Array(this.n[a]).fill(NaN))
  }

  /**
   * Prove every flag. A flag is decided when the excess interval lies on one side of the threshold (the same
   * universality() the universal stage runs, so both decide alike). The first round refines, for every undecided
   * neuron, its widest other seed; a second round all its other open seeds; each only in the layers whose hi
   * reaches that seed's best lo (the others cannot hold the max). Returns the neurons undecided at first.
   */
  private async refine(maxima: { rows: Maxima; cols: Maxima }[], intervals: Map<string, { lo: Float64Array[]; hi: Float64Array[] }>): Promise<number> {
    for (;;) {
      const requests: Request[] = []
      for (let a = 0; a < this.s; a++) {
        const others = [...Array(this.s).keys()].filter((b) => b !== a)
        const corr = others.map((b) => (a < b ? maxima[this.pairIndex(a, b)].rows : maxima[this.pairIndex(b, a)].cols).value)
        const bounds = others.map((b) => this.seedBaseline(a, b, intervals))
        const low = universality(others.map((_, e) => ({ maxCorr: corr[e], baseline: bounds[e].lo })), { threshold: this.o.threshold })
        const high = universality(others.map((_, e) => ({ maxCorr: corr[e], baseline: bounds[e].hi })), { threshold: this.o.threshold })
        for (let i = 0; i < this.n[a]; i++) {
          if (high.isUniversal[i] || !low.isUniversal[i]) continue // proven yes, or proven no
          const open = others.map((_, e) => e).filter((e) => bounds[e].hi[i] > bounds[e].lo[i])
          if (!open.length) throw new Error(`screen: neuron ${i} of seed ${a} stays undecided with every baseline exact`)
          // First round: the widest seed only, which settles most flags. Later rounds: every open seed, so that a
          // refinement never needs more than two more passes over the shards.
          const chosen = (this.state.rounds ?? 0) === 0
            ? [open.reduce((w, e) => (bounds[e].hi[i] - bounds[e].lo[i] > bounds[w].hi[i] - bounds[w].lo[i] ? e : w))]
            : open
          for (const e of chosen) {
            const b = others[e], { lo, hi } = intervals.get(`${a}:${b}`)!
            const layers = lo.map((_, m) => m).filter((m) => hi[m][i] >= bounds[e].lo[i])
            requests.push({ a, i, b, layers })
          }
        }
      }
      this.state.undecided ??= new Set(requests.map((r) => `${r.a}:${r.i}`)).size // kept, so a resumed run reports it too
      if (!requests.length) break
      const exact = await this.refinePass(requests)
      requests.forEach((r, e) => (this.refined(r.a, r.b)[r.i] = exact[e]))
      const layerRows = requests.reduce((sum, r) => sum + r.layers.length, 0)
      this.state.refinedLayers = (this.state.refinedLayers ?? 0) + layerRows
      this.state.refinementFlops = (this.state.refinementFlops ?? 0) + requests.reduce((sum, r) => sum + r.layers.length * 2 * this.source.layouts[r.b].dMlp * this.tokens, 0)
      this.state.rounds = (this.state.rounds ?? 0) + 1
      this.o.checkpoint?.(this.state)
    }
    return this.state.undecided ?? 0
  }

  /** Pass 4: for each request, the exact baseline: max over its layers of max_k corr(u_a, b̃_k). */
  private async refinePass(requests: Request[]): Promise<Float64Array> {
    // One group per (b, layer): its anchors' rows are gathered per shard into one GEMM operand.
    const groups = new Map<string, { b: number; m: number; anchors: { request: number; a: number; i: number }[]; cross: Float64Array }>()
    requests.forEach((r, request) => {
      for (const m of r.layers) {
        const key = `${r.b}:${m}`
        if (!groups.has(key)) groups.set(key, { b: r.b, m, anchors: [], cross: new Float64Array(0) })
        groups.get(key)!.anchors.push({ request, a: r.a, i: r.i })
      }
    })
    for (const g of groups.values()) g.cross = new Float64Array(g.anchors.length * this.source.layouts[g.b].dMlp)
    const pass = { pass: `refinement round ${(this.state.rounds ?? 0) + 1}`, sums: [...groups.values()].map((g) => g.cross) }
    await this.forEachShard(pass, async (t, chunks) => {
      for (const g of groups.values()) {
        const d = this.source.layouts[g.b].dMlp
        const anchors = new Float32Array(g.anchors.length * t)
        for (const [slot, { a, i }] of g.anchors.entries()) anchors.set((await chunks.get(a)).values.subarray(i * t, (i + 1) * t), slot * t)
        const yb = (await chunks.get(g.b)).values
        const product = new Float32Array(g.anchors.length * d)
        this.o.gemm(anchors, yb.subarray(g.m * d * t, (g.m + 1) * d * t), g.anchors.length, d, t, product)
        kernels.addFloat32Into(g.cross, product)
      }
    })
    const exact = new Float64Array(requests.length).fill(-Infinity)
    for (const g of groups.values()) {
      const d = this.source.layouts[g.b].dMlp
      const { matrix, inverseRoot } = this.o.rotated[g.b].directions(g.m)
      // c = u_a·y_j for each anchor and neuron j of the layer; then E = c·Rᵀ is n·cov(anchor, rotated direction k)
      // over the anchor's norm, as the full computation's D·Rᵀ, and E·(1/σ_k) the correlation.
      const c = new Float32Array(g.anchors.length * d)
      g.anchors.forEach(({ a, i }, slot) => {
        const inv = 1 / Math.sqrt(this.norms2(a)[i])
        for (let j = 0; j < d; j++) c[slot * d + j] = g.cross[slot * d + j] * inv
      })
      const e = new Float32Array(g.anchors.length * d)
      this.o.gemm(c, Float32Array.from(matrix), g.anchors.length, d, d, e)
      g.anchors.forEach(({ request }, slot) => {
        for (let k = 0; k < d; k++) {
          const v = e[slot * d + k] * inverseRoot[k]
          if (v > exact[request]) exact[request] = v
        }
      })
    }
    return exact
  }

  private pairIndex(a: number, b: number): number {
    return this.pairs.findIndex(([x, y]) => x === a && y === b)
  }

  private save<K extends keyof ScreenState>(key: K, value: NonNullable<ScreenState[K]>): NonNullable<ScreenState[K]> {
    this.state[key] = value
    this.o.checkpoint?.(this.state)
    return value
  }
}

interface Request {
  a: number
  i: number
  b: number
  layers: number[]
}

/** A seed's centring: y = float32(x − mean) with the stats stage's means; live = nonzero variance. */
class Centring {
  readonly mean: Float64Array
  readonly live: Uint8Array

  constructor(within: WithinLayerMoments, layout: SeedLayout) {
    const n = layout.nLayers * layout.dMlp
    this.mean = new Float64Array(n)
    this.live = new Uint8Array(n)
    for (let m = 0; m < layout.nLayers; m++) {
      const { mean, scatter } = within.neuronMoments(m)
      this.mean.set(mean, m * layout.dMlp)
      scatter.forEach((c, j) => (this.live[m * layout.dMlp + j] = c > 0 ? 1 : 0))
    }
  }

  /** The centred rows, written to `values` ([neurons, tokens]), and each row's Σ y² (float64, over the rounded values). */
  apply(rows: ChunkRows, tokens: number, values: Float32Array): Chunk {
    const n = this.mean.length
    const { sumSq } = shiftChunk(rows, n, tokens, this.mean, values, 'the seed', 0)
    return { values, norms2: sumSq }
  }
}

interface Chunk {
  values: Float32Array  // [neurons, tokens] centred
  norms2: Float64Array  // [neurons] Σ y²
}

/** One shard's centred chunks, read on demand; as many seeds kept as the memory budget allows (≥ 2). */
class ShardChunks {
  private readonly kept = new Map<number, Promise<Chunk>>()
  private readonly capacity: number

  constructor(
    private readonly source: ScreenSource, private readonly centring: Centring[], private readonly shard: number, private readonly tokens: number,
    memoryBytes: number, private readonly buffers: BufferPool,
  ) {
    const largest = Math.max(...source.layouts.map((l) => l.nLayers * l.dMlp)) * tokens * 4
    this.capacity = Math.max(2, Math.floor(memoryBytes / largest))
  }

  get(seed: number): Promise<Chunk> {
    let chunk = this.kept.get(seed)
    if (chunk) {
      this.kept.delete(seed) // most recently used last
    } else {
      const length = this.centring[seed].mean.length * this.tokens
      // Headroom on a fresh buffer, as shards differ by a few valid tokens.
      const values = this.buffers.take(length) ?? new Float32Array(Math.ceil(length * 1.05)).subarray(0, length)
      chunk = this.source.read(seed, this.shard).then((rows) => this.centring[seed].apply(rows, this.tokens, values))
      if (this.kept.size >= this.capacity) this.kept.delete(this.kept.keys().next().value!)
    }
    this.kept.set(seed, chunk)
    return chunk
  }

  /** Hands the kept chunks' buffers back once the shard is done (evicted ones are left to the garbage collector). */
  async recycle(): Promise<void> {
    for (const chunk of this.kept.values()) this.buffers.giveBack((await chunk).values)
    this.kept.clear()
  }
}
