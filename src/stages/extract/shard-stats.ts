// A shard's statistics state as a safetensors file: the exact float64 moment sums and histogram counts and the
// top-k heaps, so the stats stage can merge shards exactly (SPEC §4: moment merging, not averaging averages).
import { readSafetensors, type TensorToWrite } from '../../io/safetensors.js'
import { HISTOGRAM_BINS, type MomentsState, type NeuronMoments } from '../../stats/moments.js'
import type { TopActivations, TopActivationsState } from '../../stats/top-activations.js'

const MOMENT_FIELDS = ['count', 'mean', 'm2', 'm3', 'm4', 'positive', 'nonFinite'] as const

/** The tensors of a shard's statistics, viewing the live sums (write them at once: no copies of a 76 MB histogram). */
export function shardStatsTensors(moments: NeuronMoments, top: TopActivations): Record<string, TensorToWrite> {
  const m = moments.sums
  const t = top.sums
  const n = m.nNeurons
  const tensors: Record<string, TensorToWrite> = {}
  for (const field of MOMENT_FIELDS) tensors[`moments.${field}`] = { dtype: 'F64', shape: [n], data: m[field] }
  tensors['moments.histogram'] = histogramTensor(m.histogram, n)
  tensors['top.size'] = { dtype: 'I32', shape: [n], data: t.size }
  tensors['top.value'] = { dtype: 'F64', shape: [n, t.k], data: t.value }
  tensors['top.row'] = { dtype: 'I32', shape: [n, t.k], data: t.row }
  tensors['top.pos'] = { dtype: 'I32', shape: [n, t.k], data: t.pos }
  return tensors
}

// Histogram counts are integers: int32 halves the file (its largest part: 257 counts per neuron) whenever they
// fit, which a shard's always do; a whole corpus's may not (streamed mode), then they stay float64.
// One pass: checking and converting separately took ~90 ms per GPT-2-small shard, on the thread feeding the model.
function histogramTensor(histogram: Float64Array, n: number): TensorToWrite {
  const shape = [n, HISTOGRAM_BINS]
  const counts = new Int32Array(histogram.length)
  for (let i = 0; i < histogram.length; i++) {
    if (histogram[i] > 0x7fffffff) return { dtype: 'F64', shape, data: histogram }
    counts[i] = histogram[i]
  }
  return { dtype: 'I32', shape, data: counts }
}

export function readShardStats(path: string): { moments: MomentsState; top: TopActivationsState } {
  const tensors = readSafetensors(path)
  const get = <T,>(name: string) => {
    const tensor = tensors.get(name)
    if (!tensor) throw new Error(`${path}: missing tensor ${name}`)
    return tensor as unknown as { shape: number[]; data: T }
  }
  const n = get<Float64Array>('moments.count').shape[0]
  const moments = { nNeurons: n, histogram: Float64Array.from(get<Float64Array | Int32Array>('moments.histogram').data) } as MomentsState
  for (const field of MOMENT_FIELDS) moments[field] = get<Float64Array>(`moments.${field}`).data
  const value = get<Float64Array>('top.value')
  return {
    moments,
    top: {
      nNeurons: n,
      k: value.shape[1],
      size: get<Int32Array>('top.size').data,
      value: value.data,
      row: get<Int32Array>('top.row').data,
      pos: get<Int32Array>('top.pos').data,
    },
  }
}
