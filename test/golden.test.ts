// Every tensor of every golden case (Hugging Face transformers 4.40.2 reference outputs, see
// test/fixtures/golden/README.md) must match within 1e-4 + 1e-4·|expected|, through the library API and
// through `seedscope inspect` as a user calls it. A new case is a new folder, not new test code.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { readSafetensors } from '../src/io/safetensors.js'
import { type InstrumentedModel, loadInstrumentedModel, tokenBatch } from '../src/model/instrumented.js'
import type { Intervention } from '../src/model/interventions.js'
import { INSPECT_OUTPUTS, site } from '../src/model/sites.js'
import { buildCli, runCli } from './helpers/cli.js'

const GOLDEN = 'test/fixtures/golden'
const cases = readdirSync(GOLDEN, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name)

type Ablations = Record<string, Record<string, [number, string][]>>

interface GoldenCase {
  dir: string
  tensors: Map<string, { shape: number[]; data: Float32Array | BigInt64Array | unknown }>
  ids: number[][]
  ablations: Ablations
  nLayers: number
}

function loadCase(name: string): GoldenCase {
  const dir = join(GOLDEN, name)
  const meta = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8'))
  const tensors = readSafetensors(join(dir, 'golden.safetensors'))
  const nLayers = [...tensors.keys()].filter((k) => /^mlp_post\.\d+$/.test(k)).length
  return { dir, tensors, ids: meta.input_ids, ablations: meta.ablations, nLayers }
}

/** Golden tensor name → seedscope output name, for the clean run. */
function cleanPairs(c: GoldenCase): [string, string][] {
  const pairs: [string, string][] = [
    ['logits', site.logits],
    ['loss', site.loss],
    ['entropy', site.entropy],
    ['ln_final_scale', site.lnFinalScale],
  ]
  for (let l = 0; l < c.nLayers; l++) {
    pairs.push([`mlp_pre.${l}`, site.mlpPre(l)], [`mlp_post.${l}`, site.mlpPost(l)])
  }
  return pairs
}

function expectClose(got: { dims?: number[]; shape?: readonly number[]; data: ArrayLike<number> }, expected: { shape: number[]; data: unknown }, what: string) {
  const want = expected.data as Float32Array
  expect([...(got.dims ?? got.shape ?? [])], `${what} shape`).toEqual(expected.shape)
  let worst = 0
  let at = -1
  for (let i = 0; i < want.length; i++) {
    const excess = Math.abs(got.data[i] - want[i]) - (1e-4 + 1e-4 * Math.abs(want[i]))
    if (!(excess <= worst)) {
      worst = excess
      at = i
    }
  }
  expect(at, `${what}: element ${at} is ${got.data[at]}, expected ${want[at]}`).toBe(-1)
}

/** One affine override per golden spec ("zero", "scale:3.0"), on every row and position. */
function interventionsOf(spec: Record<string, [number, string][]>, batch: number): Intervention[] {
  const out: Intervention[] = []
  for (const [layer, list] of Object.entries(spec)) {
    for (const [neuron, how] of list) {
      const mul = how === 'zero' ? 0 : Number(how.replace('scale:', ''))
      for (let row = 0; row < batch; row++) out.push({ row, layer: Number(layer), neuron, mul, add: 0 })
    }
  }
  return out
}

function cliFlags(spec: Record<string, [number, string][]>): string[] {
  return Object.entries(spec).flatMap(([layer, list]) =>
    list.flatMap(([neuron, how]) => (how === 'zero' ? ['--zero', `${layer}.${neuron}`] : ['--scale', `${layer}.${neuron}:${how.replace('scale:', '')}`])),
  )
}

beforeAll(() => buildCli())

describe.each(cases)('golden %s', (name) => {
  const c = loadCase(name)
  let model: InstrumentedModel
  beforeAll(async () => {
    model = await loadInstrumentedModel(c.dir, { ...INSPECT_OUTPUTS, attnToBos: true }, { threads: 1 })
  })
  afterAll(() => model?.release())

  test('library API: clean run, every tensor', async () => {
    const out = await model.run(tokenBatch(c.ids))
    for (const [golden, ours] of cleanPairs(c)) expectClose(out[ours], c.tensors.get(golden)!, `${name} ${ours}`)
    for (let l = 0; l < c.nLayers; l++) expectClose(out[site.attnToBos(l)], c.tensors.get(`attn_bos.${l}`)!, `${name} attn_bos.${l}`)
  })

  test.each(Object.keys(c.ablations))('library API: %s', async (ablation) => {
    const out = await model.run(tokenBatch(c.ids), interventionsOf(c.ablations[ablation], c.ids.length))
    expectClose(out.logits, c.tensors.get(`${ablation}.logits`)!, `${name} ${ablation}.logits`)
    for (let l = 0; l < c.nLayers; l++) {
      expectClose(out[site.mlpPost(l)], c.tensors.get(`${ablation}.mlp_post.${l}`)!, `${name} ${ablation}.mlp_post.${l}`)
    }
  })

  test('seedscope inspect: clean run and every ablation', () => {
    const work = mkdtempSync(join(tmpdir(), 'seedscope-golden-'))
    const idsFile = join(work, 'ids.json')
    writeFileSync(idsFile, JSON.stringify(c.ids))
    const runs: [string, string[]][] = [['clean', []], ...Object.entries(c.ablations).map(([a, spec]): [string, string[]] => [a, cliFlags(spec)])]
    for (const [label, flags] of runs) {
      const out = join(work, `${label}.safetensors`)
      const r = runCli(['inspect', '--model', c.dir, '--input-ids', idsFile, '--out', out, '--threads', '1', ...flags], process.cwd())
      expect(r.stderr).toBe('')
      expect(r.status).toBe(0)
      const got = readSafetensors(out) as Map<string, { shape: number[]; data: Float32Array }>
      const expectedNames = ['logits', 'loss', 'entropy', 'ln_final.hook_scale']
      for (let l = 0; l < c.nLayers; l++) expectedNames.push(site.mlpPre(l), site.mlpPost(l))
      expect([...got.keys()].sort()).toEqual(expectedNames.sort())
      if (label === 'clean') {
        for (const [golden, ours] of cleanPairs(c)) expectClose(got.get(ours)!, c.tensors.get(golden)!, `inspect ${name} ${ours}`)
      } else {
        expectClose(got.get('logits')!, c.tensors.get(`${label}.logits`)!, `inspect ${name} ${label}.logits`)
        for (let l = 0; l < c.nLayers; l++) {
          expectClose(got.get(site.mlpPost(l))!, c.tensors.get(`${label}.mlp_post.${l}`)!, `inspect ${name} ${label}.mlp_post.${l}`)
        }
      }
    }
  })
})

test('the same checkpoint from safetensors and from pytorch_model.bin gives identical outputs', async () => {
  const source = join(GOLDEN, 'gpt2-tiny')
  const binOnly = mkdtempSync(join(tmpdir(), 'seedscope-bin-'))
  for (const f of ['config.json', 'pytorch_model.bin']) copyFileSync(join(source, f), join(binOnly, f))
  const ids = tokenBatch(loadCase('gpt2-tiny').ids)
  const fromSafetensors = await loadInstrumentedModel(source, INSPECT_OUTPUTS, { threads: 1 })
  const fromBin = await loadInstrumentedModel(binOnly, INSPECT_OUTPUTS, { threads: 1 })
  const a = await fromSafetensors.run(ids)
  const b = await fromBin.run(ids)
  for (const name of Object.keys(a)) expect(b[name].data, name).toEqual(a[name].data)
  await fromSafetensors.release()
  await fromBin.release()
})
