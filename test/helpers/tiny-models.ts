// Small GPT-2 checkpoints with seeded random weights, written as real Hugging Face model directories
// (config.json, model.safetensors, tokenizer.json), for end-to-end tests that need a few models of one family
// quickly. They use the bundled family's tokenizer (data/models/gpt2/tokenizer.json, vocabulary 4096).
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type TensorToWrite, writeSafetensors } from '../../src/io/safetensors.js'

export const BUNDLED_GPT2_TOKENIZER = fileURLToPath(new URL('../../data/models/gpt2/tokenizer.json', import.meta.url))

export interface TinyShape {
  nLayers: number
  dModel: number
  dMlp: number
  nHeads: number
  nCtx: number
  dVocab: number
}

export const TINY: TinyShape = { nLayers: 2, dModel: 32, dMlp: 64, nHeads: 4, nCtx: 128, dVocab: 4096 }

/** Write a seeded random GPT-2 into `dir`; different `seed`s give different weights, nothing else differs. */
export function writeTinyGpt2(dir: string, seed: number, shape: TinyShape = TINY): string {
  mkdirSync(dir, { recursive: true })
  const { nLayers, dModel: d, dMlp, nCtx, dVocab } = shape
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      model_type: 'gpt2', n_embd: d, n_head: shape.nHeads, n_layer: nLayers, n_positions: nCtx, n_ctx: nCtx,
      n_inner: dMlp, vocab_size: dVocab, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5,
    }),
  )
  let state = (seed + 1) * 2654435761
  const uniform = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    return state / 2 ** 32 - 0.5
  }
  const random = (shape: number[], scale = 0.5): TensorToWrite => ({
    dtype: 'F32',
    shape,
    data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * uniform()),
  })
  const ones = (n: number): TensorToWrite => ({ dtype: 'F32', shape: [n], data: new Float32Array(n).fill(1) })
  const tensors: Record<string, TensorToWrite> = {
    'transformer.wte.weight': random([dVocab, d]),
    'transformer.wpe.weight': random([nCtx, d]),
    'transformer.ln_f.weight': ones(d),
    'transformer.ln_f.bias': random([d]),
  }
  for (let l = 0; l < nLayers; l++) {
    const h = `transformer.h.${l}.`
    Object.assign(tensors, {
      [`${h}ln_1.weight`]: ones(d), [`${h}ln_1.bias`]: random([d]),
      [`${h}attn.c_attn.weight`]: random([d, 3 * d]), [`${h}attn.c_attn.bias`]: random([3 * d]),
      [`${h}attn.c_proj.weight`]: random([d, d]), [`${h}attn.c_proj.bias`]: random([d]),
      [`${h}ln_2.weight`]: ones(d), [`${h}ln_2.bias`]: random([d]),
      [`${h}mlp.c_fc.weight`]: random([d, dMlp]), [`${h}mlp.c_fc.bias`]: random([dMlp]),
      [`${h}mlp.c_proj.weight`]: random([dMlp, d]), [`${h}mlp.c_proj.bias`]: random([d]),
    })
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors)
  copyFileSync(BUNDLED_GPT2_TOKENIZER, join(dir, 'tokenizer.json'))
  return dir
}
