// Forward-pass benchmark (issue: foundation): tokens/s of the extraction graph (all hook_post outputs, no
// unembedding) on a GPT-2-small-shaped model with random weights, against PyTorch eager with forward hooks on
// the same weights, batches and thread count, measured in the same run. Run with `make bench`.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js'
import { loadInstrumentedModel, type TokenBatch } from '../src/model/instrumented.js'
import { EXTRACTION_OUTPUTS } from '../src/model/sites.js'

const MODEL_DIR = '.bench/gpt2-small-random'
const BATCH = Number(process.env.BENCH_BATCH ?? 4)
const POS = Number(process.env.BENCH_POS ?? 512)
const THREADS = Number(process.env.BENCH_THREADS ?? cpus().length)
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3)

/** A GPT-2 small config and N(0, 0.02) weights, written as a real checkpoint (config.json + safetensors). */
function writeRandomGpt2Small(dir: string): void {
  if (existsSync(join(dir, 'model.safetensors'))) return
  mkdirSync(dir, { recursive: true })
  const d = 768, dMlp = 3072, nLayers = 12, vocab = 50257, nPos = 1024
  const config = { model_type: 'gpt2', n_embd: d, n_head: 12, n_layer: nLayers, n_positions: nPos, n_ctx: nPos, n_inner: null, vocab_size: vocab, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5 }
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2))
  let state = 12345
  const normal = () => {
    // xorshift32 + Box–Muller: deterministic, fast enough for 124M values
    const u = () => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return ((state >>> 0) + 0.5) / 4294967296 }
    return Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u())
  }
  const random = (shape: number[], std = 0.02): TensorToWrite => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1))
    for (let i = 0; i < data.length; i++) data[i] = std * normal()
    return { dtype: 'F32', shape, data }
  }
  const filled = (shape: number[], value: number): TensorToWrite => ({ dtype: 'F32', shape, data: new Float32Array(shape[0]).fill(value) })
  const t: Record<string, TensorToWrite> = { 'transformer.wte.weight': random([vocab, d]), 'transformer.wpe.weight': random([nPos, d], 0.01) }
  for (let l = 0; l < nLayers; l++) {
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

function randomTokens(batch: number, pos: number, vocab: number): TokenBatch {
  const data = new BigInt64Array(batch * pos)
  for (let i = 0; i < data.length; i++) data[i] = BigInt((i * 7919 + 13) % vocab)
  return { data, batch, positions: pos }
}

async function seedscopeTokensPerSecond(): Promise<number> {
  const model = await loadInstrumentedModel(MODEL_DIR, EXTRACTION_OUTPUTS, { threads: THREADS })
  const tokens = randomTokens(BATCH, POS, model.config.shape.dVocab)
  await model.run(tokens) // warm-up
  const start = performance.now()
  for (let i = 0; i < REPEATS; i++) await model.run(tokens)
  const seconds = (performance.now() - start) / 1000
  await model.release()
  return (REPEATS * BATCH * POS) / seconds
}

function torchTokensPerSecond(): number | undefined {
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' })
  if (probe.status !== 0) {
    console.log('PyTorch peer skipped: /usr/bin/python3 cannot import torch (install it with: sudo apt-get install python3-torch)')
    return undefined
  }
  const out = execFileSync('/usr/bin/python3', ['bench/torch_forward.py', MODEL_DIR, String(BATCH), String(POS), String(THREADS), String(REPEATS)], { encoding: 'utf8' })
  return JSON.parse(out.trim().split('\n').pop()!).tokens_per_s
}

async function main(): Promise<void> {
  writeRandomGpt2Small(MODEL_DIR)
  console.log(`forward: GPT-2 small shape (12×768, d_mlp 3072), batch ${BATCH}×${POS}, ${THREADS} thread(s), ${REPEATS} timed runs`)
  const ours = await seedscopeTokensPerSecond()
  const torch = torchTokensPerSecond()
  // 2 FLOPs per non-embedding weight per token, plus attention scores and mixing (12·2·2·pos·d per token).
  const flopsPerToken = 2 * 12 * (12 * 768 * 768) + 12 * 4 * POS * 768
  console.log(`  seedscope (onnxruntime): ${ours.toFixed(0)} tokens/s (${((ours * flopsPerToken) / 1e9).toFixed(1)} GFLOP/s)`)
  if (torch !== undefined) {
    console.log(`  PyTorch eager + hooks:   ${torch.toFixed(0)} tokens/s`)
    console.log(`  ratio seedscope / PyTorch: ${(ours / torch).toFixed(2)}× (target ≥ 2×)`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
