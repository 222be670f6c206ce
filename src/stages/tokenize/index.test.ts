// The tokenize stage end to end on the fixture corpus: the rows are rebuilt independently (gpt-3-encoder ids,
// documents joined in the recorded order) and compared token by token and document by document; the split is
// by document; the outputs are byte-identical across runs and thread counts; bad documents are counted.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { UserError } from '../../errors.js'
import { readTable } from '../../io/tables.js'
import { documentAtPositions } from './rows.js'
import { readTokenRows, tokenizeCorpus } from './index.js'
import type { TokenizeParams, TokenizeSummary } from './index.js'
import { DOCUMENTS_FILE, MANIFEST_FILE, ROWS_FILE } from './outputs.js'
import type { TokenRow } from './outputs.js'
import { contentHashOf } from '../../io/content-hash.js'

const fixtures = new URL('../../../test/fixtures/', import.meta.url).pathname
const sample = join(fixtures, 'corpus/sample.jsonl')
const gpt2 = join(fixtures, 'tokenizers/gpt2')
const gpt3Encoder = createRequire(import.meta.url)('gpt-3-encoder') as { encode(text: string): number[] }
const EOS = 50256

const params: TokenizeParams = {
  ctx: 64,
  seed: 1,
  heldOutFraction: 0.2,
  textField: 'text',
  idField: 'id',
  sourceField: 'source',
  strict: false,
}

const scratch = () => mkdtempSync(join(tmpdir(), 'seedscope-tokenize-'))

/** A second corpus file with one bad line of each kind and a document that mentions the EOS string. */
function awkwardCorpus(): string {
  const path = join(scratch(), 'awkward.jsonl')
  const lines = [
    JSON.stringify({ id: 'eot', source: 'code', text: 'tokens = "<|endoftext|>".join(docs)' }),
    '{"id": "cut", "text": "no end',
    JSON.stringify({ id: 'blank', source: 'x', text: '   ' }),
    JSON.stringify({ id: 'short', source: 'x', text: 'A short one.' }),
  ]
  writeFileSync(path, lines.join('\n') + '\n')
  return path
}

interface DocumentRecord {
  doc: number
  id: string
  source: string | null
  split: string
  order: number
  n_tokens: number
}

let outDir: string
let awkward: string
let summary: TokenizeSummary
let rows: TokenRow[]
let documents: DocumentRecord[]
const texts = new Map<string, string>()

beforeAll(async () => {
  awkward = awkwardCorpus()
  for (const path of [sample, awkward]) {
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      try {
        const record = JSON.parse(line) as { id: string; text: string }
        texts.set(record.id, record.text)
      } catch {
        // the malformed line, skipped by the stage too
      }
    }
  }
  outDir = scratch()
  summary = await tokenizeCorpus(params, { corpusPaths: [sample, awkward], tokenizerPath: gpt2, outDir, workers: 0 })
  rows = await readTokenRows(outDir)
  documents = (await readTable(join(outDir, 'documents.parquet'))) as unknown as DocumentRecord[]
})

describe('rows rebuilt independently', () => {
  it('equal the documents, encoded by gpt-3-encoder and joined with EOS in the recorded order', () => {
    for (const split of ['main', 'heldout'] as const) {
      const stream: { token: number; doc: number }[] = []
      const inOrder = documents.filter((d) => d.split === split).sort((a, b) => a.order - b.order)
      inOrder.forEach((document, k) => {
        if (k > 0) stream.push({ token: EOS, doc: inOrder[k - 1].doc })
        for (const token of gpt3Encoder.encode(texts.get(document.id)!)) stream.push({ token, doc: document.doc })
      })
      const splitRows = rows.filter((row) => row.split === split)
      expect(splitRows.length).toBe(Math.floor(stream.length / (params.ctx - 1)))
      expect(splitRows.length).toBe(summary.rows[split])
      splitRows.forEach((row, r) => {
        const body = stream.slice(r * (params.ctx - 1), (r + 1) * (params.ctx - 1))
        expect(Array.from(row.tokens)).toEqual([EOS, ...body.map((t) => t.token)]) // GPT-2's BOS is EOS
        expect(Array.from(documentAtPositions(row.segmentStart, row.segmentDoc, params.ctx))).toEqual([-1, ...body.map((t) => t.doc)])
      })
      expect(summary.droppedTokens[split]).toBe(stream.length % (params.ctx - 1))
    }
  })

  it('number rows consecutively, main rows first', () => {
    expect(rows.map((row) => row.row)).toEqual(rows.map((_, i) => i))
    const firstHeldOut = rows.findIndex((row) => row.split === 'heldout')
    expect(rows.slice(firstHeldOut).every((row) => row.split === 'heldout')).toBe(true)
  })

  it('never put a document in both splits', () => {
    const docsIn = (split: string) => new Set(rows.filter((row) => row.split === split).flatMap((row) => row.segmentDoc))
    const main = docsIn('main')
    const heldout = docsIn('heldout')
    expect(main.size).toBeGreaterThan(0)
    expect(heldout.size).toBeGreaterThan(0)
    for (const doc of heldout) expect(main.has(doc)).toBe(false)
    for (const doc of main) expect(documents[doc].split).toBe('main')
  })
})

describe('documents table', () => {
  it('lists every usable document in corpus order with its tokens and split', () => {
    expect(documents.map((d) => d.doc)).toEqual(documents.map((_, i) => i))
    expect(documents.map((d) => d.id)).toEqual([...texts.keys()].filter((id) => id !== 'blank'))
    for (const d of documents) expect(d.n_tokens).toBe(gpt3Encoder.encode(texts.get(d.id)!).length)
    expect(documents.filter((d) => d.split === 'heldout').length).toBe(Math.round(0.2 * documents.length))
    expect(documents[0].source).toBe('gutenberg')
  })

  it('encodes "<|endoftext|>" in a document as text, not as EOS', () => {
    // The rows matched gpt-3-encoder's ids above, and gpt-3-encoder has no special tokens: check it saw text.
    const eot = documents.find((d) => d.id === 'eot')!
    const reference = gpt3Encoder.encode(texts.get('eot')!)
    expect(reference).not.toContain(EOS)
    expect(eot.n_tokens).toBe(reference.length)
  })
})

describe('summary file and returned summary', () => {
  it('records inputs, params, seed and counts, and hashes the outputs', () => {
    const manifest = JSON.parse(readFileSync(join(outDir, MANIFEST_FILE), 'utf8'))
    expect(manifest.params).toEqual(params)
    expect(manifest.shuffle).toMatchObject({ prng: 'splitmix64', seed: 1 })
    expect(manifest.tokenizer).toMatchObject({ name: 'gpt2', bos: 50256, eos: 50256, special_tokens_in_text: 'encoded as text' })
    expect(manifest.tokenizer.files).toEqual([
      { path: join(gpt2, 'tokenizer.json'), bytes: 2107653, hash: 'xxh3:92b3cb21e1c56d98' },
    ])
    expect(manifest.corpus[0]).toEqual({ path: sample, bytes: 89722, hash: 'xxh3:0331d0eb22130de8' }) // XXH3 reference values: src/io/content-hash.test.ts
    for (const output of manifest.outputs) expect(output.hash).toBe(contentHashOf(readFileSync(join(outDir, output.path))))
    expect(manifest.counts).toEqual({
      documents: summary.documents,
      text_tokens: summary.textTokens,
      rows: summary.rows,
      dropped_tokens: summary.droppedTokens,
      skipped: { 'malformed-json': 1, 'missing-text': 0, 'invalid-utf8': 0, empty: 1 },
    })
  })

  it('adds up: rows·(ctx−1) + dropped = text tokens + joining EOS, per split', () => {
    for (const split of ['main', 'heldout'] as const) {
      const joins = summary.documents[split] - 1
      expect(summary.rows[split] * (params.ctx - 1) + summary.droppedTokens[split]).toBe(summary.textTokens[split] + joins)
    }
  })

  it('reports the skipped documents with file and line', () => {
    expect(summary.issues.map((issue) => [issue.kind, issue.file, issue.line])).toEqual([
      ['malformed-json', awkward, 2],
      ['empty', awkward, 3],
    ])
  })
})

describe('determinism', () => {
  it('writes byte-identical outputs on a rerun with worker threads', async () => {
    const again = scratch()
    await tokenizeCorpus(params, { corpusPaths: [sample, awkward], tokenizerPath: gpt2, outDir: again, workers: 2 })
    for (const name of [ROWS_FILE, DOCUMENTS_FILE, MANIFEST_FILE]) {
      expect(readFileSync(join(again, name)).equals(readFileSync(join(outDir, name))), name).toBe(true)
    }
  })

  it('shuffles differently with another seed', async () => {
    const other = scratch()
    await tokenizeCorpus({ ...params, seed: 2 }, { corpusPaths: [sample], tokenizerPath: gpt2, outDir: other, workers: 0 })
    const orders = (await readTable(join(other, 'documents.parquet'), { columns: ['order'] })).map((d) => d.order)
    expect(orders).not.toEqual(documents.slice(0, orders.length).map((d) => d.order))
  })
})

describe('split field and token budget', () => {
  it('holds out exactly the documents the corpus labels "heldout"', async () => {
    const path = join(scratch(), 'labelled.jsonl')
    const labelled = [...texts.entries()].slice(0, 12).map(([id, text], k) => ({ id, text, split: k % 3 === 0 ? 'heldout' : 'train' }))
    writeFileSync(path, labelled.map((record) => JSON.stringify(record)).join('\n') + '\n')
    const out = scratch()
    const result = await tokenizeCorpus({ ...params, splitField: 'split' }, { corpusPaths: [path], tokenizerPath: gpt2, outDir: out, workers: 0 })
    const table = (await readTable(join(out, 'documents.parquet'))) as unknown as DocumentRecord[]
    expect(table.map((d) => d.split)).toEqual(labelled.map((record) => (record.split === 'heldout' ? 'heldout' : 'main')))
    expect(result.documents).toEqual({ main: 8, heldout: 4 })
    for (const row of await readTokenRows(out)) for (const doc of row.segmentDoc) expect(table[doc].split).toBe(row.split)
  })

  it('keeps at most floor(maxTokens / ctx) rows, shared by document counts, and counts the rest as dropped', async () => {
    const out = scratch()
    const budget = await tokenizeCorpus({ ...params, maxTokens: 20 * params.ctx + 5 }, { corpusPaths: [sample], tokenizerPath: gpt2, outDir: out, workers: 0 })
    expect(budget.rows).toEqual({ main: 16, heldout: 4 }) // 18 documents: round(20 · 4/18) = 4 held out
    const kept = await readTokenRows(out)
    expect(kept.length).toBe(20)
    const full = await tokenizeCorpus(params, { corpusPaths: [sample], tokenizerPath: gpt2, outDir: scratch(), workers: 0 })
    const all = await readTokenRows(dirname(full.outputs[0]))
    // The budget keeps the first rows of each stream: the same rows a run without budget writes first.
    expect(kept.filter((r) => r.split === 'main').map((r) => Array.from(r.tokens))).toEqual(
      all.filter((r) => r.split === 'main').slice(0, 16).map((r) => Array.from(r.tokens)),
    )
    for (const split of ['main', 'heldout'] as const) {
      expect(budget.rows[split] * (params.ctx - 1) + budget.droppedTokens[split]).toBe(budget.textTokens[split] + budget.documents[split] - 1)
    }
    expect(JSON.parse(readFileSync(join(out, MANIFEST_FILE), 'utf8')).row_caps).toEqual({ main: 16, heldout: 4 })
  })
})

describe('failures', () => {
  it('strict mode stops at the first bad document and writes nothing', async () => {
    const out = scratch()
    const run = tokenizeCorpus({ ...params, strict: true }, { corpusPaths: [awkward], tokenizerPath: gpt2, outDir: out, workers: 0 })
    await expect(run).rejects.toThrow(UserError)
    await expect(
      tokenizeCorpus({ ...params, strict: true }, { corpusPaths: [awkward], tokenizerPath: gpt2, outDir: out, workers: 0 }),
    ).rejects.toThrow(`${awkward}:2: malformed JSON`)
    expect(existsSync(join(out, MANIFEST_FILE))).toBe(false)
  })

  it('refuses a corpus with no usable document', async () => {
    const path = join(scratch(), 'blank.jsonl')
    writeFileSync(path, JSON.stringify({ text: '' }) + '\n')
    await expect(tokenizeCorpus(params, { corpusPaths: [path], tokenizerPath: gpt2, outDir: scratch(), workers: 0 })).rejects.toThrow(
      'no usable documents (1 skipped)',
    )
  })
})
