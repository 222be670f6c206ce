// GPT-2 checkpoints with N(0, 0.02) weights, written as real ones (config.json + model.safetensors), for
// benchmarks that need a model's shape but not its training: the forward pass at GPT-2-small size, correlation
// at the study's layer width.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeSafetensors, type TensorToWrite } from '../../src/io/safetensors.js'

export interface Gpt2Shape {
  d: number // n_embd
  heads: number
  dMlp: number
  layers: number
  vocab: number
  positions: number
  seed?: number // of the weights (default 12345)
  tokenizer?: string // a tokenizer.json to copy beside the weights (its vocabulary must be `vocab`)
}

/** Writes the checkpoint into `dir` unless it is already there. */
export function writeRandomGpt2(dir: string, shape: Gpt2Shape): void {
  if (existsSync(join(dir, 'model.safetensors'))) return
  mkdirSync(dir, { recursive: true })
  const { d, dMlp, layers, vocab, positions } = shape
  const config = {
    model_type: 'gpt2', n_embd: d, n_head: shape.heads, n_layer: layers, n_positions: positions, n_ctx: positions,
    n_inner: dMlp === 4 * d ? null : dMlp, vocab_size: vocab, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5,
    bos_token_id: vocab - 1, eos_token_id: vocab - 1,
  }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2))
  if (shape.tokenizer) copyFileSync(shape.tokenizer, join(dir, 'tokenizer.json'))
  let state = shape.seed ?? 12345
  const normal = () => {
    // xorshift32 + Box–Muller: deterministic, fast enough for 124M values
    const u = () => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return ((state >>> 0) + 0.5) / 4294967296 }
    return Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u())
  }
  const random = (dims: number[], std = 0.02): TensorToWrite => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1))
    for (let i = 0; i < data.length; i++) data[i] = std * normal()
    return { dtype: 'F32', shape: dims, data }
  }
  const filled = (dims: number[], value: number): TensorToWrite => ({ dtype: 'F32', shape: dims, data: new Float32Array(dims[0]).fill(value) })
  const t: Record<string, TensorToWrite> = { 'transformer.wte.weight': random([vocab, d]), 'transformer.wpe.weight': random([positions, d], 0.01) }
  for (let l = 0; l < layers; l++) {
    const h = `transformer.h.${l}.`
    Object.assign(t, {
      [`${h}ln_1.weight`]: filled([d], 1), [`${h}ln_1.bias`]: filled([d], 0),
      [`${h}attn.c_attn.weight`]: random([d, 3 * d]), [`${h}attn.c_attn.bias`]: filled([3 * d], 0),
      [`${h}attn.c_proj.weight`]: random([d, d]), [`${h}attn.c_proj.bias`]: filled([d], 0),
      [`${h}ln_2.weight`]: filled([d], 1), [`${h}ln_2.bias`]: filled([d], 0),
      [`${h}mlp.c_fc.weight`]: random([d, dMlp]), [`${h}mlp.c_fc.bias`]: filled([dMlp], 0),
      [`${h}mlp.c_proj.weight`]: random([dMlp, d]), [`${h}mlp.c_proj.bias`]: filled([d], 0),
    })
  }
  t['transformer.ln_f.weight'] = filled([d], 1)
  t['transformer.ln_f.bias'] = filled([d], 0)
  writeSafetensors(join(dir, 'model.safetensors'), t)
}
