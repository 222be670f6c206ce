// Variance reduction η² of each neuron's activation by binary token features (SPEC §5), streamed from sums:
//   VR = (Var(a) − [p·Var(a|F) + (1−p)·Var(a|¬F)]) / Var(a)
// With population variances this is the between-group share of the total sum of squares,
//   VR = [n_F·n_¬F/n · (μ_F − μ_¬F)²] / Σ(a − μ)²,
// so per feature only its token count and per-neuron activation sum are needed (not Σ_F a²).

/** η² from sufficient statistics; NaN when Var(a) = 0 or the feature is always or never present. */
export function varianceReduction(n: number, sum: number, sumSq: number, nF: number, sumF: number): number {
  const nNot = n - nF
  const total = sumSq - (sum * sum) / n
  // Zero variance, up to the rounding of the sums it comes from (the same rule as Pearson's dead neurons).
  if (!(total > 16 * Number.EPSILON * sumSq) || nF <= 0 || nNot <= 0) return NaN
  const gap = sumF / nF - (sum - sumF) / nNot
  return ((nF * nNot) / n) * gap * gap / total
}

export interface VarianceReductionState {
  nNeurons: number
  nFeatures: number
  n: number
  shifted: boolean
  shift: Float64Array         // [neurons] reference values (the first chunk's means): sums are of a − shift
  sum: Float64Array           // [neurons]
  sumSq: Float64Array         // [neurons]
  featureCount: Float64Array  // [features] tokens where the feature holds
  featureSum: Float64Array    // [neurons, features] Σ over those tokens
}

export class VarianceReduction {
  readonly nNeurons: number
  readonly nFeatures: number
  private readonly s: VarianceReductionState

  constructor(nNeurons: number, nFeatures: number) {
    this.nNeurons = nNeurons
    this.nFeatures = nFeatures
    this.s = {
      nNeurons, nFeatures, n: 0, shifted: false, shift: new Float64Array(nNeurons), sum: new Float64Array(nNeurons),
      sumSq: new Float64Array(nNeurons), featureCount: new Float64Array(nFeatures),
      featureSum: new Float64Array(nNeurons * nFeatures),
    }
  }

  static fromState(state: VarianceReductionState): VarianceReduction {
    const vr = new VarianceReduction(state.nNeurons, state.nFeatures)
    vr.merge(state)
    return vr
  }

  state(): VarianceReductionState {
    const s = this.s
    return {
      nNeurons: s.nNeurons, nFeatures: s.nFeatures, n: s.n, shifted: s.shifted, shift: s.shift.slice(),
      sum: s.sum.slice(), sumSq: s.sumSq.slice(), featureCount: s.featureCount.slice(),
      featureSum: s.featureSum.slice(),
    }
  }

  /**
   * Add a chunk of valid tokens: `acts` [neurons, tokens] neuron-major, `features` [features, tokens] with 1
   * where the feature holds. Cost: neurons × (tokens + feature hits).
   */
  add(acts: Float32Array, features: Uint8Array, tokens: number): void {
    if (tokens === 0) return
    const s = this.s
    const nn = this.nNeurons, nf = this.nFeatures
    if (acts.length !== nn * tokens || features.length !== nf * tokens) {
      throw new Error(`variance-reduction: acts ${acts.length} and features ${features.length} values do not match ` +
        `[${nn}, ${tokens}] and [${nf}, ${tokens}]`)
    }
    for (let i = 0; i < acts.length; i++) {
      if (acts[i] - acts[i] !== 0) {
        throw new Error(`variance-reduction: non-finite activation ${acts[i]} for neuron ${Math.floor(i / tokens)} ` +
          `at token ${i % tokens} of the chunk`)
      }
    }
    if (!s.shifted) {
      for (let i = 0; i < nn; i++) {
        let sum = 0
        for (let t = i * tokens; t < (i + 1) * tokens; t++) sum += acts[t]
        s.shift[i] = sum / tokens
      }
      s.shifted = true
    }
    const hits: Int32Array[] = []
    for (let f = 0; f < nf; f++) {
      const list: number[] = []
      for (let t = 0; t < tokens; t++) if (features[f * tokens + t]) list.push(t)
      hits.push(Int32Array.from(list))
      s.featureCount[f] += list.length
    }
    for (let i = 0; i < nn; i++) {
      const base = i * tokens, c = s.shift[i]
      let s1 = 0, s2 = 0
      for (let t = 0; t < tokens; t++) {
        const x = acts[base + t] - c
        s1 += x
        s2 += x * x
      }
      s.sum[i] += s1
      s.sumSq[i] += s2
      for (let f = 0; f < nf; f++) {
        const list = hits[f]
        let sf = 0
        for (let h = 0; h < list.length; h++) sf += acts[base + list[h]] - c
        s.featureSum[i * nf + f] += sf
      }
    }
    s.n += tokens
  }

  /** Merge a shard over the same neurons and features (re-expressed around this accumulator's shifts). */
  merge(other: VarianceReductionState | VarianceReduction): void {
    const o = other instanceof VarianceReduction ? other.s : other
    const s = this.s
    if (o.nNeurons !== s.nNeurons || o.nFeatures !== s.nFeatures) {
      throw new Error(`variance-reduction: cannot merge ${o.nNeurons}×${o.nFeatures} into ${s.nNeurons}×${s.nFeatures}`)
    }
    if (o.n === 0) return
    if (!s.shifted) {
      s.shift.set(o.shift)
      s.shifted = true
    }
    const nf = s.nFeatures
    for (let f = 0; f < nf; f++) s.featureCount[f] += o.featureCount[f]
    for (let i = 0; i < s.nNeurons; i++) {
      const d = o.shift[i] - s.shift[i]  // a − shift_this = (a − shift_other) + d
      s.sumSq[i] += o.sumSq[i] + 2 * d * o.sum[i] + o.n * d * d
      s.sum[i] += o.sum[i] + o.n * d
      for (let f = 0; f < nf; f++) s.featureSum[i * nf + f] += o.featureSum[i * nf + f] + o.featureCount[f] * d
    }
    s.n += o.n
  }

  /** η², [neurons, features] row-major; NaN for a zero-variance neuron or a feature with p ∈ {0, 1}. */
  result(): Float64Array {
    const s = this.s
    const nf = this.nFeatures
    const out = new Float64Array(this.nNeurons * nf)
    for (let i = 0; i < this.nNeurons; i++) {
      for (let f = 0; f < nf; f++) {
        out[i * nf + f] = varianceReduction(s.n, s.sum[i], s.sumSq[i], s.featureCount[f], s.featureSum[i * nf + f])
      }
    }
    return out
  }
}
