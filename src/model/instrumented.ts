// An instrumented model: a Hugging Face checkpoint directory turned into an onnxruntime session whose outputs
// are the requested hook sites and heads. config.json → shape and traits; checkpoint → canonical weights;
// weights → ONNX graph → session.
import { findCheckpoint, readCheckpoint } from '../io/checkpoint.js'
import { UserError } from '../errors.js'
import { convertWeights, type ModelWeights } from './convert.js'
import { buildGraph } from './graph.js'
import { type ModelConfig, readModelConfig } from './hf-config.js'
import { encodeInterventions, type Intervention } from './interventions.js'
import { concatEncoded } from './onnx-proto.js'
import { type Feed, ModelSession, type OutputTensor, type SessionOptions } from './runtime.js'
import { isMlpHook, type OutputRequest } from './sites.js'

/** Token ids of a batch: row-major int64 [batch, pos]. */
export interface TokenBatch {
  data: BigInt64Array
  batch: number
  positions: number
}

export interface InstrumentedModel {
  config: ModelConfig
  outputs: readonly string[]
  /**
   * Outputs of a forward pass. Those given in `into` (e.g. from hookBuffers, reused from batch to batch) are written
   * there rather than into fresh buffers.
   */
  run(tokens: TokenBatch, interventions?: readonly Intervention[], into?: Record<string, OutputTensor>): Promise<Record<string, OutputTensor>>
  release(): Promise<void>
}

/** Buffers for the model's MLP hook outputs ([batch, pos, d_mlp] each) on a batch of this size, for run()'s `into`. */
export function hookBuffers(model: Pick<InstrumentedModel, 'config' | 'outputs'>, batch: number, positions: number): Record<string, OutputTensor> {
  return hookBufferSet(model.outputs.filter(isMlpHook), [batch, positions, model.config.shape.dMlp])
}

/** A buffer of `dims` [batch, pos, d_mlp] for each named MLP hook output. */
export function hookBufferSet(names: readonly string[], dims: readonly number[]): Record<string, OutputTensor> {
  return Object.fromEntries(names.map((name) => [name, { dims: [...dims], data: new Float32Array(dims[0] * dims[1] * dims[2]) }]))
}

/** Read config.json and the checkpoint in `dir` into canonical weights. */
export function loadWeights(dir: string): { config: ModelConfig; weights: ModelWeights } {
  const config = readModelConfig(dir)
  const weights = convertWeights(readCheckpoint(dir), config.shape, config.traits, findCheckpoint(dir).path)
  return { config, weights }
}

export async function loadInstrumentedModel(dir: string, request: OutputRequest, options: SessionOptions = {}): Promise<InstrumentedModel> {
  const { config, weights } = loadWeights(dir)
  // SEEDSCOPE_OPERATORS=onnx keeps to onnxruntime's own operators even where seedscope's could run (comparisons).
  const own = process.env.SEEDSCOPE_OPERATORS !== 'onnx'
  const graph = buildGraph(weights, config.shape, config.traits, request, {
    seedscopeAttention: own && ModelSession.runsSeedscopeAttention(options, config.shape.dHead),
    amxMatMul: own && ModelSession.runsAmxMatMul(options),
    weightsDir: options.weightsDir,
  })
  const session = await ModelSession.create(concatEncoded(graph.model), options)
  const { shape } = config
  return {
    config,
    outputs: graph.outputs,
    async run(tokens, interventions = [], into) {
      checkTokens(tokens, config)
      const feeds: Record<string, Feed> = { input_ids: { dtype: 'int64', data: tokens.data, dims: [tokens.batch, tokens.positions] } }
      if (request.interventions) {
        const dims = { batch: tokens.batch, positions: tokens.positions, nLayers: shape.nLayers, dMlp: shape.dMlp }
        const iv = encodeInterventions(interventions, dims)
        feeds['intervention.index'] = { dtype: 'int64', data: iv.index, dims: [iv.count, 4] }
        feeds['intervention.mul'] = { dtype: 'float32', data: iv.mul, dims: [iv.count] }
        feeds['intervention.add'] = { dtype: 'float32', data: iv.add, dims: [iv.count] }
      } else if (interventions.length > 0) {
        throw new Error('this model was built without intervention inputs (request.interventions)')
      }
      return session.run(feeds, undefined, into)
    },
    release: () => session.release(),
  }
}

function checkTokens(tokens: TokenBatch, config: ModelConfig): void {
  const { dVocab, nCtx } = config.shape
  if (tokens.positions < 1 || tokens.batch < 1) throw new UserError('token batch is empty')
  if (tokens.positions > nCtx) {
    throw new UserError(`rows have ${tokens.positions} tokens but the model supports at most ${nCtx} positions (${config.configPath})`)
  }
  for (let i = 0; i < tokens.data.length; i++) {
    const id = tokens.data[i]
    if (id < 0n || id >= BigInt(dVocab)) {
      const row = Math.floor(i / tokens.positions)
      throw new UserError(
        `token id ${id} at row ${row}, position ${i % tokens.positions} is outside the vocabulary (0..${dVocab - 1}, ${config.configPath})`,
      )
    }
  }
}

/** Pack equal-length rows of ids; ragged rows are a UserError. */
export function tokenBatch(rows: readonly (readonly number[])[]): TokenBatch {
  if (rows.length === 0) throw new UserError('expected at least one row of token ids')
  const positions = rows[0].length
  const data = new BigInt64Array(rows.length * positions)
  rows.forEach((row, r) => {
    if (row.length !== positions) {
      throw new UserError(`row ${r} has ${row.length} tokens but row 0 has ${positions}; all rows must have the same length`)
    }
    row.forEach((id, p) => {
      if (!Number.isInteger(id)) throw new UserError(`row ${r}, position ${p}: ${JSON.stringify(id)} is not an integer token id`)
      data[r * positions + p] = BigInt(id)
    })
  })
  return { data, batch: rows.length, positions }
}
