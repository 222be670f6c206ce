// seedscope's causal attention kernel (native/kernels/attention.c): against attention computed in float64 from its
// definition, on both of its paths, and inside a model against ONNX Attention.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { TINY, writeTinyGpt2 } from '../../test/helpers/tiny-models.js'
import { nativeExports } from '../stats/kernels.js'
import { seededRandom } from '../stats/random.js'
import { hookBuffers, loadInstrumentedModel } from './instrumented.js'
import { ModelSession } from './runtime.js'
import { site } from './sites.js'

type Shape = [batch: number, positions: number, heads: number, scale: number, portable: boolean]
const native = nativeExports<{
  causalAttention(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, ...shape: Shape): void
  causalAttentionPacked(qkv: Float32Array, bias: Float32Array | null, out: Float32Array, ...shape: Shape): void
}>()

/** softmax_{j ≤ i}(scale · q_i · k_j) · v_j for every row, head and position, in float64. */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, batch: number, positions: number, heads: number, scale: number): Float64Array {
  const hidden = q.length / (batch * positions)
  const dHead = hidden / heads
  const out = new Float64Array(q.length)
  for (let b = 0; b < batch; b++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < positions; i++) {
        const at = (row: number) => (b * positions + row) * hidden + h * dHead
        const scores = Array.from({ length: i + 1 }, (_, j) => {
          let dot = 0
          for (let d = 0; d < dHead; d++) dot += q[at(i) + d] * k[at(j) + d]
          return scale * dot
        })
        const max = Math.max(...scores)
        const weights = scores.map((s) => Math.exp(s - max))
        const sum = weights.reduce((a, w) => a + w, 0)
        for (let j = 0; j <= i; j++) for (let d = 0; d < dHead; d++) out[at(i) + d] += (weights[j] / sum) * v[at(j) + d]
      }
  return out
}

function expectClose(actual: Float32Array, expected: Float64Array, what: string): void {
  let worst = 0
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / (1e-5 + 1e-5 * Math.abs(expected[i])))
  expect(worst, what).toBeLessThan(1)
}

function seeded(n: number, seed: number, spread: number): Float32Array {
  const random = seededRandom(seed, 0)
  return Float32Array.from({ length: n }, () => (random() - 0.5) * 2 * spread)
}

describe.skipIf(!native)('causal attention kernel', () => {
  // Shapes that cross the kernel's blocks (48 queries, 32 keys, 12- and 6-query tiles) and its value widths
  // (64 and 16 per tile); d_head 20 is not a multiple of 16, so only the portable path takes it.
  it.each([
    [1, 1, 1, 16],
    [2, 37, 3, 16],
    [1, 100, 2, 64],
    [1, 70, 2, 80],
    [2, 130, 1, 32],
    [1, 50, 2, 20],
  ])('batch %i, %i positions, %i heads of %i values: both paths within 1e-5 of float64', (batch, positions, heads, dHead) => {
    const n = batch * positions * heads * dHead
    // Scores spread over ±~15, so the softmax's shift and the exponential's whole range matter.
    const [q, k, v] = [1, 2, 3].map((seed) => seeded(n, seed, seed === 3 ? 1 : 1.5))
    const scale = 1 / Math.sqrt(dHead)
    const expected = reference(q, k, v, batch, positions, heads, scale)
    for (const portable of [false, true]) {
      const out = new Float32Array(n).fill(Number.NaN) // every value must be written
      native!.causalAttention(q, k, v, out, batch, positions, heads, scale, portable)
      expectClose(out, expected, portable ? 'portable' : 'vectorized')
    }
  })

  it.each([
    [2, 37, 3, 16],
    [1, 100, 2, 64],
    [1, 50, 2, 20],
  ])('batch %i, %i positions, %i heads of %i values, packed q | k | v with biases: both paths within 1e-5 of float64', (batch, positions, heads, dHead) => {
    const hidden = heads * dHead
    const rows = batch * positions
    const qkv = seeded(rows * 3 * hidden, 4, 1.5)
    const bias = seeded(3 * hidden, 5, 0.5)
    // The same inputs as three tensors, biases added (in float32, as the kernel adds them).
    const [q, k, v] = [0, 1, 2].map((part) =>
      Float32Array.from({ length: rows * hidden }, (_, i) => qkv[Math.floor(i / hidden) * 3 * hidden + part * hidden + (i % hidden)] + bias[part * hidden + (i % hidden)]),
    )
    const expected = reference(q, k, v, batch, positions, heads, 1 / Math.sqrt(dHead))
    for (const portable of [false, true]) {
      const out = new Float32Array(rows * hidden).fill(Number.NaN)
      native!.causalAttentionPacked(qkv, bias, out, batch, positions, heads, 1 / Math.sqrt(dHead), portable)
      expectClose(out, expected, portable ? 'portable' : 'vectorized')
    }
  })

  it('carries a NaN in a query into that query’s output instead of dropping it', () => {
    const [batch, positions, heads, dHead] = [1, 40, 1, 16]
    const [q, k, v] = [1, 2, 3].map((seed) => seeded(positions * dHead, seed, 1))
    q[20 * dHead + 3] = Number.NaN
    for (const portable of [false, true]) {
      const out = new Float32Array(q.length)
      native!.causalAttention(q, k, v, out, batch, positions, heads, 0.25, portable)
      expect(out.subarray(20 * dHead, 21 * dHead).every(Number.isNaN)).toBe(true)
      expect(out.subarray(0, 20 * dHead).some(Number.isNaN)).toBe(false)
    }
  })
})

describe.skipIf(!native)('a model with seedscope’s operators (CausalAttention, and AmxMatMul where AMX runs)', () => {
  afterEach(() => {
    delete process.env.SEEDSCOPE_OPERATORS
  })

  it('gives the hook_post of the same model on onnxruntime’s operators, within 1e-5, over 100 positions', async () => {
    const shape = { ...TINY, nHeads: 2 } // heads of 16 values: the vectorized kernel's (d_head 8 keeps ONNX Attention)
    const dir = writeTinyGpt2(join(mkdtempSync(join(tmpdir(), 'attention-')), 'gpt2'), 5, shape)
    expect(ModelSession.runsSeedscopeAttention({}, 16)).toBe(nativeExports<{ causalAttentionVectorized(d: number): boolean }>()!.causalAttentionVectorized(16))
    expect(ModelSession.runsSeedscopeAttention({}, 8)).toBe(false)
    const positions = 100
    const tokens = { data: BigInt64Array.from({ length: 2 * positions }, (_, i) => BigInt((i * 37) % 4096)), batch: 2, positions }
    const run = async (attention: 'seedscope' | 'onnx') => {
      process.env.SEEDSCOPE_OPERATORS = attention
      const model = await loadInstrumentedModel(dir, { mlpPost: true }, { threads: 2 })
      try {
        return await model.run(tokens, [], hookBuffers(model, tokens.batch, positions))
      } finally {
        await model.release()
      }
    }
    const ours = await run('seedscope')
    const theirs = await run('onnx')
    for (const layer of [0, 1]) {
      const a = ours[site.mlpPost(layer)].data
      const b = theirs[site.mlpPost(layer)].data
      let worst = 0
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1e-5 + 1e-5 * Math.abs(b[i])))
      expect(worst).toBeLessThan(1)
    }
  })
})
