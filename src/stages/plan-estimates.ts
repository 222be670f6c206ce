// What a run costs (SPEC §7), as arithmetic: from a scenario (the seeds' shapes, tokens per seed, the config's
// knobs) and this machine's calibrated rates to each stage's tokens, FLOPs, disk, memory and seconds. Pure:
// plan-scenario.ts builds scenarios (from a config, or the study's scale), calibrate.ts measures the rates.
import type { ExtractConfig } from '../config.js'
import type { ModelShape } from '../model/hf-config.js'
import { bytes } from '../runner/plan.js'
import type { PlanEstimate } from '../runner/stage.js'
import { HISTOGRAM_BINS } from '../stats/moments.js'
import { layerBlocks, type LayerBlock, unorderedPairs } from './correlate/pair-sums.js'
import { streamBlocks } from './extract/stream.js'

export type ModelDims = Pick<ModelShape, 'nLayers' | 'dModel' | 'dMlp' | 'dVocab' | 'nCtx'>

/** GPT-2 small, the study's model (SPEC §7): N = 12 · 3072 = 36,864 neurons. */
export const GPT2_SMALL: ModelDims = { nLayers: 12, dModel: 768, dMlp: 3072, dVocab: 50257, nCtx: 1024 }

export interface Scenario {
  seeds: readonly { name: string; dims: ModelDims }[]
  ctx: number
  tokensPerSeed: number // forward tokens: main rows × ctx
  validPerSeed: number // tokens that enter statistics and correlation (at most main rows × (ctx − 1))
  shardsPerSeed: number
  shardTokens: number // forward tokens of one shard (rows_per_shard × ctx)
  shardValid: number // valid tokens of one shard
  extract: Pick<ExtractConfig, 'dtype' | 'batch_rows' | 'top_k' | 'mode'>
  modeOrigin: string // why extract.mode is what it is: 'in the config', or chosen for a projection
  maxMemoryGiB: number // correlate.max_memory_gib
  concurrency: number // execution.concurrency: stored extract units at once
  parallelSpeedup: number // how much faster concurrent stored extract units finish: min(concurrency, cores / threads)
}

/** This machine's calibrated rates (calibrate.ts); an absent rate leaves that time unknown. */
export interface Rates {
  // effective forward FLOP/s; neuron·tokens/s of statistics; seconds to load a model, per parameter
  forward?: { flopsPerSecond: number; statisticsPerSecond: number; writeBytesPerSecond: number; loadSecondsPerParameter: number }
  gemmFlopsPerSecond?: number
}

// Memory a loaded model takes at its peak, per parameter: the float32 canonical weights, the serialised ONNX
// graph that embeds them, and onnxruntime's own copy while the session is created.
const MODEL_BYTES_PER_PARAMETER = 12
const PAIR_TABLE_BYTES_PER_NEURON = 40 // correlate/<a>--<b>.parquet: ~8 narrow columns per neuron of either seed
const STORED_TOKENS_LIMIT = 1e6 // per seed: beyond it, activation files take hours to write and read back

export const neuronCount = (m: Pick<ModelDims, 'nLayers' | 'dMlp'>) => m.nLayers * m.dMlp

/** Attention (W_Q, W_K, W_V, W_O: 4·d²) and MLP (W_in, W_out: 2·d·d_mlp) weights; biases and norms are < 1%. */
export function nonEmbeddingParameters(m: Pick<ModelDims, 'nLayers' | 'dModel' | 'dMlp'>): number {
  return m.nLayers * (4 * m.dModel * m.dModel + 2 * m.dModel * m.dMlp)
}

export function parameterCount(m: ModelDims): number {
  return nonEmbeddingParameters(m) + (m.dVocab + m.nCtx) * m.dModel
}

/**
 * Forward FLOPs per token of the extraction graph (no unembedding): 2 per non-embedding weight, plus attention's
 * QKᵀ and AV at full ctx (4·n_layers·ctx·d_model). GPT-2 small at ctx 512: 0.19 GFLOP (SPEC §7).
 */
export function forwardFlopsPerToken(m: Pick<ModelDims, 'nLayers' | 'dModel' | 'dMlp'>, ctx: number): number {
  return 2 * nonEmbeddingParameters(m) + 4 * m.nLayers * ctx * m.dModel
}

export const dtypeBytes = (dtype: ExtractConfig['dtype']) => (dtype === 'float16' ? 2 : 4)

/** Stored activations: one value per neuron per valid token (Parquet's per-row overhead is negligible). */
export function activationBytes(neurons: number, validTokens: number, dtype: ExtractConfig['dtype']): number {
  return neurons * validTokens * dtypeBytes(dtype)
}

/** One shard's statistics file (extract/shard-stats.ts): 7 float64 moment sums, int32 histogram counts, top-k heaps. */
export function shardStatsBytes(neurons: number, topK: number): number {
  return neurons * (7 * 8 + HISTOGRAM_BINS * 4 + 4 + topK * (8 + 4 + 4))
}

/** The all-pairs GEMM of one seed pair: 2·N_a·N_b·T (SPEC §7: 2.7e17 for GPT-2 small at T = 1e8). */
export function pairGemmFlops(neuronsA: number, neuronsB: number, tokens: number): number {
  return 2 * neuronsA * neuronsB * tokens
}

/** One seed's within-layer second moments Σ b bᵀ per layer (for the rotation baseline): 2·L·d_mlp²·T. */
export function withinLayerFlops(m: Pick<ModelDims, 'nLayers' | 'dMlp'>, tokens: number): number {
  return 2 * m.nLayers * m.dMlp * m.dMlp * tokens
}

/** float64 cross sums of one pair: N_a·N_b·8. */
export function crossSumsBytes(neuronsA: number, neuronsB: number): number {
  return neuronsA * neuronsB * 8
}

/** float64 within-layer sums of one seed: L·d_mlp²·8. */
export function withinLayerBytes(m: Pick<ModelDims, 'nLayers' | 'dMlp'>): number {
  return m.nLayers * m.dMlp * m.dMlp * 8
}

/** A's layers in blocks whose cross sums fit correlate.max_memory_gib (the correlate stage's own split). */
export function pairBlocks(a: ModelDims, b: ModelDims, maxMemoryGiB: number): LayerBlock[] {
  return layerBlocks(a, b, maxMemoryGiB * 2 ** 30)
}

/**
 * Peak memory of one forward slot of stored-mode extract: the unit running its model (its shard buffer, the
 * batch being absorbed and the next one, queued), the unit before it writing its shard (pipelineDepth 2), a spare
 * shard buffer kept for the next unit, and two models (the next seed's loads while this one runs).
 */
export function extractUnitMemory(m: ModelDims, s: Pick<Scenario, 'shardValid' | 'ctx' | 'extract'>): number {
  const shard = neuronCount(m) * s.shardValid * 4
  return 3 * shard + 2 * modelMemory(m) + 2 * batchOutputBytes(m, s)
}

/**
 * Peak memory of one stored-mode correlate pair: the block's float64 cross sums, their copy in a checkpoint and
 * the float32 chunk product; both seeds' within-layer sums; one shard of both seeds as float32 plus the
 * mean-shifted copies the GEMM reads (PearsonAccumulator.add).
 */
export function storedPairMemory(a: ModelDims, b: ModelDims, blockLayers: number, shardValid: number): number {
  const blockNeurons = blockLayers * a.dMlp
  const nA = neuronCount(a), nB = neuronCount(b)
  return blockNeurons * nB * (8 + 8 + 4) + withinLayerBytes(a) + withinLayerBytes(b) + (nA + nB + blockNeurons + nB) * shardValid * 4
}

/** The streamed pass's layer blocks (extract/stream.ts streamBlocks): how many passes, and A's layers per pass. */
export function streamedPasses(s: Pick<Scenario, 'seeds' | 'maxMemoryGiB'>): { passes: number; layers: number } {
  const blocks = streamBlocks(s.seeds.map((seed) => seed.dims), s.maxMemoryGiB)
  return blocks ? { passes: blocks.length, layers: blocks[0].count } : { passes: 1, layers: Math.max(...s.seeds.map((seed) => seed.dims.nLayers)) }
}

/**
 * Peak memory of a streamed extract unit (extract/stream.ts): every seed's model, batch outputs, shard buffer
 * and within-layer sums, and every pair's float64 cross sums for the pass's block of A's layers, copied once more
 * while a checkpoint is written; plus one pair's chunk product and shifted shard copies at a time.
 */
export function streamedMemory(s: Pick<Scenario, 'seeds' | 'shardValid' | 'ctx' | 'extract' | 'maxMemoryGiB'>): number {
  const { layers } = streamedPasses(s)
  let memory = 0
  for (const { dims } of s.seeds) {
    memory += modelMemory(dims) + batchOutputBytes(dims, s) + neuronCount(dims) * s.shardValid * 4 + 2 * withinLayerBytes(dims)
    memory += 2 * shardStatsBytes(neuronCount(dims), s.extract.top_k)
  }
  let transient = 0
  for (const [a, b] of unorderedPairs(s.seeds)) {
    const rowsA = Math.min(layers, a.dims.nLayers) * a.dims.dMlp, nB = neuronCount(b.dims)
    memory += 2 * rowsA * nB * 8
    transient = Math.max(transient, rowsA * nB * 4 + (rowsA + nB) * s.shardValid * 4)
  }
  return memory + transient
}

export function modelMemory(m: ModelDims): number {
  return parameterCount(m) * MODEL_BYTES_PER_PARAMETER
}

/** hook_pre and hook_post of every layer for one batch, float32. */
function batchOutputBytes(m: ModelDims, s: Pick<Scenario, 'ctx' | 'extract'>): number {
  return s.extract.batch_rows * s.ctx * neuronCount(m) * 2 * 4
}

/** Stored or streamed, and why in one line: stored only for modest token counts whose activations fit easily. */
export function recommendMode(storedBytes: number, freeDiskBytes: number | undefined, tokensPerSeed: number): { mode: 'stored' | 'streamed'; why: string } {
  const activations = `${decimalBytes(storedBytes)} of activations`
  if (freeDiskBytes !== undefined && storedBytes > freeDiskBytes / 2) {
    const share = storedBytes > freeDiskBytes ? `${(storedBytes / freeDiskBytes).toFixed(storedBytes > 10 * freeDiskBytes ? 0 : 1)}× the` : 'over half the'
    return { mode: 'streamed', why: `${activations} would take ${share} ${decimalBytes(freeDiskBytes)} free` }
  }
  if (tokensPerSeed > STORED_TOKENS_LIMIT) {
    return { mode: 'streamed', why: `${tokensPerSeed.toExponential(1)} tokens per seed is past ~1e6, where writing and re-reading ${activations} costs more than it saves` }
  }
  const room = freeDiskBytes === undefined ? 'free disk unknown' : `${decimalBytes(freeDiskBytes)} free`
  return { mode: 'stored', why: `${activations} fit easily (${room}) and ${Math.round(tokensPerSeed).toLocaleString('en-US')} tokens per seed is modest; stored shards allow re-analysis` }
}

// ---- per-stage estimates ----

/** Pair sums of every pair over every token (each mode's GEMM work): 2·N_a·N_b·T per pair, and within-layer moments. */
function pairSumsWork(s: Scenario) {
  const pairs = unorderedPairs(s.seeds)
  const T = s.validPerSeed
  const cross = pairs.reduce((sum, [a, b]) => sum + pairGemmFlops(neuronCount(a.dims), neuronCount(b.dims), T), 0)
  // Each seed's within-layer moments, once: in the stats stage (stored mode) or during extract (streamed mode).
  const within = s.seeds.reduce((sum, { dims }) => sum + withinLayerFlops(dims, T), 0)
  return { pairs, cross, within }
}

/**
 * The rotation baseline of one pair, from the finished sums (SPEC §3, no second pass): per layer of the rotated
 * seed, every anchor's correlations with that layer times Rᵀ, in both directions.
 */
export function baselineFlops(a: ModelDims, b: ModelDims): number {
  return 2 * (neuronCount(a) * b.nLayers * b.dMlp * b.dMlp + neuronCount(b) * a.nLayers * a.dMlp * a.dMlp)
}

/**
 * extract: the forward passes and per-neuron statistics of every seed; stored mode writes activation shards,
 * streamed mode (extract/stream.ts) instead feeds every pair's cross sums here, so its GEMM work is extract's.
 */
export function estimateExtract(s: Scenario, rates: Rates, freeDiskBytes: number | undefined): PlanEstimate {
  const stored = s.extract.mode === 'stored'
  let forwardFlops = 0, activations = 0, statisticsWork = 0, statistics = 0, memory = 0
  for (const { dims } of s.seeds) {
    const neurons = neuronCount(dims)
    forwardFlops += s.tokensPerSeed * forwardFlopsPerToken(dims, s.ctx)
    statisticsWork += neurons * s.tokensPerSeed
    activations += activationBytes(neurons, s.validPerSeed, s.extract.dtype)
    statistics += (stored ? s.shardsPerSeed : 1) * shardStatsBytes(neurons, s.extract.top_k)
    memory = Math.max(memory, s.concurrency * extractUnitMemory(dims, s)) // `concurrency` forward slots at once
  }
  const f = rates.forward
  const forwardSeconds = f && forwardFlops / f.flopsPerSecond
  const statisticsSeconds = f && statisticsWork / f.statisticsPerSecond
  // Every model loads once: a seed's shard units borrow one loaded model (src/model/model-worker.ts), in as many
  // copies as units run their models at once.
  const copies = stored ? Math.min(s.concurrency, s.shardsPerSeed) : 1
  const loads = f && s.seeds.reduce((sum, { dims }) => sum + parameterCount(dims), 0) * f.loadSecondsPerParameter * copies
  const first = s.seeds[0].dims
  const recommended = recommendMode(activations, freeDiskBytes, s.tokensPerSeed)
  // Each seed's float32 weights as the file onnxruntime maps (src/model/weights-file.ts), at most this size.
  const weights = s.seeds.reduce((sum, { dims }) => sum + 4 * parameterCount(dims), 0)
  const notes = [
    `forward ${(forwardFlopsPerToken(first, s.ctx) / 1e9).toPrecision(2)} GFLOP/token (2 × ${count(nonEmbeddingParameters(first))} ` +
      `non-embedding parameters + attention at ctx ${s.ctx}); ${count(s.tokensPerSeed)} tokens × ${s.seeds.length} seeds`,
    `model weights: up to ${decimalBytes(weights)} in .cache/weights, written once and reused by later runs`,
  ]
  const perToken = `${decimalBytes(activations / s.seeds.length / Math.max(1, s.validPerSeed))} per valid token per seed at ${s.extract.dtype}`
  let estimate: PlanEstimate
  if (stored) {
    notes.push(`stored: ${decimalBytes(activations)} of activations (${perToken}) + ${decimalBytes(statistics)} of shard statistics`)
    const writeSeconds = f && activations / f.writeBytesPerSecond
    const seconds = f && (forwardSeconds! + statisticsSeconds! + writeSeconds! + loads!) / s.parallelSpeedup
    if (f) {
      const parts = `forward ${duration(forwardSeconds!)} + statistics ${duration(statisticsSeconds!)} + writing ${duration(writeSeconds!)} + loading models ${duration(loads!)}`
      notes.push(`time: ${parts}${s.parallelSpeedup > 1 ? `, ${s.parallelSpeedup} units at once` : ''}`)
    }
    estimate = { tokens: s.tokensPerSeed * s.seeds.length, flops: forwardFlops, diskBytes: activations + statistics + weights, memoryBytes: memory, seconds }
  } else {
    const work = pairSumsWork(s)
    // Outputs: per seed statistics and within-layer sums, per pair the float64 cross sums; the checkpoint holds the
    // same state again until the unit finishes.
    const sums = s.seeds.reduce((sum, { dims }) => sum + withinLayerBytes(dims), 0) +
      work.pairs.reduce((sum, [a, b]) => sum + crossSumsBytes(neuronCount(a.dims), neuronCount(b.dims)), 0)
    // Each layer block is one more pass: every seed's forward pass again (the first pass alone sums the
    // statistics), the pair sums split between the passes.
    const { passes, layers } = streamedPasses(s)
    const gemmSeconds = rates.gemmFlopsPerSecond && (work.cross + work.within) / rates.gemmFlopsPerSecond
    const seconds = f && gemmSeconds !== undefined ? passes * (forwardSeconds! + loads!) + statisticsSeconds! + gemmSeconds : undefined
    if (seconds !== undefined) {
      const passTimes = `forward ${duration(forwardSeconds!)} + loading models ${duration(loads!)}`
      notes.push(`time: ${passes > 1 ? `${passes} × (${passTimes})` : passTimes} + statistics ${duration(statisticsSeconds!)} + pair sums ${duration(gemmSeconds!)}`)
    }
    const allPairsSums = work.pairs.length * crossSumsBytes(neuronCount(first), neuronCount(first))
    notes.push(
      `streamed: no activation files (stored would write ${decimalBytes(activations)}: ${perToken}); ` +
        `${decimalBytes(sums + statistics)} of sums and statistics, twice while the checkpoint exists`,
      passes > 1
        ? `streamed: all ${work.pairs.length} pairs' float64 sums (${gib(allPairsSums)}) ` +
          `${overBudget(2 * allPairsSums, s.maxMemoryGiB)}: ${passes} passes over the data, each with ≤ ${layers} of A's layers`
        : `streamed: all ${work.pairs.length} pairs' float64 sums fit max_memory_gib ${s.maxMemoryGiB}: one pass`,
    )
    estimate = {
      tokens: s.tokensPerSeed * s.seeds.length,
      flops: passes * forwardFlops + work.cross + work.within,
      diskBytes: 2 * (sums + statistics) + weights,
      memoryBytes: streamedMemory(s),
      seconds,
    }
  }
  notes.push(`mode: ${s.extract.mode} ${s.modeOrigin}; recommended ${recommended.mode}: ${recommended.why}`)
  return { ...estimate, notes }
}

/**
 * correlate: stored mode streams the shards back through the pair sums, one pair at a time, in layer blocks that
 * fit max_memory_gib; streamed mode only finishes the sums extract wrote. Both then compute the baseline.
 */
export function estimateCorrelate(s: Scenario, rates: Rates): PlanEstimate {
  const stored = s.extract.mode === 'stored'
  const work = pairSumsWork(s)
  let baseline = 0, memory = 0, checkpoint = 0, tables = 0, blockNote = ''
  for (const [a, b] of work.pairs) {
    const nA = neuronCount(a.dims), nB = neuronCount(b.dims)
    baseline += baselineFlops(a.dims, b.dims)
    tables += (nA + nB) * PAIR_TABLE_BYTES_PER_NEURON
    const within = withinLayerBytes(a.dims) + withinLayerBytes(b.dims)
    const blocks = pairBlocks(a.dims, b.dims, s.maxMemoryGiB)
    blockNote ||= blockSentence(a.dims, b.dims, blocks, s.maxMemoryGiB, stored ? undefined : work.pairs.length)
    if (stored) {
      const widest = Math.max(...blocks.map((k) => k.count))
      memory = Math.max(memory, storedPairMemory(a.dims, b.dims, widest, s.shardValid))
      checkpoint = Math.max(checkpoint, widest * a.dims.dMlp * nB * 8) // the open block's cross sums
    } else {
      // One pair's sums read back from extract's file, and the accumulator they are merged into (streamed.ts).
      memory = Math.max(memory, 2 * crossSumsBytes(nA, nB) + within)
    }
  }
  const flops = baseline + (stored ? work.cross : 0)
  const seconds = rates.gemmFlopsPerSecond && flops / rates.gemmFlopsPerSecond
  const first = work.pairs[0]
  if (!first) return { notes: ['fewer than 2 seeds: nothing to correlate'] }
  const n = neuronCount(first[0].dims)
  const notes = [
    `${work.pairs.length} pair${work.pairs.length === 1 ? '' : 's'} × 2·N²·T = ${pairGemmFlops(n, neuronCount(first[1].dims), s.validPerSeed).toExponential(2)} FLOPs ` +
      `(N = ${n.toLocaleString('en-US')}, T = ${count(s.validPerSeed)} valid tokens)` +
      (stored ? `; each seed's within-layer moments (${percent(work.within, work.cross)} more) come from the stats stage` : ', summed during extract (streamed)') +
      `; baseline rotations ${(baseline / work.pairs.length).toExponential(1)} per pair`,
    `accumulators per pair: N² = ${gib(n * n * 4)} float32, ${gib(n * n * 8)} float64; within-layer L·d_mlp²·8 = ${gib(withinLayerBytes(first[0].dims))} per seed`,
    blockNote,
    ...(stored ? [`checkpoints: up to ${decimalBytes(checkpoint)} while a pair runs (removed when it finishes)`] : []),
  ]
  return { tokens: stored ? s.validPerSeed * work.pairs.length : undefined, flops, diskBytes: tables + checkpoint, memoryBytes: memory, seconds, notes }
}

/** Why sums needing `bytes` (float64 sums and float32 product) are split: the budget, or layerBlocks' 4 GiB per block. */
function overBudget(bytes: number, maxMemoryGiB: number): string {
  return bytes > maxMemoryGiB * 2 ** 30
    ? `do not fit max_memory_gib ${maxMemoryGiB}`
    : `fit max_memory_gib ${maxMemoryGiB}, but a block's sums stay within 4 GiB, the most one array can be checkpointed from in Node 20`
}

/** Whether a pair's sums fit max_memory_gib, and if not, the layer blocks stored mode uses (streamed: see extract). */
function blockSentence(a: ModelDims, b: ModelDims, blocks: LayerBlock[], maxMemoryGiB: number, streamedPairs?: number): string {
  const full = crossSumsBytes(neuronCount(a), neuronCount(b))
  if (blocks.length === 1) return `the float64 cross sums (${gib(full)} per pair) fit max_memory_gib ${maxMemoryGiB}: one pass per pair`
  const split = `${blocks.length} blocks of ≤ ${blocks[0].count} layer${blocks[0].count === 1 ? '' : 's'}, each one more pass over the shards`
  const head = `blocking needed: the float64 cross sums (${gib(full)} per pair) ${overBudget(2 * full, maxMemoryGiB)}`
  return streamedPairs === undefined
    ? `${head}, so A's layers go in ${split}`
    : `${head}; stored mode would split A's layers in ${split}; streamed mode blocks all ${streamedPairs} pairs' sums together (see extract)`
}

export function estimateStats(s: Scenario): PlanEstimate {
  let disk = 0, memory = 0
  for (const { dims } of s.seeds) {
    const neurons = neuronCount(dims)
    // stats/<seed>.parquet: 13 float64 and 2 int32 columns plus the histogram's int32 counts; .top.parquet: k rows of 5 int32 + 1 float64.
    disk += neurons * (13 * 8 + 2 * 4 + HISTOGRAM_BINS * 4) + neurons * s.extract.top_k * (5 * 4 + 8)
    memory = Math.max(memory, 2 * shardStatsBytes(neurons, s.extract.top_k)) // the merged state and one shard's
  }
  const files = s.extract.mode === 'stored' ? s.shardsPerSeed : 1
  const reads = files * s.seeds.reduce((sum, { dims }) => sum + shardStatsBytes(neuronCount(dims), s.extract.top_k), 0)
  return { diskBytes: disk, memoryBytes: memory, notes: [`merges ${files} statistics file${files === 1 ? '' : 's'} per seed (${decimalBytes(reads)} in all); time not estimated (disk-bound)`] }
}

export function estimateUniversal(s: Scenario): PlanEstimate {
  const others = s.seeds.length - 1
  let disk = 0, memory = 0
  for (const { dims } of s.seeds) {
    disk += neuronCount(dims) * (10 + 4 * others) * 8 // per neuron: 10 columns, and 4 per other seed
    memory = Math.max(memory, neuronCount(dims) * others * 5 * 8) // one side of each pair table it reads
  }
  return { diskBytes: disk, memoryBytes: memory }
}

// ---- wording ----

/** Decimal units, as SPEC §7 writes them: `74 KB`, `36.9 TB`. */
export function decimalBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB', 'EB']
  let i = 0
  while (n >= 1000 && i < units.length - 1) (n /= 1000), i++
  return `${n.toFixed(i === 0 || n >= 100 ? 0 : 1)} ${units[i]}`
}

/** Accumulator sizes in GiB as SPEC §7 gives them (`5.1 GiB`); smaller ones in the unit that fits. */
export const gib = (n: number) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : bytes(n))

function count(n: number): string {
  if (n >= 1e6) return n.toExponential(1).replace('e+', 'e')
  return Math.round(n).toLocaleString('en-US')
}

export function duration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`
  return `${(seconds / 86400).toFixed(1)} d`
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${Math.round((100 * part) / whole)}%` : '0%'
}
