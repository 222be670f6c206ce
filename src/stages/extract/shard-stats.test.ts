import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { writeSafetensors } from '../../io/safetensors.js'
import { HISTOGRAM_BINS, NeuronMoments } from '../../stats/moments.js'
import { TopActivations } from '../../stats/top-activations.js'
import { readShardStats, shardStatsTensors } from './shard-stats.js'

const dir = mkdtempSync(join(tmpdir(), 'seedscope-shard-stats-'))

function momentsWithHistogram(histogram: Float64Array): NeuronMoments {
  const n = histogram.length / HISTOGRAM_BINS
  const zeros = () => new Float64Array(n)
  return NeuronMoments.fromState({ nNeurons: n, count: zeros(), mean: zeros(), m2: zeros(), m3: zeros(), m4: zeros(), positive: zeros(), nonFinite: zeros(), histogram })
}

describe('shard statistics file', () => {
  it('stores histogram counts as int32 when they fit, and reads back the same counts', () => {
    const histogram = new Float64Array(3 * HISTOGRAM_BINS).map((_, i) => (i * 7919) % 1000)
    histogram[5] = 2 ** 31 - 1 // the largest int32
    const tensors = shardStatsTensors(momentsWithHistogram(histogram), new TopActivations(3, 2))
    expect(tensors['moments.histogram'].dtype).toBe('I32')
    const path = join(dir, 'int32.safetensors')
    writeSafetensors(path, tensors)
    expect(readShardStats(path).moments.histogram).toEqual(histogram)
  })

  it('keeps float64 when a count does not fit int32 (a whole corpus can exceed it), never wrapping it', () => {
    const histogram = new Float64Array(2 * HISTOGRAM_BINS).fill(3)
    histogram[HISTOGRAM_BINS + 4] = 2 ** 31 // one more than int32 holds
    const tensors = shardStatsTensors(momentsWithHistogram(histogram), new TopActivations(2, 2))
    expect(tensors['moments.histogram'].dtype).toBe('F64')
    const path = join(dir, 'float64.safetensors')
    writeSafetensors(path, tensors)
    expect(readShardStats(path).moments.histogram).toEqual(histogram)
  })
})
