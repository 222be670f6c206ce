// Bad input to `seedscope inspect`: each case must end with one clear line naming the file and what is wrong,
// a non-zero exit code, and no stack trace.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, expect, test } from 'vitest'
import { buildCli, runCli } from '../helpers/cli.js'

beforeAll(() => buildCli())

const GPT2 = 'test/fixtures/golden/gpt2-tiny'
const work = mkdtempSync(join(tmpdir(), 'seedscope-errors-'))
const goodIds = join(work, 'ids.json')
writeFileSync(goodIds, JSON.stringify([[0, 1, 2, 3]]))

/** A model directory holding a copy of gpt2-tiny's config.json and `weights`, after `edit`. */
function modelDir(name: string, weights: string, edit: (dir: string) => void = () => {}): string {
  const dir = join(work, name)
  mkdirSync(dir, { recursive: true })
  copyFileSync(join(GPT2, 'config.json'), join(dir, 'config.json'))
  if (weights) copyFileSync(join(GPT2, weights), join(dir, weights))
  edit(dir)
  return dir
}

function editConfig(dir: string, change: (c: Record<string, unknown>) => void): void {
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))
  change(config)
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
}

function idsFile(name: string, content: string): string {
  const path = join(work, name)
  writeFileSync(path, content)
  return path
}

const cases: { name: string; model: () => string; ids?: () => string; message: RegExp }[] = [
  {
    name: 'missing config.json',
    model: () => modelDir('no-config', 'model.safetensors', (d) => rmSync(join(d, 'config.json'))),
    message: /no-config\/config\.json: not found/,
  },
  {
    name: 'unsupported model_type',
    model: () => modelDir('llama', 'model.safetensors', (d) => editConfig(d, (c) => (c.model_type = 'llama'))),
    message: /llama\/config\.json: model_type "llama" is not supported \(supported: gpt2, gpt_neox\)/,
  },
  {
    name: 'no weights at all',
    model: () => modelDir('no-weights', ''),
    message: /no-weights.*(model\.safetensors|pytorch_model\.bin)/,
  },
  {
    name: 'truncated safetensors',
    model: () => modelDir('truncated', 'model.safetensors', (d) => truncateSync(join(d, 'model.safetensors'), 5000)),
    message: /truncated\/model\.safetensors: /,
  },
  {
    name: 'corrupt pytorch_model.bin',
    model: () => modelDir('corrupt-bin', 'pytorch_model.bin', (d) => truncateSync(join(d, 'pytorch_model.bin'), 3000)),
    message: /corrupt-bin\/pytorch_model\.bin: /,
  },
  {
    name: 'tensor shapes that disagree with config.json',
    model: () => modelDir('shapes', 'model.safetensors', (d) => editConfig(d, (c) => (c.n_inner = 128))),
    message: /shapes\/model\.safetensors: tensor "transformer\.h\.0\.mlp\.c_fc\.weight" has shape \[64,256\], config\.json implies \[64,128\]/,
  },
  {
    name: 'token id out of vocabulary',
    model: () => GPT2,
    ids: () => idsFile('oov.json', JSON.stringify([[0, 1, 1000]])),
    message: /oov\.json: token id 1000 at row 0, position 2 is outside the vocabulary \(0\.\.999/,
  },
  {
    name: 'ragged rows',
    model: () => GPT2,
    ids: () => idsFile('ragged.json', JSON.stringify([[0, 1, 2], [0, 1]])),
    message: /ragged\.json: row 1 has 2 tokens but row 0 has 3/,
  },
  {
    name: 'input ids that are not JSON',
    model: () => GPT2,
    ids: () => idsFile('bad.json', '[[0, 1,'),
    message: /bad\.json: not valid JSON/,
  },
  {
    name: 'a neuron the model does not have',
    model: () => GPT2,
    ids: () => goodIds,
    message: /neuron 5\.3 does not exist/,
  },
]

test.each(cases)('$name', ({ name, model, ids, message }) => {
  const extra = name === 'a neuron the model does not have' ? ['--zero', '5.3'] : []
  const r = runCli(['inspect', '--model', model(), '--input-ids', ids ? ids() : goodIds, '--out', join(work, 'out.safetensors'), ...extra], process.cwd())
  expect(r.status).not.toBe(0)
  expect(r.status).not.toBe(2) // 2 means an internal error (a bug), not a user error
  const lines = r.stderr.trim().split('\n')
  expect(lines, r.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^seedscope: /)
  expect(lines[0]).toMatch(message)
  expect(r.stderr).not.toMatch(/\n\s+at /)
})
