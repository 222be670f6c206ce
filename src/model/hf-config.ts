// Reads a Hugging Face config.json into one vocabulary: a ModelShape (TransformerLens dimension names) and the
// architecture's traits (SPEC §1). This file holds the only switch on `model_type`; everything downstream reads
// shapes and traits, never architecture names.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { UserError } from '../errors.js'

export interface ModelShape {
  nLayers: number
  dModel: number
  dMlp: number
  nHeads: number
  dHead: number
  nCtx: number // longest sequence the positions support
  dVocab: number // rows of the unembedding (Pythia pads beyond the tokenizer's size)
  lnEps: number
}

export interface ArchitectureTraits {
  family: 'gpt2' | 'gpt_neox' // names the checkpoint layout (which converter reads the weights)
  positions: 'learned' | { rotaryDims: number; rotaryBase: number } // NeoX: int(d_head · rotary_pct), rotate-half
  residual: 'sequential' | 'parallel' // NeoX default: attention and MLP read the same x
  gelu: 'tanh' | 'erf' // GPT-2 gelu_new vs NeoX exact GELU
  attnScale: (layer: number) => number // 1/√d_head, and 1/(layer+1) more for the Stanford seeds
  tiedUnembed: boolean // GPT-2: lm_head.weight absent from safetensors, W_U = W_Eᵀ
  qkvBias: boolean
}

export interface ModelConfig {
  shape: ModelShape
  traits: ArchitectureTraits
  bosTokenId?: number
  eosTokenId?: number
  configPath: string
}

export const SUPPORTED_MODEL_TYPES = ['gpt2', 'gpt_neox'] as const

type Json = Record<string, unknown>

/** Read `<dir>/config.json`; every problem is a UserError naming the file. */
export function readModelConfig(dir: string): ModelConfig {
  const configPath = join(dir, 'config.json')
  if (!existsSync(configPath)) {
    throw new UserError(`${configPath}: not found (a model directory needs the Hugging Face config.json beside its weights)`)
  }
  let json: Json
  try {
    json = JSON.parse(readFileSync(configPath, 'utf8')) as Json
  } catch (error) {
    throw new UserError(`${configPath}: not valid JSON (${(error as Error).message})`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UserError(`${configPath}: expected a JSON object`)
  }
  const field = fieldReader(json, configPath)
  const modelType = json.model_type
  switch (modelType) {
    case 'gpt2':
      return { ...gpt2Config(field, json, configPath), configPath }
    case 'gpt_neox':
      return { ...neoxConfig(field, json, configPath), configPath }
    default:
      throw new UserError(
        `${configPath}: model_type ${JSON.stringify(modelType)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`,
      )
  }
}

interface FieldReader {
  int(name: string, fallback?: number): number
  num(name: string, fallback?: number): number
  bool(name: string, fallback: boolean): boolean
  str(name: string, fallback: string): string
}

function fieldReader(json: Json, path: string): FieldReader {
  const get = (name: string, fallback: unknown): unknown => {
    const value = json[name] ?? fallback
    if (value === undefined) throw new UserError(`${path}: missing field "${name}"`)
    return value
  }
  const bad = (name: string, what: string, value: unknown) =>
    new UserError(`${path}: field "${name}" should be ${what}, got ${JSON.stringify(value)}`)
  return {
    int(name, fallback) {
      const v = get(name, fallback)
      if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw bad(name, 'a positive integer', v)
      return v
    },
    num(name, fallback) {
      const v = get(name, fallback)
      if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(name, 'a number', v)
      return v
    },
    bool(name, fallback) {
      const v = get(name, fallback)
      if (typeof v !== 'boolean') throw bad(name, 'true or false', v)
      return v
    },
    str(name, fallback) {
      const v = get(name, fallback)
      if (typeof v !== 'string') throw bad(name, 'a string', v)
      return v
    },
  }
}

const GELU_BY_NAME: Record<string, 'tanh' | 'erf'> = {
  gelu_new: 'tanh',
  gelu_fast: 'tanh',
  gelu_pytorch_tanh: 'tanh',
  gelu: 'erf',
}

function geluOf(field: FieldReader, name: string, fallback: string, path: string): 'tanh' | 'erf' {
  const act = field.str(name, fallback)
  const gelu = GELU_BY_NAME[act]
  if (!gelu) {
    throw new UserError(`${path}: ${name} "${act}" is not supported (supported: ${Object.keys(GELU_BY_NAME).join(', ')})`)
  }
  return gelu
}

function optionalId(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) ? value : undefined
}

function checkHeads(shape: ModelShape, path: string): void {
  if (shape.dModel % shape.nHeads !== 0) {
    throw new UserError(`${path}: hidden size ${shape.dModel} is not divisible by the ${shape.nHeads} heads`)
  }
}

function gpt2Config(field: FieldReader, json: Json, path: string): Omit<ModelConfig, 'configPath'> {
  const dModel = field.int('n_embd')
  const nHeads = field.int('n_head')
  // `n_inner: null` means 4·n_embd, as in every real GPT-2 config.
  const dMlp = json.n_inner == null ? 4 * dModel : field.int('n_inner')
  const shape: ModelShape = {
    nLayers: field.int('n_layer'),
    dModel,
    dMlp,
    nHeads,
    dHead: dModel / nHeads,
    nCtx: field.int('n_positions', json.n_ctx as number | undefined),
    dVocab: field.int('vocab_size'),
    lnEps: field.num('layer_norm_epsilon', 1e-5),
  }
  checkHeads(shape, path)
  const scaleWeights = field.bool('scale_attn_weights', true)
  const byInverseLayer = field.bool('scale_attn_by_inverse_layer_idx', false)
  // reorder_and_upcast_attn only changes the evaluation order of fp16 attention; we compute in float32, where
  // HF's own two paths agree to 2e-6 (research/golden.md pitfall 19), so the flag needs no graph change.
  const base = scaleWeights ? 1 / Math.sqrt(shape.dHead) : 1
  return {
    shape,
    traits: {
      family: 'gpt2',
      positions: 'learned',
      residual: 'sequential',
      gelu: geluOf(field, 'activation_function', 'gelu_new', path),
      attnScale: (layer) => (byInverseLayer ? base / (layer + 1) : base),
      tiedUnembed: true,
      qkvBias: true,
    },
    bosTokenId: optionalId(json.bos_token_id),
    eosTokenId: optionalId(json.eos_token_id),
  }
}

function neoxConfig(field: FieldReader, json: Json, path: string): Omit<ModelConfig, 'configPath'> {
  const dModel = field.int('hidden_size')
  const nHeads = field.int('num_attention_heads')
  const shape: ModelShape = {
    nLayers: field.int('num_hidden_layers'),
    dModel,
    dMlp: field.int('intermediate_size'),
    nHeads,
    dHead: dModel / nHeads,
    nCtx: field.int('max_position_embeddings'),
    dVocab: field.int('vocab_size'),
    lnEps: field.num('layer_norm_eps', 1e-5),
  }
  checkHeads(shape, path)
  if (json.rope_scaling != null) {
    throw new UserError(`${path}: rope_scaling ${JSON.stringify(json.rope_scaling)} is not supported (only unscaled rotary)`)
  }
  // Newer transformers also write partial_rotary_factor / rope_theta; the classic names come first.
  const rotaryPct = field.num('rotary_pct', json.partial_rotary_factor as number | undefined ?? 0.25)
  const rotaryBase = field.num('rotary_emb_base', json.rope_theta as number | undefined ?? 10000)
  const scale = 1 / Math.sqrt(shape.dHead)
  return {
    shape,
    traits: {
      family: 'gpt_neox',
      positions: { rotaryDims: Math.trunc(shape.dHead * rotaryPct), rotaryBase },
      residual: field.bool('use_parallel_residual', true) ? 'parallel' : 'sequential',
      gelu: geluOf(field, 'hidden_act', 'gelu', path),
      attnScale: () => scale,
      tiedUnembed: field.bool('tie_word_embeddings', false),
      qkvBias: field.bool('attention_bias', true),
    },
    bosTokenId: optionalId(json.bos_token_id),
    eosTokenId: optionalId(json.eos_token_id),
  }
}
