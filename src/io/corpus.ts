// Corpus readers (SPEC §2 input): JSONL (gzipped when the name ends in .gz), Parquet with a text column (the layout
// of Hugging Face datasets such as pile-10k), and .txt files, one document each. Directories stand for the corpus
// files inside them. The readers stream one document at a time, so memory
// holds one line, one .txt file or one Parquet row group. A bad document (malformed JSON, invalid UTF-8, no
// text, empty text) is reported with its file and line and skipped; in strict mode the first one is an error.
import { isUtf8 } from 'node:buffer'
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, join, relative, sep } from 'node:path'
import { createGunzip } from 'node:zlib'
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet'
import { UserError, atPath } from '../errors.js'

export interface CorpusDocument {
  id: string // the record's id field, else "<name>:<line>" (JSONL) or "<name>#<row>" (Parquet); for .txt "<name>" (name: the path within a directory given, else the base name)
  source: string | null // the record's source field, null when it has none (and for .txt files)
  text: string
  meta: Record<string, unknown> // the record's other fields (not text, id or source); {} for .txt files
  file: string // the corpus file it came from
  line: number // 1-based line (JSONL), 0-based row (Parquet, as a data frame counts), 1 (.txt)
}

/** How a file is read; 'text' is a .txt file holding one document. */
export type CorpusFormat = 'jsonl' | 'parquet' | 'text'

export interface CorpusFile {
  path: string
  format: CorpusFormat
  root?: string // the directory the file was found in; a .txt document's id is its path relative to it
}

export type CorpusIssueKind = 'malformed-json' | 'missing-text' | 'invalid-utf8' | 'empty'

export interface CorpusIssue {
  kind: CorpusIssueKind
  file: string
  line: number // as in CorpusDocument; for invalid UTF-8 in a .txt file, the line of the first bad byte
  detail: string
}

export interface CorpusReadOptions {
  format?: CorpusFormat | 'auto' // how to read every file; 'auto' goes by each file name (default 'auto')
  textField?: string // JSONL/Parquet field holding the document text (default 'text')
  idField?: string // field holding the document id (default 'id')
  sourceField?: string // field holding the source label; a dotted path reaches into objects, e.g. 'meta.pile_set_name' (default 'source')
  strict?: boolean // stop at the first bad document with a UserError instead of skipping it (default false)
  onIssue?: (issue: CorpusIssue) => void // told about each skipped document (default: skipped silently, so pass a CorpusIssueTally)
}

/** Counts skipped documents by kind and keeps the first few, for the manifest and the run summary. */
export class CorpusIssueTally {
  readonly counts: Record<CorpusIssueKind, number> = { 'malformed-json': 0, 'missing-text': 0, 'invalid-utf8': 0, empty: 0 }
  readonly examples: CorpusIssue[] = [] // the first `keep` issues, in reading order
  total = 0

  constructor(private readonly keep = 20) {}

  readonly add = (issue: CorpusIssue): void => {
    this.counts[issue.kind]++
    this.total++
    if (this.examples.length < this.keep) this.examples.push(issue)
  }
}

const ISSUE_WORDS: Record<CorpusIssueKind, string> = {
  'malformed-json': 'malformed JSON',
  'missing-text': 'no text',
  'invalid-utf8': 'invalid UTF-8',
  empty: 'empty document',
}

/** `file:line: what` (Parquet: `file row N: what`), the form every corpus message takes. */
export function formatIssue(issue: CorpusIssue): string {
  const where = issue.file.endsWith('.parquet') ? `${issue.file} row ${issue.line}` : `${issue.file}:${issue.line}`
  return `${where}: ${ISSUE_WORDS[issue.kind]}${issue.detail ? ` (${issue.detail})` : ''}`
}

const EXTENSIONS: Record<CorpusFormat, readonly string[]> = {
  jsonl: ['.jsonl', '.jsonl.gz', '.ndjson', '.ndjson.gz'],
  parquet: ['.parquet'],
  text: ['.txt'],
}
const KNOWN_EXTENSIONS = Object.values(EXTENSIONS).flat().join(', ')

/** The format a file name says, or undefined. */
export function corpusFormat(path: string): CorpusFormat | undefined {
  const formats = Object.keys(EXTENSIONS) as CorpusFormat[]
  return formats.find((format) => EXTENSIONS[format].some((extension) => path.endsWith(extension)))
}

/**
 * The files `paths` stand for, in reading order. A directory stands for the files inside it (recursively, in
 * path order) whose names fit `format` (auto: any corpus extension); other files there are ignored.
 */
export function listCorpusFiles(paths: readonly string[], format: CorpusFormat | 'auto' = 'auto'): CorpusFile[] {
  const files: CorpusFile[] = []
  for (const path of paths) {
    if (!existsSync(path)) throw new UserError(`${path}: no such corpus file or directory`)
    if (!statSync(path).isDirectory()) {
      const named = format === 'auto' ? corpusFormat(path) : format
      if (!named) throw new UserError(`${path}: unknown corpus format (expected ${KNOWN_EXTENSIONS}, or a directory); name the format`)
      files.push({ path, format: named })
      continue
    }
    const inside = walk(path).flatMap((file) => {
      const named = corpusFormat(file)
      return named && (format === 'auto' || named === format) ? [{ path: file, format: named, root: path }] : []
    })
    if (inside.length === 0) {
      const wanted = format === 'auto' ? KNOWN_EXTENSIONS : EXTENSIONS[format].join(', ')
      throw new UserError(`${path}: no corpus files in this directory (looked for ${wanted})`)
    }
    files.push(...inside)
  }
  return files
}

/** Every document of the corpus, in file order and then line order. */
export async function* readCorpus(paths: readonly string[], options: CorpusReadOptions = {}): AsyncGenerator<CorpusDocument> {
  const fields = {
    text: options.textField ?? 'text',
    id: options.idField ?? 'id',
    source: options.sourceField ?? 'source',
  }
  const report = (issue: CorpusIssue) => {
    if (options.strict) {
      throw new UserError(`${formatIssue(issue)}; strict mode stops at the first bad document (fix it, or turn strict off to skip and count them)`)
    }
    options.onIssue?.(issue)
  }
  for (const file of listCorpusFiles(paths, options.format)) {
    if (file.format === 'text') yield* readTextFile(file, report)
    else if (file.format === 'parquet') yield* readParquet(file, fields, report)
    else yield* readJsonl(file, fields, report)
  }
}

type Fields = { text: string; id: string; source: string }
type Report = (issue: CorpusIssue) => void

async function* readJsonl(file: CorpusFile, fields: Fields, report: Report): AsyncGenerator<CorpusDocument> {
  const { path } = file
  const gzipped = path.endsWith('.gz')
  let lineNumber = 0
  try {
    for await (const line of byteLines(openStream(path, gzipped))) {
      lineNumber++
      const bytes = lineNumber === 1 && hasBom(line) ? line.subarray(3) : line // editors on Windows write one
      if (isBlank(bytes)) continue // blank lines hold no document
      const issue = (kind: CorpusIssueKind, detail: string) => report({ kind, file: path, line: lineNumber, detail })
      if (!isUtf8(bytes)) {
        issue('invalid-utf8', `first bad byte at column ${firstInvalidUtf8(bytes) + 1}`)
        continue
      }
      let record: unknown
      try {
        record = JSON.parse(bytes.toString('utf8'))
      } catch (error) {
        issue('malformed-json', (error as Error).message)
        continue
      }
      if (record === null || typeof record !== 'object' || Array.isArray(record)) {
        issue('malformed-json', `expected a JSON object, got ${Array.isArray(record) ? 'an array' : typeof record}`)
        continue
      }
      const document = toDocument(record as Record<string, unknown>, fields, path, lineNumber, `${shortName(file)}:${lineNumber}`, issue)
      if (document) yield document
    }
  } catch (error) {
    // File system and zlib errors carry a code; anything else (a UserError from strict mode, a bug) passes on.
    if ((error as NodeJS.ErrnoException).code === undefined) throw error
    throw atPath(path, readFailure(error, gzipped))
  }
}

async function* readParquet(corpusFile: CorpusFile, fields: Fields, report: Report): AsyncGenerator<CorpusDocument> {
  const { path } = corpusFile
  let file, metadata
  try {
    file = await asyncBufferFromFile(path)
    metadata = await parquetMetadataAsync(file)
  } catch (error) {
    throw atPath(path, `cannot read as Parquet (${(error as Error).message})`)
  }
  const columns = parquetSchema(metadata).children.map((child) => child.element.name)
  if (!columns.includes(fields.text)) {
    throw new UserError(`${path}: no column "${fields.text}" (columns: ${columns.join(', ')}); name the text column`)
  }
  let rowStart = 0
  for (const group of metadata.row_groups) {
    const rowEnd = rowStart + Number(group.num_rows)
    // Strings come back as bytes, so invalid UTF-8 in the text is caught here rather than turned into U+FFFD.
    const rows = await parquetReadObjects({ file, metadata, rowStart, rowEnd, parsers: { stringFromBytes: (bytes) => bytes } })
    for (let i = 0; i < rows.length; i++) {
      const row = rowStart + i
      const issue = (kind: CorpusIssueKind, detail: string) => report({ kind, file: path, line: row, detail })
      const record = rows[i] as Record<string, unknown>
      const text = record[fields.text]
      if (text instanceof Uint8Array && !isUtf8(text)) {
        issue('invalid-utf8', `first bad byte at offset ${firstInvalidUtf8(text)}`)
        continue
      }
      const plain = plainValue(record) as Record<string, unknown>
      const document = toDocument(plain, fields, path, row, `${shortName(corpusFile)}#${row}`, issue)
      if (document) yield document
    }
    rowStart = rowEnd
  }
}

async function* readTextFile(file: CorpusFile, report: Report): AsyncGenerator<CorpusDocument> {
  const { path } = file
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (error) {
    throw atPath(path, readFailure(error, false))
  }
  if (!isUtf8(bytes)) {
    const at = firstInvalidUtf8(bytes)
    const line = countNewlines(bytes, at) + 1
    report({ kind: 'invalid-utf8', file: path, line, detail: `first bad byte at offset ${at}` })
    return
  }
  const text = stripBom(bytes.toString('utf8'))
  if (text.trim() === '') {
    report({ kind: 'empty', file: path, line: 1, detail: '' })
    return
  }
  yield { id: shortName(file), source: null, text, meta: {}, file: path, line: 1 }
}

/** The checks every record shares once it is an object: a string text, well-formed, not blank. */
function toDocument(
  record: Record<string, unknown>,
  fields: Fields,
  file: string,
  line: number,
  fallbackId: string,
  issue: (kind: CorpusIssueKind, detail: string) => void,
): CorpusDocument | undefined {
  const text = record[fields.text]
  if (typeof text !== 'string') {
    issue('missing-text', text === undefined || text === null ? `no field "${fields.text}"` : `field "${fields.text}" is ${typeof text}, not a string`)
    return undefined
  }
  // JSON can escape half a surrogate pair ("\ud83d"); such a string has no UTF-8 encoding.
  const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.exec(text)
  if (lone) {
    issue('invalid-utf8', `unpaired surrogate \\u${lone[0].charCodeAt(0).toString(16)} at character ${lone.index}`)
    return undefined
  }
  if (text.trim() === '') {
    issue('empty', '')
    return undefined
  }
  const id = record[fields.id]
  const source = fieldAt(record, fields.source)
  const meta: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(record)) {
    if (key !== fields.text && key !== fields.id && key !== fields.source) meta[key] = value
  }
  return {
    id: typeof id === 'string' || typeof id === 'number' ? String(id) : fallbackId,
    source: typeof source === 'string' || typeof source === 'number' ? String(source) : null,
    text,
    meta,
    file,
    line,
  }
}

/** A file's name as ids use it: its path within the directory it was found in, else its base name. */
function shortName({ path, root }: CorpusFile): string {
  return root === undefined ? basename(path) : relative(root, path).split(sep).join('/')
}

function fieldAt(record: Record<string, unknown>, path: string): unknown {
  let value: unknown = record
  for (const key of path.split('.')) {
    if (value === null || typeof value !== 'object') return undefined
    value = (value as Record<string, unknown>)[key]
  }
  return value
}

/** Parquet values as JSON-safe JS: bytes decoded as text, bigints as numbers when exact, dates as ISO strings. */
function plainValue(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8')
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString()
  if (value instanceof Date) return value.toISOString()
  if (Array.isArray(value)) return value.map(plainValue)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, plainValue(inner)]))
  }
  return value
}

function openStream(path: string, gzipped: boolean): AsyncIterable<Buffer> {
  const file = createReadStream(path, { highWaterMark: 1 << 20 })
  if (!gzipped) return file
  const gunzip = createGunzip()
  file.on('error', (error) => gunzip.destroy(error))
  return file.pipe(gunzip)
}

/** Split a byte stream at "\n" (dropping a "\r" before it), before any decoding, so bad bytes stay on their line. */
async function* byteLines(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = []
  for await (const chunk of chunks) {
    let start = 0
    for (let end = chunk.indexOf(10); end !== -1; end = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, end)
      const line = pending.length ? Buffer.concat([...pending, piece]) : piece
      pending = []
      yield line.at(-1) === 13 ? line.subarray(0, -1) : line
      start = end + 1
    }
    if (start < chunk.length) pending.push(Buffer.from(chunk.subarray(start)))
  }
  if (pending.length) {
    const line = Buffer.concat(pending)
    yield line.at(-1) === 13 ? line.subarray(0, -1) : line
  }
}

/**
 * Offset of the first byte that is not part of valid UTF-8. Valid UTF-8 survives a decode/encode round trip
 * unchanged, and the decoder replaces the first invalid byte, so the first difference is that byte.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  const roundTrip = Buffer.from(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
  const n = Math.min(roundTrip.length, bytes.length)
  for (let i = 0; i < n; i++) if (roundTrip[i] !== bytes[i]) return i
  return n
}

function isBlank(bytes: Uint8Array): boolean {
  for (const byte of bytes) if (byte !== 32 && byte !== 9 && byte !== 13) return false
  return true
}

function countNewlines(bytes: Uint8Array, end: number): number {
  let count = 0
  for (let i = 0; i < end; i++) if (bytes[i] === 10) count++
  return count
}

function hasBom(bytes: Uint8Array): boolean {
  return bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
}

function walk(dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...walk(path))
    else if (entry.isFile()) out.push(path)
  }
  return out.sort() // code-unit order, the same on every machine and locale
}

function readFailure(error: unknown, gzipped: boolean): string {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES') return 'permission denied'
  if (gzipped && code?.startsWith('Z_')) return `not a valid gzip file (${(error as Error).message})`
  return `cannot read (${(error as Error).message})`
}
