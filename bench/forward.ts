// Forward-pass benchmark (issue: foundation): tokens/s of the extraction graph (all hook_post outputs, no
// unembedding) on a GPT-2-small-shaped model with random weights, against PyTorch eager with forward hooks on
// the same weights, batches and thread count, measured in the same run. Run with `make bench`.
//
// The two sides alternate (`BENCH_ROUNDS` rounds of seedscope then PyTorch); each round gives a ratio and the
// headline is their median, since the machine's speed drifts between rounds more than within one.
import { execFileSync, spawnSync } from 'node:child_process'
import { cpus } from 'node:os'
import { hookBuffers, type InstrumentedModel, loadInstrumentedModel, type TokenBatch } from '../src/model/instrumented.js'
import { EXTRACTION_OUTPUTS } from '../src/model/sites.js'
import { writeRandomGpt2 } from './lib/random-model.js'

const MODEL_DIR = '.bench/gpt2-small-random'
const BATCH = Number(process.env.BENCH_BATCH ?? 4)
const POS = Number(process.env.BENCH_POS ?? 512)
const THREADS = Number(process.env.BENCH_THREADS ?? cpus().length)
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)

function randomTokens(batch: number, pos: number, vocab: number): TokenBatch {
  const data = new BigInt64Array(batch * pos)
  for (let i = 0; i < data.length; i++) data[i] = BigInt((i * 7919 + 13) % vocab)
  return { data, batch, positions: pos }
}

/** Tokens/s of REPEATS batches through `model`, its outputs in buffers reused from run to run (as in extract). */
async function seedscopeTokensPerSecond(model: InstrumentedModel): Promise<number> {
  const tokens = randomTokens(BATCH, POS, model.config.shape.dVocab)
  const into = hookBuffers(model, BATCH, POS)
  await model.run(tokens, [], into) // warm-up
  const start = performance.now()
  for (let i = 0; i < REPEATS; i++) await model.run(tokens, [], into)
  const seconds = (performance.now() - start) / 1000
  return (REPEATS * BATCH * POS) / seconds
}

let torchImports: boolean | undefined

function torchTokensPerSecond(): number | undefined {
  if (torchImports === undefined) {
    torchImports = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0
    if (!torchImports) console.log('PyTorch peer skipped: /usr/bin/python3 cannot import torch (install it with: sudo apt-get install python3-torch)')
  }
  if (!torchImports) return undefined
  const out = execFileSync('/usr/bin/python3', ['bench/torch_forward.py', MODEL_DIR, String(BATCH), String(POS), String(THREADS), String(REPEATS)], { encoding: 'utf8' })
  return JSON.parse(out.trim().split('\n').pop()!).tokens_per_s
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

async function main(): Promise<void> {
  // GPT-2 small's shape; the weights' config says n_inner null, as GPT-2's does
  writeRandomGpt2(MODEL_DIR, { d: 768, heads: 12, dMlp: 3072, layers: 12, vocab: 50257, positions: 1024 })
  console.log(`forward: GPT-2 small shape (12×768, d_mlp 3072), batch ${BATCH}×${POS}, ${THREADS} thread(s), ${REPEATS} timed runs, ${ROUNDS} rounds`)
  // 2 FLOPs per non-embedding weight per token, plus attention scores and mixing (12·2·2·pos·d per token).
  const flopsPerToken = 2 * 12 * (12 * 768 * 768) + 12 * 4 * POS * 768
  const model = await loadInstrumentedModel(MODEL_DIR, EXTRACTION_OUTPUTS, { threads: THREADS })
  const ours: number[] = []
  const ratios: number[] = []
  for (let round = 1; round <= ROUNDS; round++) {
    ours.push(await seedscopeTokensPerSecond(model))
    const torch = torchTokensPerSecond()
    const line = `  round ${round}: seedscope ${ours.at(-1)!.toFixed(0)} tokens/s (${((ours.at(-1)! * flopsPerToken) / 1e9).toFixed(1)} GFLOP/s)`
    if (torch === undefined) {
      console.log(line)
      continue
    }
    ratios.push(ours.at(-1)! / torch)
    console.log(`${line}, PyTorch eager + hooks ${torch.toFixed(0)} tokens/s: ${ratios.at(-1)!.toFixed(2)}×`)
  }
  await model.release()
  console.log(`  seedscope (onnxruntime): median ${median(ours).toFixed(0)} tokens/s`)
  if (ratios.length) console.log(`  ratio seedscope / PyTorch, median of ${ratios.length} rounds: ${median(ratios).toFixed(2)}× (target ≥ 2×)`)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
