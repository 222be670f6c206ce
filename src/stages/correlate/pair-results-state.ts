// PairResults as plain typed arrays, for checkpoints taken between layer blocks.
import { BaselineMaxima } from '../../stats/baseline.js'
import { type Maxima, PairMaxima } from '../../stats/maxima.js'
import type { ModelLayout, PairResults } from './pair-sums.js'

export interface SerializedPairResults {
  rows: Maxima
  cols: Maxima
  baselineA: { value: Float64Array; layerValue: Float64Array }
  baselineB: { value: Float64Array; layerValue: Float64Array }
}

export function serializePairResults(r: PairResults): SerializedPairResults {
  return {
    rows: r.maxima.rows,
    cols: r.maxima.cols,
    baselineA: { value: r.baselineA.value, layerValue: r.baselineA.layerValue },
    baselineB: { value: r.baselineB.value, layerValue: r.baselineB.layerValue },
  }
}

export function restorePairResults(s: SerializedPairResults, a: ModelLayout, b: ModelLayout): PairResults {
  const maxima = new PairMaxima(a.nLayers * a.dMlp, b.nLayers * b.dMlp)
  maxima.rows.value.set(s.rows.value)
  maxima.rows.index.set(s.rows.index)
  maxima.cols.value.set(s.cols.value)
  maxima.cols.index.set(s.cols.index)
  const baselineA = new BaselineMaxima(a.nLayers * a.dMlp, b.nLayers)
  baselineA.value.set(s.baselineA.value)
  baselineA.layerValue.set(s.baselineA.layerValue)
  const baselineB = new BaselineMaxima(b.nLayers * b.dMlp, a.nLayers)
  baselineB.value.set(s.baselineB.value)
  baselineB.layerValue.set(s.baselineB.layerValue)
  return { maxima, baselineA, baselineB }
}
