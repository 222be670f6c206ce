// Corpus readers: every format, the metadata they keep, and each kind of bad document reported with its
// file and line (or skipped silently nowhere; strict mode stops at the first).
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { parquetWriteBuffer } from 'hyparquet-writer'
import { describe, expect, it } from 'vitest'
import { UserError } from '../errors.js'
import { CorpusIssueTally, firstInvalidUtf8, formatIssue, readCorpus } from './corpus.js'
import type { CorpusDocument, CorpusReadOptions } from './corpus.js'

const scratch = () => mkdtempSync(join(tmpdir(), 'seedscope-corpus-'))

async function readAll(paths: string[], options: CorpusReadOptions = {}) {
  const tally = new CorpusIssueTally()
  const documents: CorpusDocument[] = []
  for await (const document of readCorpus(paths, { onIssue: tally.add, ...options })) documents.push(document)
  return { documents, tally, issues: tally.examples.map(formatIssue) }
}

/** A JSONL file from raw lines (Buffers keep invalid bytes as they are). */
function jsonlFile(lines: (string | Buffer)[], name = 'corpus.jsonl'): string {
  const path = join(scratch(), name)
  writeFileSync(path, Buffer.concat(lines.flatMap((line) => [Buffer.from(line), Buffer.from('\n')])))
  return path
}

const good = (id: string, text: string, extra: Record<string, unknown> = {}) => JSON.stringify({ id, source: 'web', text, ...extra })

describe('JSONL', () => {
  it('reads text, id and source, and keeps the other fields as metadata', async () => {
    const path = jsonlFile([good('a', 'first', { split: 'train', n: 3 }), JSON.stringify({ text: 'no id or source' })])
    const { documents, tally } = await readAll([path])
    expect(tally.total).toBe(0)
    expect(documents).toEqual([
      { id: 'a', source: 'web', text: 'first', meta: { split: 'train', n: 3 }, file: path, line: 1 },
      { id: 'corpus.jsonl:2', source: null, text: 'no id or source', meta: {}, file: path, line: 2 },
    ])
  })

  it('reads other field names, with a dotted path for the source', async () => {
    const path = jsonlFile([JSON.stringify({ doc_id: 7, body: 'x', meta: { pile_set_name: 'Pile-CC' } })])
    const { documents } = await readAll([path], { textField: 'body', idField: 'doc_id', sourceField: 'meta.pile_set_name' })
    expect(documents.map(({ id, source, text }) => ({ id, source, text }))).toEqual([{ id: '7', source: 'Pile-CC', text: 'x' }])
  })

  it('reports each bad line with its number and keeps reading', async () => {
    const path = jsonlFile([
      good('ok1', 'fine'),
      '{"id": "broken", "text": "unterminated',
      '',
      '["an", "array"]',
      JSON.stringify({ id: 'no-text', body: 'x' }),
      JSON.stringify({ id: 'number', text: 42 }),
      good('blank', '  \n\t '),
      good('empty', ''),
      Buffer.concat([Buffer.from('{"id": "latin1", "text": "caf'), Buffer.from([0xe9]), Buffer.from('"}')]),
      '{"id": "surrogate", "text": "half \\ud83d pair"}',
      good('ok2', 'also fine'),
    ])
    const { documents, tally, issues } = await readAll([path])
    expect(documents.map((d) => [d.id, d.line])).toEqual([
      ['ok1', 1],
      ['ok2', 11],
    ])
    expect(tally.counts).toEqual({ 'malformed-json': 2, 'missing-text': 2, 'invalid-utf8': 2, empty: 2 })
    expect(issues).toEqual([
      expect.stringMatching(new RegExp(`^${path}:2: malformed JSON \\(.+\\)$`)),
      `${path}:4: malformed JSON (expected a JSON object, got an array)`,
      `${path}:5: no text (no field "text")`,
      `${path}:6: no text (field "text" is number, not a string)`,
      `${path}:7: empty document`,
      `${path}:8: empty document`,
      `${path}:9: invalid UTF-8 (first bad byte at column 30)`,
      `${path}:10: invalid UTF-8 (unpaired surrogate \\ud83d at character 5)`,
    ])
  })

  it('reads CRLF line ends, a byte-order mark and a last line without newline', async () => {
    const path = join(scratch(), 'crlf.jsonl')
    writeFileSync(path, `\ufeff${good('a', 'one')}\r\n${good('b', 'two')}`)
    const { documents } = await readAll([path])
    expect(documents.map((d) => [d.id, d.text, d.line])).toEqual([
      ['a', 'one', 1],
      ['b', 'two', 2],
    ])
  })

  it('reads a line longer than one read chunk', async () => {
    const long = 'word '.repeat(500_000) // 2.5 MB, several 1 MiB chunks
    const { documents } = await readAll([jsonlFile([good('a', 'x'), good('long', long), good('b', 'y')])])
    expect(documents.map((d) => d.text.length)).toEqual([1, long.length, 1])
  })

  it('strict mode stops at the first bad document, naming file and line', async () => {
    const path = jsonlFile([good('ok', 'fine'), '{oops', good('empty', '')])
    const read = readAll([path], { strict: true })
    await expect(read).rejects.toThrow(UserError)
    await expect(readAll([path], { strict: true })).rejects.toThrow(new RegExp(`^${path}:2: malformed JSON .*strict mode`))
  })
})

describe('gzipped JSONL', () => {
  it('reads the same documents as the plain file', async () => {
    const plain = join(fixtures(), 'sample.jsonl')
    const gz = join(scratch(), 'corpus.jsonl.gz')
    writeFileSync(gz, gzipSync(readFileSync(plain)))
    const a = await readAll([plain])
    const b = await readAll([gz])
    expect(b.documents.map((d) => [d.id, d.source, d.text])).toEqual(a.documents.map((d) => [d.id, d.source, d.text]))
    expect(a.documents.length).toBe(18)
  })

  it('says when a .gz file is not gzip', async () => {
    const gz = join(scratch(), 'corpus.jsonl.gz')
    writeFileSync(gz, 'plain text, not gzip\n')
    await expect(readAll([gz])).rejects.toThrow(`${gz}: not a valid gzip file`)
  })
})

describe('directories of .txt files', () => {
  it('reads every .txt file recursively in path order, one document each, id relative to the directory', async () => {
    const dir = scratch()
    mkdirSync(join(dir, 'b'))
    writeFileSync(join(dir, 'b', 'two.txt'), 'second')
    writeFileSync(join(dir, 'a.txt'), '\ufefffirst')
    writeFileSync(join(dir, 'notes.md'), 'ignored')
    writeFileSync(join(dir, 'empty.txt'), '\n  \n')
    writeFileSync(join(dir, 'bad.txt'), Buffer.concat([Buffer.from('line one\nline '), Buffer.from([0xff, 0xfe]), Buffer.from('\n')]))
    const { documents, issues } = await readAll([dir])
    expect(documents.map((d) => [d.id, d.text, d.source])).toEqual([
      ['a.txt', 'first', null],
      ['b/two.txt', 'second', null],
    ])
    expect(issues).toEqual([`${join(dir, 'bad.txt')}:2: invalid UTF-8 (first bad byte at offset 14)`, `${join(dir, 'empty.txt')}:1: empty document`])
  })

  it('reads every corpus file of a directory; an explicit format picks only its files', async () => {
    const dir = scratch()
    mkdirSync(join(dir, 'nested'))
    writeFileSync(join(dir, 'nested', 'shard.jsonl'), good('j1', 'from jsonl') + '\n')
    writeFileSync(join(dir, 'a.txt'), 'from text')
    expect((await readAll([dir])).documents.map((d) => d.id)).toEqual(['a.txt', 'j1'])
    expect((await readAll([dir], { format: 'text' })).documents.map((d) => d.id)).toEqual(['a.txt'])
    await expect(readAll([dir], { format: 'parquet' })).rejects.toThrow(`${dir}: no corpus files in this directory (looked for .parquet)`)
  })
})

describe('format override', () => {
  it('reads a file whose name does not say its format', async () => {
    const path = join(scratch(), 'docs.data')
    writeFileSync(path, good('x', 'hello') + '\n')
    await expect(readAll([path])).rejects.toThrow(`${path}: unknown corpus format (expected .jsonl, .jsonl.gz, .ndjson, .ndjson.gz, .parquet, .txt, or a directory); name the format`)
    expect((await readAll([path], { format: 'jsonl' })).documents.map((d) => d.text)).toEqual(['hello'])
  })
})

describe('Parquet', () => {
  function parquetFile(columnData: Parameters<typeof parquetWriteBuffer>[0]['columnData']): string {
    const path = join(scratch(), 'pile.parquet')
    writeFileSync(path, new Uint8Array(parquetWriteBuffer({ columnData, rowGroupSize: 2 })))
    return path
  }

  it('reads a text column across row groups, with other columns as metadata', async () => {
    const path = parquetFile([
      { name: 'text', data: ['one', 'two', '', 'four', 'five'], type: 'STRING' },
      { name: 'meta', data: [1, 2, 3, 4, 5].map((n) => ({ pile_set_name: n % 2 ? 'Pile-CC' : 'Github' })), type: 'JSON' },
      { name: 'n', data: [10n, 20n, 30n, 40n, 50n], type: 'INT64' },
    ])
    const { documents, issues } = await readAll([path], { sourceField: 'meta.pile_set_name' })
    expect(documents.map((d) => [d.id, d.source, d.text, d.line, d.meta.n])).toEqual([
      ['pile.parquet#0', 'Pile-CC', 'one', 0, 10],
      ['pile.parquet#1', 'Github', 'two', 1, 20],
      ['pile.parquet#3', 'Github', 'four', 3, 40],
      ['pile.parquet#4', 'Pile-CC', 'five', 4, 50],
    ])
    expect(issues).toEqual([`${path} row 2: empty document`])
  })

  it('catches invalid UTF-8 in the text column instead of replacing it', async () => {
    const bad = new Uint8Array([0x6f, 0x6b, 0xc3]) // "ok" and a truncated two-byte sequence
    const path = parquetFile([{ name: 'text', data: [new TextEncoder().encode('fine'), bad], type: 'BYTE_ARRAY' }])
    const { documents, issues } = await readAll([path])
    expect(documents.map((d) => d.text)).toEqual(['fine'])
    expect(issues).toEqual([`${path} row 1: invalid UTF-8 (first bad byte at offset 2)`])
  })

  it('names the columns when the text column is missing', async () => {
    const path = parquetFile([{ name: 'content', data: ['x'], type: 'STRING' }])
    await expect(readAll([path])).rejects.toThrow(`${path}: no column "text" (columns: content); name the text column`)
  })
})

describe('paths', () => {
  it('refuses unknown formats and missing paths', async () => {
    await expect(readAll(['corpus.csv'])).rejects.toThrow('corpus.csv: no such corpus file or directory')
    const csv = join(scratch(), 'corpus.csv')
    writeFileSync(csv, 'a,b\n')
    await expect(readAll([csv])).rejects.toThrow(`${csv}: unknown corpus format`)
  })

  it('reads several paths in the order given', async () => {
    const first = jsonlFile([good('1', 'one')])
    const second = jsonlFile([good('2', 'two')])
    const { documents } = await readAll([second, first])
    expect(documents.map((d) => d.id)).toEqual(['2', '1'])
  })
})

describe('firstInvalidUtf8', () => {
  it('finds the first bad byte after valid multi-byte characters', () => {
    const bytes = Buffer.concat([Buffer.from('é€😀'), Buffer.from([0x80]), Buffer.from('x')])
    expect(firstInvalidUtf8(bytes)).toBe(2 + 3 + 4)
    expect(firstInvalidUtf8(Buffer.from([0xef, 0xbf, 0xbd, 0xff]))).toBe(3) // a real U+FFFD is valid
  })
})

function fixtures(): string {
  return new URL('../../test/fixtures/corpus/', import.meta.url).pathname
}
