// `seedscope tokenize-text` as a user runs it: the built CLI, text on stdin, ids or a one-line error out.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'

const root = new URL('..', import.meta.url).pathname
const cli = join(root, 'dist/cli.js')
const tokenizers = join(root, 'test/fixtures/tokenizers')
const hardStrings = JSON.parse(readFileSync(join(tokenizers, 'hard-strings.json'), 'utf8')) as {
  cases: { name: string; text: string; gpt2: number[]; neox: number[] }[]
}

function seedscope(args: string[], stdin: string | Buffer) {
  const result = spawnSync(process.execPath, [cli, ...args], { input: stdin, encoding: 'utf8' })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

beforeAll(() => {
  if (!existsSync(join(root, 'dist/commands/tokenize-text.js'))) throw new Error('dist/ has no tokenize-text: run `make build` first')
})

describe('seedscope tokenize-text', () => {
  const cases = hardStrings.cases.filter((c) => ['emoji', 'endoftext inside text'].includes(c.name))

  for (const hard of cases) {
    it(`prints the ids of "${hard.name}" for a model directory (gpt2) and a tokenizer.json (neox)`, () => {
      const gpt2 = seedscope(['tokenize-text', '--tokenizer', join(tokenizers, 'gpt2-vocab-merges')], hard.text)
      expect(gpt2).toEqual({ code: 0, stdout: `${JSON.stringify(hard.gpt2)}\n`, stderr: '' })
      const neox = seedscope(['tokenize-text', '--tokenizer', join(tokenizers, 'neox/tokenizer.json')], hard.text)
      expect(neox).toEqual({ code: 0, stdout: `${JSON.stringify(hard.neox)}\n`, stderr: '' })
    })
  }

  it('matches special tokens in the text only with --special-tokens match', () => {
    const args = ['tokenize-text', '--tokenizer', join(tokenizers, 'gpt2')]
    expect(seedscope([...args, '--special-tokens', 'match'], 'a<|endoftext|>b').stdout).toBe('[64,50256,65]\n')
    expect(seedscope(args, 'a<|endoftext|>b').stdout).toBe('[64,27,91,437,1659,5239,91,29,65]\n')
  })

  it('prints [] for empty input', () => {
    expect(seedscope(['tokenize-text', '--tokenizer', join(tokenizers, 'gpt2')], '').stdout).toBe('[]\n')
  })

  it.each([
    [['--tokenizer', join(tokenizers, 'gpt2')], Buffer.from([0x66, 0xff]), 'seedscope: stdin is not valid UTF-8 text\n'],
    [['--tokenizer', join(tokenizers, 'missing')], 'x', `seedscope: ${join(tokenizers, 'missing')}: no such tokenizer file or model directory\n`],
    [['--tokenizer', tokenizers], 'x', `seedscope: ${tokenizers}: no tokenizer found (expected tokenizer.json, or vocab.json + merges.txt); copy the model's tokenizer files there, or name a tokenizer explicitly\n`],
    [[], 'x', 'seedscope: Missing required argument: tokenizer\n'],
  ])('fails with one line and exit code 1: %j', (args, stdin, stderr) => {
    expect(seedscope(['tokenize-text', ...(args as string[])], stdin as string)).toEqual({ code: 1, stdout: '', stderr })
  })
})
