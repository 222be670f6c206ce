// The bundled seed families (data/models, trained by tools/train-seeds): every model loads through the same
// importer as downloaded seeds, gives finite activations, and its held-out loss computed in seedscope's graph
// equals the loss the training tool recorded (same rows, fp16 weights upcast to float32) within 1e-3.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { loadInstrumentedModel, tokenBatch } from '../src/model/instrumented.js'
import { site } from '../src/model/sites.js'

const MODELS = 'data/models'
const seeds = existsSync(MODELS)
  ? readdirSync(MODELS).filter((d) => /-s\d+$/.test(d) && existsSync(join(MODELS, d, 'training.json')))
  : []

describe.each(seeds)('bundled model %s', (name) => {
  const dir = join(MODELS, name)
  const training = JSON.parse(readFileSync(join(dir, 'training.json'), 'utf8'))
  const rows: number[][] = JSON.parse(readFileSync(join(MODELS, training.family, 'heldout-rows.json'), 'utf8'))

  test('held-out loss equals the training tool\'s, and activations are finite', async () => {
    const model = await loadInstrumentedModel(dir, { loss: true, mlpPost: true }, { threads: 2 })
    let sum = 0
    let count = 0
    for (let start = 0; start < rows.length; start += 16) {
      const out = await model.run(tokenBatch(rows.slice(start, start + 16)))
      for (const v of out.loss.data) {
        sum += v
        count++
      }
      for (let l = 0; l < model.config.shape.nLayers; l++) {
        expect(out[site.mlpPost(l)].data.every(Number.isFinite), `${name} layer ${l}`).toBe(true)
      }
    }
    await model.release()
    expect(count).toBe(rows.length * (rows[0].length - 1))
    expect(Math.abs(sum / count - training.heldout_loss)).toBeLessThan(1e-3)
  })
})

test('the bundled families are there: at least 4 GPT-2 and 3 Pythia-style seeds', () => {
  expect(seeds.filter((s) => s.startsWith('gpt2-')).length).toBeGreaterThanOrEqual(4)
  expect(seeds.filter((s) => s.startsWith('pythia-')).length).toBeGreaterThanOrEqual(3)
})

// A streamed pass after its first layer block asks its models for hook_post only; its values must be those of
// a graph that also exposes hook_pre (as the first block's and stored mode's do), or the blocks would disagree.
test.each(['gpt2-s0', 'pythia-s0'].filter((name) => existsSync(join(MODELS, name))))('%s: hook_post is bit-identical with and without hook_pre among the outputs', async (name) => {
  const dir = join(MODELS, name)
  const both = await loadInstrumentedModel(dir, { mlpPre: true, mlpPost: true }, { threads: 2 })
  const postOnly = await loadInstrumentedModel(dir, { mlpPost: true }, { threads: 2 })
  const rows = Array.from({ length: 4 }, (_, r) => Array.from({ length: 64 }, (_, p) => (r * 7919 + p * 104729) % 1000))
  const [a, b] = [await both.run(tokenBatch(rows)), await postOnly.run(tokenBatch(rows))]
  await Promise.all([both.release(), postOnly.release()])
  expect(Object.keys(b).sort()).toEqual(Array.from({ length: both.config.shape.nLayers }, (_, l) => site.mlpPost(l)).sort())
  const bytes = (x: ArrayBufferView) => Buffer.from(x.buffer, x.byteOffset, x.byteLength)
  for (const key of Object.keys(b)) expect(bytes(b[key].data).equals(bytes(a[key].data)), key).toBe(true)
})
