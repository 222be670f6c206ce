// The bundled families' tokenizers (data/models/{gpt2,pythia}/tokenizer.json, cut from GPT-2 and GPT-NeoX-20B):
// seedscope's tokenizer gives exactly the ids the training tool's independent Python BPE (tools/train-seeds/bpe.py)
// gave for 50 held-out documents and 7 edge cases. The training tool matched "<|endoftext|>" in text as the
// special token, so cases containing it are compared with that mode (seedscope's default encodes it as text).
import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import { loadTokenizer } from '../src/model/tokenizer.js'

describe.each(['gpt2', 'pythia'])('bundled %s tokenizer', (family) => {
  const check: { cases: { id: string; text: string; ids: number[] }[] } = JSON.parse(readFileSync(`data/models/${family}/tokenizer-check.json`, 'utf8'))

  test('matches the training tool on every document and edge case', async () => {
    const tokenizer = await loadTokenizer(`data/models/${family}/tokenizer.json`)
    expect(check.cases.length).toBeGreaterThanOrEqual(50)
    for (const c of check.cases) {
      const specialTokens = c.text.includes('<|endoftext|>') ? 'match' : 'text'
      expect([...(await tokenizer.encode(c.text, { specialTokens }))], c.id).toEqual(c.ids)
    }
  })
})
