// Hugging Face state dicts → canonical weights with TransformerLens meanings, so that one block builder serves
// every family. All matrices are stored [in, out] (MatMul's B), qkv as [Q(all heads) | K | V] head-major.
import { UserError } from '../errors.js'
import type { ArchitectureTraits, ModelShape } from './hf-config.js'

export interface FloatTensor {
  shape: number[]
  data: Float32Array
}

/** HF parameter name → tensor (float32). A Map satisfies it. */
export interface StateDictLike {
  get(name: string): FloatTensor | undefined
  keys(): Iterable<string>
}

export interface LayerWeights {
  ln1: { w: Float32Array; b: Float32Array }
  W_qkv: Float32Array // [d_model, 3·d_model], columns [Q | K | V], each [n_heads, d_head]
  b_qkv: Float32Array // [3·d_model]
  W_O: Float32Array // [d_model, d_model]
  b_O: Float32Array
  ln2: { w: Float32Array; b: Float32Array }
  W_in: Float32Array // [d_model, d_mlp]
  b_in: Float32Array
  W_out: Float32Array // [d_mlp, d_model]
  b_out: Float32Array
}

export interface ModelWeights {
  W_E: Float32Array // [d_vocab, d_model]
  W_pos?: Float32Array // [n_ctx, d_model], learned positions only
  layers: LayerWeights[]
  lnFinal: { w: Float32Array; b: Float32Array }
  W_U: Float32Array // [d_model, d_vocab]
}

/** Convert `state` (read from `source`) into canonical weights, checking every shape. */
export function convertWeights(state: StateDictLike, shape: ModelShape, traits: ArchitectureTraits, source: string): ModelWeights {
  const take = tensorTaker(state, source)
  return traits.family === 'gpt2' ? convertGpt2(take, shape) : convertNeox(take, shape, traits)
}

type Take = (name: string, expected: number[], prefix: string) => Float32Array

function tensorTaker(state: StateDictLike, source: string): Take {
  return (name, expected, prefix) => {
    // Some hub checkpoints (openai-community/gpt2) store keys without the base-model prefix.
    const tensor = state.get(prefix + name) ?? state.get(name)
    if (!tensor) {
      throw new UserError(`${source}: missing tensor "${prefix + name}" (is this checkpoint of the architecture config.json names?)`)
    }
    const same = tensor.shape.length === expected.length && tensor.shape.every((d, i) => d === expected[i])
    if (!same) {
      throw new UserError(
        `${source}: tensor "${prefix + name}" has shape [${tensor.shape}], config.json implies [${expected}] (checkpoint and config.json disagree)`,
      )
    }
    return tensor.data
  }
}

function layerNorm(take: Take, name: string, d: number, prefix: string) {
  return { w: take(`${name}.weight`, [d], prefix), b: take(`${name}.bias`, [d], prefix) }
}

// GPT-2 Conv1D weights are already [in, out]; c_attn's columns are [Q | K | V] as we want them.
function convertGpt2(take: Take, s: ModelShape): ModelWeights {
  const p = 'transformer.'
  const d = s.dModel
  const layers = Array.from({ length: s.nLayers }, (_, l): LayerWeights => {
    const h = `h.${l}.`
    return {
      ln1: layerNorm(take, `${h}ln_1`, d, p),
      W_qkv: take(`${h}attn.c_attn.weight`, [d, 3 * d], p),
      b_qkv: take(`${h}attn.c_attn.bias`, [3 * d], p),
      W_O: take(`${h}attn.c_proj.weight`, [d, d], p),
      b_O: take(`${h}attn.c_proj.bias`, [d], p),
      ln2: layerNorm(take, `${h}ln_2`, d, p),
      W_in: take(`${h}mlp.c_fc.weight`, [d, s.dMlp], p),
      b_in: take(`${h}mlp.c_fc.bias`, [s.dMlp], p),
      W_out: take(`${h}mlp.c_proj.weight`, [s.dMlp, d], p),
      b_out: take(`${h}mlp.c_proj.bias`, [d], p),
    }
  })
  const W_E = take('wte.weight', [s.dVocab, d], p)
  return {
    W_E,
    W_pos: take('wpe.weight', [s.nCtx, d], p),
    layers,
    lnFinal: layerNorm(take, 'ln_f', d, p),
    W_U: transpose(W_E, s.dVocab, d), // tied head: logits = h · W_Eᵀ
  }
}

// NeoX Linear weights are [out, in]: transpose. Its fused qkv output is interleaved per head,
// [(head, qkv, d_head)], unlike GPT-2's [(qkv, head, d_head)]: reorder the columns.
function convertNeox(take: Take, s: ModelShape, traits: ArchitectureTraits): ModelWeights {
  const p = 'gpt_neox.'
  const d = s.dModel
  const layers = Array.from({ length: s.nLayers }, (_, l): LayerWeights => {
    const h = `layers.${l}.`
    const qkv = transpose(take(`${h}attention.query_key_value.weight`, [3 * d, d], p), 3 * d, d) // [d, 3d]
    const qkvBias = traits.qkvBias ? take(`${h}attention.query_key_value.bias`, [3 * d], p) : new Float32Array(3 * d)
    return {
      ln1: layerNorm(take, `${h}input_layernorm`, d, p),
      W_qkv: neoxQkvToBlocks(qkv, d, s.nHeads, s.dHead),
      b_qkv: neoxQkvToBlocks(qkvBias, 1, s.nHeads, s.dHead),
      W_O: transpose(take(`${h}attention.dense.weight`, [d, d], p), d, d),
      b_O: take(`${h}attention.dense.bias`, [d], p),
      ln2: layerNorm(take, `${h}post_attention_layernorm`, d, p),
      W_in: transpose(take(`${h}mlp.dense_h_to_4h.weight`, [s.dMlp, d], p), s.dMlp, d),
      b_in: take(`${h}mlp.dense_h_to_4h.bias`, [s.dMlp], p),
      W_out: transpose(take(`${h}mlp.dense_4h_to_h.weight`, [d, s.dMlp], p), d, s.dMlp),
      b_out: take(`${h}mlp.dense_4h_to_h.bias`, [d], p),
    }
  })
  const W_E = take('embed_in.weight', [s.dVocab, d], p)
  const W_U = traits.tiedUnembed ? transpose(W_E, s.dVocab, d) : transpose(take('embed_out.weight', [s.dVocab, d], ''), s.dVocab, d)
  return { W_E, layers, lnFinal: layerNorm(take, 'final_layer_norm', d, p), W_U }
}

/** [rows, cols] row-major → [cols, rows]. */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length)
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c]
  }
  return out
}

/** Columns [(head, qkv, d_head)] → [(qkv, head, d_head)], for each of `rows` rows. */
function neoxQkvToBlocks(a: Float32Array, rows: number, nHeads: number, dHead: number): Float32Array {
  const width = 3 * nHeads * dHead
  const out = new Float32Array(a.length)
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < nHeads; h++) {
      for (let j = 0; j < 3; j++) {
        const from = r * width + (h * 3 + j) * dHead
        const to = r * width + (j * nHeads + h) * dHead
        out.set(a.subarray(from, from + dHead), to)
      }
    }
  }
  return out
}
