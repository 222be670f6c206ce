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
