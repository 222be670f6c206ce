// The plan's arithmetic against numbers worked out by hand: a small scenario of three tiny GPT-2 seeds (the e2e
// tests' shape), and the study's headline figures from SPEC §7.
import { describe, expect, test } from 'vitest'
import {
  activationBytes, baselineFlops, crossSumsBytes, estimateCorrelate, estimateExtract, extractUnitMemory, forwardFlopsPerToken,
  GPT2_SMALL, type ModelDims, neuronCount, nonEmbeddingParameters, pairBlocks, pairGemmFlops, recommendMode, type Scenario,
  shardStatsBytes, storedPairMemory, withinLayerFlops,
} from './plan-estimates.js'

// test/helpers/tiny-models.ts's TINY: 2 layers, d_model 32, d_mlp 64 (N = 128), 128 positions, vocabulary 4096.
const TINY: ModelDims = { nLayers: 2, dModel: 32, dMlp: 64, nCtx: 128, dVocab: 4096 }

// 3 seeds, ctx 64, 48 main rows in shards of 16 rows: 3,072 tokens and at most 48 · 63 = 3,024 valid ones per seed.
const scenario: Scenario = {
  seeds: ['s0', 's1', 's2'].map((name) => ({ name, dims: TINY })),
  ctx: 64,
  tokensPerSeed: 48 * 64,
  validPerSeed: 48 * 63,
  shardsPerSeed: 3,
  shardTokens: 16 * 64,
  shardValid: 16 * 63,
  extract: { dtype: 'float32', batch_rows: 8, top_k: 5, mode: 'stored' },
  modeOrigin: 'in the config',
  maxMemoryGiB: 8,
  concurrency: 1,
  parallelSpeedup: 1,
}
const rates = { forward: { flopsPerSecond: 1e9, statisticsPerSecond: 1e7, writeBytesPerSecond: 1e8, loadSecondsPerParameter: 1e-6 }, gemmFlopsPerSecond: 1e10 }
const PARAMETERS = 16_384 + (4096 + 128) * 32 // non-embedding + token and position embeddings: 151,552

describe('formulas on a tiny GPT-2', () => {
  test('parameters, forward FLOPs, activation and statistics bytes', () => {
    expect(neuronCount(TINY)).toBe(128)
    expect(nonEmbeddingParameters(TINY)).toBe(2 * (4 * 32 * 32 + 2 * 32 * 64)) // 16,384
    expect(forwardFlopsPerToken(TINY, 64)).toBe(2 * 16_384 + 4 * 2 * 64 * 32) // 49,152
    expect(activationBytes(128, 1000, 'float32')).toBe(512_000)
    expect(activationBytes(128, 1000, 'float16')).toBe(256_000)
    // 7 float64 moment sums, 257 float64 histogram bins, an int32 heap size, k × (float64 + 2 × int32)
    expect(shardStatsBytes(128, 5)).toBe(128 * (7 * 8 + 257 * 4 + 4 + 5 * 16)) // 149,504
  })

  test('pair GEMM, within-layer and baseline FLOPs', () => {
    expect(pairGemmFlops(128, 128, 3024)).toBe(2 * 128 * 128 * 3024)
    expect(withinLayerFlops(TINY, 3024)).toBe(2 * 2 * 64 * 64 * 3024)
    expect(baselineFlops(TINY, TINY)).toBe(2 * 2 * 128 * 2 * 64 * 64) // both directions, every layer of the other
  })

  test('layer blocks: one pass when the sums fit, one block per layer when only one layer fits', () => {
    // correlate/pair-sums.ts budgets a layer of A at d_mlp · N_b · 16 bytes = 64 · 128 · 16 = 131,072
    expect(pairBlocks(TINY, TINY, 8)).toEqual([{ first: 0, count: 2 }])
    expect(pairBlocks(TINY, TINY, (1.5 * 131_072) / 2 ** 30)).toEqual([{ first: 0, count: 1 }, { first: 1, count: 1 }])
  })

  test('memory of an extract unit and of a correlate pair', () => {
    // three shard buffers (one unit running its model, one writing, one spare) + two models of 12 bytes per
    // parameter (16,384 + (4096 + 128) · 32) + two batches of hook_pre and hook_post (one absorbed, the next queued)
    expect(extractUnitMemory(TINY, scenario)).toBe(3 * 128 * 1008 * 4 + 2 * PARAMETERS * 12 + 2 * 8 * 64 * 128 * 2 * 4) // 6,234,112
    // one layer of A: float64 sums, checkpoint copy and float32 product; within-layer sums of both; a shard of both + shifted copies
    expect(storedPairMemory(TINY, TINY, 1, 1008)).toBe(64 * 128 * 20 + 2 * (2 * 64 * 64 * 8) + (128 + 128 + 64 + 128) * 1008 * 4) // 2,101,248
  })
})

describe('stage estimates of the tiny scenario', () => {
  test('extract, stored: tokens, FLOPs, disk, memory, seconds', () => {
    const e = estimateExtract(scenario, rates, 1e12)
    expect(e.tokens).toBe(3 * 3072)
    expect(e.flops).toBe(3 * 3072 * 49_152) // 452,984,832
    expect(e.diskBytes).toBe(3 * 128 * 3024 * 4 + 3 * 3 * 149_504 + 3 * 4 * PARAMETERS) // activations + shard statistics + weights files
    expect(e.memoryBytes).toBe(6_234_112) // extractUnitMemory above
    // forward FLOPs, statistics per neuron·token, writing the activations, one model load per seed (its units borrow it)
    expect(e.seconds).toBeCloseTo(452_984_832 / 1e9 + (3 * 128 * 3072) / 1e7 + (3 * 128 * 3024 * 4) / 1e8 + 3 * PARAMETERS * 1e-6, 9)
    expect(e.notes).toContainEqual(expect.stringMatching(/^mode: stored in the config; recommended stored: /))
  })

  test('correlate, stored: FLOPs, memory, checkpoint and blocks', () => {
    const e = estimateCorrelate(scenario, rates)
    const cross = 3 * 2 * 128 * 128 * 3024
    const baseline = 3 * (2 * 2 * 128 * 2 * 64 * 64) // the within-layer moments are the stats stage's, once per seed
    expect(e.flops).toBe(cross + baseline) // 309,854,208
    expect(e.seconds).toBeCloseTo((cross + baseline) / 1e10, 12)
    expect(e.memoryBytes).toBe(128 * 128 * 20 + 2 * 65_536 + 512 * 1008 * 4) // 2,523,136
    expect(e.diskBytes).toBe(3 * 256 * 40 + 2 * 64 * 128 * 8) // pair tables + one pair's checkpoint (the cross sums)
    expect(e.notes).toContainEqual(expect.stringMatching(/fit max_memory_gib 8: one pass per pair/))

    const tight = estimateCorrelate({ ...scenario, maxMemoryGiB: (1.5 * 131_072) / 2 ** 30 }, rates)
    expect(tight.notes).toContainEqual(expect.stringMatching(/^blocking needed: .* 2 blocks of ≤ 1 layer, each one more pass over the shards$/))
    expect(tight.memoryBytes).toBe(2_101_248)

    // GPT-2 small's seeds with a budget that holds a whole pair: blocks anyway, and says why.
    const wide = { ...scenario, seeds: scenario.seeds.map((seed) => ({ ...seed, dims: GPT2_SMALL })), maxMemoryGiB: 32 }
    expect(estimateCorrelate(wide, rates).notes).toContainEqual(expect.stringMatching(
      /^blocking needed: .* fit max_memory_gib 32, but a block's sums stay within 4 GiB.*, so A's layers go in 3 blocks of ≤ 4 layers/))
  })

  test('streamed: no activation files; the pair sums move to extract and correlate only finishes them', () => {
    const streamed = { ...scenario, extract: { ...scenario.extract, mode: 'streamed' as const } }
    const e = estimateExtract(streamed, rates, 1e12)
    const cross = 3 * 2 * 128 * 128 * 3024
    const within = 3 * (2 * 2 * 64 * 64 * 3024) // once per seed
    expect(e.flops).toBe(3 * 3072 * 49_152 + cross + within)
    expect(e.seconds).toBeCloseTo((3 * 3072 * 49_152) / 1e9 + (3 * 128 * 3072) / 1e7 + (cross + within) / 1e10 + 3 * PARAMETERS * 1e-6, 9)
    // per seed one statistics file and its within-layer sums, per pair the float64 cross sums; twice with the checkpoint
    expect(e.diskBytes).toBe(2 * (3 * 149_504 + 3 * 65_536 + 3 * crossSumsBytes(128, 128)) + 3 * 4 * PARAMETERS) // + weights files
    const c = estimateCorrelate(streamed, rates)
    expect(c.flops).toBe(3 * (2 * 2 * 128 * 2 * 64 * 64))
  })
})

describe("the study's scale (SPEC §7)", () => {
  const N = neuronCount(GPT2_SMALL)

  test('GPT-2 small: N = 36,864, 0.19 GFLOP per token forward, 2.7e17 FLOPs per pair at 1e8 tokens', () => {
    expect(N).toBe(36_864)
    expect(Math.abs(forwardFlopsPerToken(GPT2_SMALL, 512) / 0.19e9 - 1)).toBeLessThan(0.01) // 0.1887 GFLOP
    expect(Math.abs(pairGemmFlops(N, N, 1e8) / 2.7e17 - 1)).toBeLessThan(0.01) // 2.718e17
  })

  test('74 KB of float16 activations per token per seed: ~37 TB for 5 seeds × 1e8 tokens', () => {
    expect(activationBytes(N, 1, 'float16')).toBe(73_728)
    expect(Math.abs((5 * activationBytes(N, 1e8, 'float16')) / 37e12 - 1)).toBeLessThan(0.01) // 36.9 TB
  })

  test('accumulators: 5.1 GiB float32, 10.1 GiB float64 per pair; three layer blocks under max_memory_gib 8, and above', () => {
    expect((N * N * 4) / 2 ** 30).toBeCloseTo(5.1, 1)
    expect(crossSumsBytes(N, N) / 2 ** 30).toBeCloseTo(10.1, 1)
    expect(pairBlocks(GPT2_SMALL, GPT2_SMALL, 8).map((b) => b.count)).toEqual([4, 4, 4])
    // A block's float64 sums stay within 4 GiB (what a checkpoint can write from one array in Node 20).
    expect(pairBlocks(GPT2_SMALL, GPT2_SMALL, 32).map((b) => b.count)).toEqual([4, 4, 4])
  })

  test('the mode: streamed when activations would not fit or the tokens are many, stored for small runs', () => {
    expect(recommendMode(37e12, 80e9, 1e8)).toMatchObject({ mode: 'streamed', why: expect.stringMatching(/^37.0 TB of activations would take 463× the 80.0 GB free$/) })
    expect(recommendMode(1e9, 80e9, 1e7).mode).toBe('streamed')
    expect(recommendMode(45e9, 80e9, 1e5).mode).toBe('streamed') // over half the free disk
    expect(recommendMode(1e6, 80e9, 1e4)).toMatchObject({ mode: 'stored', why: expect.stringMatching(/^1.0 MB of activations fit easily/) })
  })
})
