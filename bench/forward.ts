// Forward-pass benchmark (issue: foundation): tokens/s of the extraction graph (all hook_post outputs, no
// unembedding) on a GPT-2-small-shaped model with random weights, against PyTorch eager with forward hooks on
// the same weights, batches and thread count, measured in the same run. Run with `make bench`.
import { execFileSync, spawnSync } from 'node:child_process'
import { cpus } from 'node:os'
import { hookBuffers, loadInstrumentedModel, type TokenBatch } from '../src/model/instrumented.js'
import { EXTRACTION_OUTPUTS } from '../src/model/sites.js'
import { writeRandomGpt2 } from './lib/random-model.js'

const MODEL_DIR = '.bench/gpt2-small-random'
const BATCH = Number(process.env.BENCH_BATCH ?? 4)
const POS = Number(process.env.BENCH_POS ?? 512)
const THREADS = Number(process.env.BENCH_THREADS ?? cpus().length)
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3)

function randomTokens(batch: number, pos: number, vocab: number): TokenBatch {
  const data = new BigInt64Array(batch * pos)
  for (let i = 0; i < data.length; i++) data[i] = BigInt((i * 7919 + 13) % vocab)
  return { data, batch, positions: pos }
}

async function seedscopeTokensPerSecond(): Promise<number> {
  const model = await loadInstrumentedModel(MODEL_DIR, EXTRACTION_OUTPUTS, { threads: THREADS })
  const tokens = randomTokens(BATCH, POS, model.config.shape.dVocab)
  // The activations land in buffers reused from run to run, as in the extract stage's model worker.
  const into = hookBuffers(model, BATCH, POS)
  await model.run(tokens, [], into) // warm-up
  const start = performance.now()
  for (let i = 0; i < REPEATS; i++) await model.run(tokens, [], into)
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
  // GPT-2 small's shape; the weights' config says n_inner null, as GPT-2's does
  writeRandomGpt2(MODEL_DIR, { d: 768, heads: 12, dMlp: 3072, layers: 12, vocab: 50257, positions: 1024 })
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
