// Tokenizer tests against independent references: gpt-3-encoder (OpenAI's encoder ported to JS) for GPT-2,
// the pure-JS @huggingface/tokenizers for NeoX, and a table of hard strings whose ids those produced.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Tokenizer as JsTokenizer } from '@huggingface/tokenizers'
import { beforeAll, describe, expect, it } from 'vitest'
import { UserError } from '../errors.js'
import { assertSameTokenizer, findTokenizerFiles, loadTokenizer, readTokenizerDefinition, tokenizerFingerprint } from './tokenizer.js'
import type { Tokenizer, TokenizerDefinition } from './tokenizer.js'

const fixtures = new URL('../../test/fixtures/', import.meta.url).pathname
const tokenizerDir = (name: string) => join(fixtures, 'tokenizers', name)
const gpt3Encoder = createRequire(import.meta.url)('gpt-3-encoder') as { encode(text: string): number[] }

interface HardCase {
  name: string
  text: string
  gpt2: number[]
  neox: number[]
}
const hardStrings = JSON.parse(readFileSync(join(fixtures, 'tokenizers/hard-strings.json'), 'utf8')) as { cases: HardCase[] }
const sampleTexts = readFileSync(join(fixtures, 'corpus/sample.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => (JSON.parse(line) as { text: string }).text)

const tokenizers: Record<'gpt2' | 'gpt2-vocab-merges' | 'neox', Tokenizer> = {} as never
beforeAll(async () => {
  tokenizers.gpt2 = await loadTokenizer(tokenizerDir('gpt2'))
  tokenizers['gpt2-vocab-merges'] = await loadTokenizer(tokenizerDir('gpt2-vocab-merges'))
  tokenizers.neox = await loadTokenizer(join(tokenizerDir('neox'), 'tokenizer.json'))
})

const ids = async (tokenizer: Tokenizer, text: string) => Array.from(await tokenizer.encode(text))

describe('hard strings (expected ids from independent implementations)', () => {
  for (const hard of hardStrings.cases) {
    it(`gpt2 tokenizer.json: ${hard.name}`, async () => {
      expect(await ids(tokenizers.gpt2, hard.text)).toEqual(hard.gpt2)
    })
    it(`gpt2 vocab.json + merges.txt: ${hard.name}`, async () => {
      expect(await ids(tokenizers['gpt2-vocab-merges'], hard.text)).toEqual(hard.gpt2)
    })
    it(`neox: ${hard.name}`, async () => {
      expect(await ids(tokenizers.neox, hard.text)).toEqual(hard.neox)
    })
  }
})

describe('special-token strings inside document text', () => {
  // The pipeline inserts BOS/EOS itself; a document that mentions "<|endoftext|>" must not gain a boundary.
  it('encodes "<|endoftext|>" as text, never as EOS', async () => {
    const text = 'The end.<|endoftext|>The start'
    expect(await ids(tokenizers.gpt2, text)).not.toContain(tokenizers.gpt2.eos)
    expect(await ids(tokenizers.neox, text)).not.toContain(tokenizers.neox.eos)
    expect(await tokenizers.gpt2.decode(await tokenizers.gpt2.encode(text))).toBe(text)
  })

  it("matches them as Hugging Face's default does only when asked (specialTokens: 'match')", async () => {
    const definition = readTokenizerDefinition(findTokenizerFiles(tokenizerDir('neox')))
    const huggingFaceDefault = new JsTokenizer(definition, {})
    for (const text of ['<|endoftext|>The', 'a <|padding|> b<|endoftext|>']) {
      const reference = huggingFaceDefault.encode(text, { add_special_tokens: false }).ids
      expect(Array.from(await tokenizers.neox.encode(text, { specialTokens: 'match' }))).toEqual(reference)
      expect(await ids(tokenizers.neox, text)).not.toEqual(reference)
    }
    expect(Array.from(await tokenizers.gpt2.encode('a<|endoftext|>b', { specialTokens: 'match' }))).toEqual([64, 50256, 65])
  })
})

describe('independent GPT-2 implementation on corpus documents', () => {
  it('matches gpt-3-encoder on every sample document', async () => {
    expect(sampleTexts.length).toBeGreaterThan(10)
    for (const text of sampleTexts) expect(await ids(tokenizers.gpt2, text)).toEqual(gpt3Encoder.encode(text))
  })
})

describe('the two Hugging Face implementations agree on NeoX', () => {
  it('native tokenizers = @huggingface/tokenizers on every sample document', async () => {
    const definition = readTokenizerDefinition(findTokenizerFiles(tokenizerDir('neox')))
    const js = new JsTokenizer({ ...definition, added_tokens: definition.added_tokens.filter((t) => !t.special) }, {})
    for (const text of sampleTexts) expect(await ids(tokenizers.neox, text)).toEqual(js.encode(text, { add_special_tokens: false }).ids)
  })
})

describe('round trip', () => {
  it('decode(encode(text)) gives the text back (NeoX: its NFC form)', async () => {
    for (const text of [...sampleTexts, ...hardStrings.cases.map((hard) => hard.text)]) {
      expect(await tokenizers.gpt2.decode(await tokenizers.gpt2.encode(text))).toBe(text)
      expect(await tokenizers.neox.decode(await tokenizers.neox.encode(text))).toBe(text.normalize('NFC'))
    }
  })
})

describe('special ids and sizes', () => {
  it('knows BOS/EOS and vocabulary size (SPEC §2)', () => {
    expect([tokenizers.gpt2.bos, tokenizers.gpt2.eos, tokenizers.gpt2.vocabSize]).toEqual([50256, 50256, 50257])
    expect([tokenizers.neox.bos, tokenizers.neox.eos, tokenizers.neox.vocabSize]).toEqual([0, 0, 50277])
  })
})

describe('finding the tokenizer of a model directory', () => {
  it('prefers tokenizer.json, else vocab.json + merges.txt', () => {
    expect(findTokenizerFiles(tokenizerDir('gpt2'))).toEqual({ kind: 'tokenizer.json', path: join(tokenizerDir('gpt2'), 'tokenizer.json') })
    expect(findTokenizerFiles(tokenizerDir('gpt2-vocab-merges'))).toEqual({
      kind: 'vocab+merges',
      vocab: join(tokenizerDir('gpt2-vocab-merges'), 'vocab.json'),
      merges: join(tokenizerDir('gpt2-vocab-merges'), 'merges.txt'),
    })
  })

  it('says what it looked for when a directory has no tokenizer', () => {
    const empty = mkdtempSync(join(tmpdir(), 'seedscope-tok-'))
    expect(() => findTokenizerFiles(empty)).toThrow(UserError)
    expect(() => findTokenizerFiles(empty)).toThrow(`${empty}: no tokenizer found (expected tokenizer.json, or vocab.json + merges.txt)`)
    expect(() => findTokenizerFiles(join(empty, 'missing'))).toThrow('no such tokenizer file or model directory')
  })

  it('names the file when tokenizer.json is not JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seedscope-tok-'))
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": {')
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')}: not valid JSON`)
  })
})

describe('tokenizerFingerprint', () => {
  const gpt2 = () => readTokenizerDefinition(findTokenizerFiles(tokenizerDir('gpt2')))

  it('names the known tokenizers, the same for both GPT-2 file layouts', () => {
    expect(tokenizers.gpt2.name).toBe('gpt2')
    expect(tokenizers['gpt2-vocab-merges'].name).toBe('gpt2')
    expect(tokenizers['gpt2-vocab-merges'].fingerprint).toBe(tokenizers.gpt2.fingerprint)
    expect(tokenizers.neox.name).toBe('gpt-neox-20b')
  })

  it('ignores key order, whitespace, merge spelling and omitted defaults', async () => {
    const definition = gpt2()
    const reordered = reverseKeys(definition) as TokenizerDefinition
    reordered.model.merges = definition.model.merges!.map((merge) => (merge as string).split(' ') as [string, string])
    delete (reordered.pre_tokenizer as Record<string, unknown>).use_regex // older serialisers omit it (default true)
    const dir = mkdtempSync(join(tmpdir(), 'seedscope-tok-'))
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(reordered, null, 4))
    const loaded = await loadTokenizer(dir)
    expect(loaded.fingerprint).toBe(tokenizers.gpt2.fingerprint)
    expect(loaded.name).toBe('gpt2')
  })

  it('changes when a merge, a special token or the pre-tokenizer changes', () => {
    const base = tokenizerFingerprint(gpt2())
    const merge = gpt2()
    merge.model.merges = [...merge.model.merges!.slice(1), merge.model.merges![0]]
    const special = gpt2()
    special.added_tokens[0].special = false
    const prefix = gpt2()
    ;(prefix.pre_tokenizer as Record<string, unknown>).add_prefix_space = true
    for (const changed of [merge, special, prefix]) expect(tokenizerFingerprint(changed)).not.toBe(base)
  })
})

describe('assertSameTokenizer', () => {
  it('refuses seeds with different tokenizers, naming both', () => {
    const seeds = [
      { seed: 'alpha', tokenizer: tokenizers.gpt2 },
      { seed: 'beta', tokenizer: tokenizers.neox },
    ]
    expect(() => assertSameTokenizer(seeds)).toThrow(UserError)
    expect(() => assertSameTokenizer(seeds)).toThrow(
      'seeds alpha and beta use different tokenizers (gpt2 vs gpt-neox-20b); only seeds that share a tokenizer can be compared',
    )
  })

  it('accepts seeds whose tokenizer files differ in layout but not in content', () => {
    expect(() =>
      assertSameTokenizer([
        { seed: 'alias', tokenizer: tokenizers['gpt2-vocab-merges'] },
        { seed: 'battlestar', tokenizer: tokenizers.gpt2 },
      ]),
    ).not.toThrow()
  })
})

function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value).reverse().map(([key, inner]) => [key, reverseKeys(inner)]))
}
