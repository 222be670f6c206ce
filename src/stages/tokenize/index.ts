// The tokenize stage (SPEC §2): read the corpus, tokenize every document, shuffle documents with the recorded
// seed, hold some out by document, join each split's documents with EOS into rows of ctx − 1 tokens with BOS
// prepended, and write rows.parquet, documents.parquet and the stage's own record of inputs, params and counts
// (outputs.ts names it; written last, so its presence means done).
// Same inputs and params give byte-identical outputs, however many threads tokenize.
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { UserError } from '../../errors.js'
import { writeFileAtomic } from '../../io/atomic-write.js'
import { CorpusIssueTally, listCorpusFiles } from '../../io/corpus.js'
import type { CorpusFormat, CorpusIssue, CorpusIssueKind, CorpusReadOptions } from '../../io/corpus.js'
import { hashFile } from '../../io/file-hash.js'
import type { FileHash } from '../../io/file-hash.js'
import { TableWriter, writeTable } from '../../io/tables.js'
import { TOKENIZER_LIBRARY, loadTokenizer } from '../../model/tokenizer.js'
import type { Tokenizer } from '../../model/tokenizer.js'
import { tokenizeDocuments } from './documents.js'
import type { TokenizedDocuments } from './documents.js'
import { DOCUMENTS_FILE, MANIFEST_FILE, ROWS_FILE, documentsTable, rowColumns, rowsTable } from './outputs.js'
import { RowPacker, splitDocuments, splitDocumentsByLabel } from './rows.js'
import type { DocumentSplit, PackedRow, Split } from './rows.js'

export { readTokenRows, readTokenRowsInfo } from './outputs.js'

/** Bump when the outputs change meaning. */
export const TOKENIZE_VERSION = 1

/**
 * Everything the outputs depend on besides the input files: the config's `tokenize` and `corpus` keys (defaults
 * and reasons live in the config schema; names here are the camelCase of its keys).
 */
export interface TokenizeParams {
  ctx: number // tokenize.ctx: tokens per row, BOS included (SPEC §2: 512)
  seed: number // tokenize.shuffle_seed: document shuffle seed, recorded in summary.json
  heldOutFraction: number // tokenize.heldout_share: share of documents held out, in [0, 1); unused with splitField
  maxTokens?: number // tokenize.max_tokens: budget for all rows (rows · ctx); default the whole corpus
  format?: CorpusFormat | 'auto' // corpus.format: how files are read; 'auto' (default) goes by file name
  textField: string // corpus.text_field: JSONL/Parquet field holding the text
  splitField?: string // corpus.split_field: top-level field naming each document's split; "heldout" holds it out
  idField?: string // field holding the document id (default 'id')
  sourceField?: string // field holding the source label; dotted paths reach into objects (default 'source')
  strict: boolean // corpus.strict: stop at the first bad document instead of skipping and counting it
}

export interface TokenizeContext {
  corpusPaths: string[] // corpus files (.jsonl, .jsonl.gz, .parquet, .txt), or directories holding them
  tokenizerPath: string // a tokenizer.json, or a model directory to find the tokenizer in
  outDir: string
  progress?: { advance(documents: number): void } // told as each batch of documents is tokenized
  workers?: number // tokenizer threads (default: one per core; 0 tokenizes on this thread)
}

type PerSplit<T> = Record<Split, T>

export interface TokenizeSummary {
  tokenizer: { name: string; fingerprint: string }
  documents: PerSplit<number> // documents in each split
  textTokens: PerSplit<number> // their text tokens (no BOS/EOS)
  rows: PerSplit<number>
  droppedTokens: PerSplit<number> // stream tokens in no row: the final partial row, and any past maxTokens
  skipped: Record<CorpusIssueKind, number> // documents skipped, by reason
  issues: CorpusIssue[] // the first skipped documents, with file and line
  outputs: string[] // paths written
}

// Rows per Parquet row group: 1,024 rows of ctx 512 are 2 MiB of tokens, a comfortable unit to read back.
const ROWS_PER_GROUP = 1024

export async function tokenizeCorpus(params: TokenizeParams, context: TokenizeContext): Promise<TokenizeSummary> {
  const tokenizer = await loadTokenizer(context.tokenizerPath)
  const corpus = await Promise.all(listCorpusFiles(context.corpusPaths, params.format).map((file) => hashFile(file.path)))
  const tally = new CorpusIssueTally()
  const documents = await tokenizeDocuments(tokenizer, context.corpusPaths, {
    read: { ...readOptions(params), onIssue: tally.add },
    splitField: params.splitField,
    workers: context.workers ?? availableParallelism(),
    progress: context.progress,
  })
  if (documents.count === 0) {
    throw new UserError(`${context.corpusPaths.join(', ')}: no usable documents (${tally.total} skipped)`)
  }
  const split = params.splitField
    ? splitDocumentsByLabel(documents.heldOut, params.seed)
    : splitDocuments(documents.count, params.seed, params.heldOutFraction)
  const caps = rowCaps(params, split)

  const metadata = {
    'seedscope.stage': 'tokenize',
    'seedscope.version': String(TOKENIZE_VERSION),
    'seedscope.ctx': String(params.ctx),
    'seedscope.tokenizer': `${tokenizer.name} ${tokenizer.fingerprint}`,
  }
  const rows = writeRows(join(context.outDir, ROWS_FILE), metadata, split, documents, tokenizer, params.ctx, caps)
  const documentsFile = writeDocuments(join(context.outDir, DOCUMENTS_FILE), metadata, split, documents)

  const summary: TokenizeSummary = {
    tokenizer: { name: tokenizer.name, fingerprint: tokenizer.fingerprint },
    documents: { main: split.main.length, heldout: split.heldout.length },
    textTokens: { main: documents.totalTokens(split.main), heldout: documents.totalTokens(split.heldout) },
    rows: rows.rows,
    droppedTokens: rows.droppedTokens,
    skipped: tally.counts,
    issues: tally.examples,
    outputs: [ROWS_FILE, DOCUMENTS_FILE, MANIFEST_FILE].map((name) => join(context.outDir, name)),
  }
  await writeSummaryFile(join(context.outDir, MANIFEST_FILE), { params, tokenizer, corpus, caps, summary, rowsFile: rows.file, documentsFile })
  return summary
}

function readOptions(params: TokenizeParams): CorpusReadOptions {
  const { format, textField, idField, sourceField, strict } = params
  return { format, textField, idField, sourceField, strict }
}

/**
 * Rows each split may keep under maxTokens: floor(maxTokens / ctx) rows in all, shared in proportion to the
 * splits' document counts (held-out share rounded). A split with fewer rows than its cap does not pass the
 * rest to the other, so one split's size never depends on the other's documents. null: no budget.
 */
function rowCaps(params: TokenizeParams, split: DocumentSplit): PerSplit<number> | null {
  if (params.maxTokens === undefined) return null
  const total = Math.floor(params.maxTokens / params.ctx)
  const heldout = Math.round((total * split.heldout.length) / (split.main.length + split.heldout.length))
  return { main: total - heldout, heldout }
}

/** Pack each split's stream into rows and write them, one row group at a time. */
function writeRows(
  path: string,
  metadata: Record<string, string>,
  split: DocumentSplit,
  documents: TokenizedDocuments,
  tokenizer: Tokenizer,
  ctx: number,
  caps: PerSplit<number> | null,
) {
  const writer = new TableWriter(path, rowsTable(metadata))
  const rows: PerSplit<number> = { main: 0, heldout: 0 }
  const droppedTokens: PerSplit<number> = { main: 0, heldout: 0 }
  try {
    for (const name of ['main', 'heldout'] as const) {
      const cap = caps?.[name] ?? Infinity
      const packer = new RowPacker({ ctx, bos: tokenizer.bos, eos: tokenizer.eos })
      let group: PackedRow[] = []
      const flush = () => {
        writer.append(rowColumns(group, writer.rowCount, name))
        rows[name] += group.length
        group = []
      }
      for (const doc of split[name]) {
        if (rows[name] + group.length >= cap) break
        group.push(...packer.add(doc, documents.tokens(doc)).slice(0, cap - rows[name] - group.length))
        if (group.length >= ROWS_PER_GROUP) flush()
      }
      if (group.length) flush()
      // Text tokens plus the EOS joining each pair of documents, less what went into rows (BOS excluded).
      const streamTokens = documents.totalTokens(split[name]) + Math.max(0, split[name].length - 1)
      droppedTokens[name] = streamTokens - rows[name] * (ctx - 1)
    }
  } catch (error) {
    writer.abort()
    throw error
  }
  return { rows, droppedTokens, file: writer.close() }
}

function writeDocuments(path: string, metadata: Record<string, string>, split: DocumentSplit, documents: TokenizedDocuments) {
  const n = documents.count
  const splitOf: Split[] = new Array(n)
  const order = new Int32Array(n)
  for (const name of ['main', 'heldout'] as const) {
    split[name].forEach((doc, position) => {
      splitOf[doc] = name
      order[doc] = position
    })
  }
  return writeTable(path, documentsTable(metadata), {
    doc: Int32Array.from({ length: n }, (_, doc) => doc),
    id: documents.ids,
    source: documents.sources,
    split: splitOf,
    order,
    n_tokens: Int32Array.from({ length: n }, (_, doc) => documents.nTokens(doc)),
    file: documents.files,
    line: Int32Array.from(documents.lines),
    meta: documents.metas,
  })
}

interface SummaryInputs {
  params: TokenizeParams
  tokenizer: Tokenizer
  corpus: FileHash[]
  caps: PerSplit<number> | null
  summary: TokenizeSummary
  rowsFile: { bytes: number; hash: string }
  documentsFile: { bytes: number; hash: string }
}

/** The stage's record of what it read (with hashes), how, and what it wrote; written last. */
async function writeSummaryFile(path: string, { params, tokenizer, corpus, caps, summary, rowsFile, documentsFile }: SummaryInputs) {
  const tokenizerFiles = await Promise.all(
    (tokenizer.files.kind === 'tokenizer.json' ? [tokenizer.files.path] : [tokenizer.files.vocab, tokenizer.files.merges]).map(hashFile),
  )
  const record = {
    stage: 'tokenize',
    version: TOKENIZE_VERSION,
    params,
    tokenizer: {
      name: tokenizer.name,
      fingerprint: tokenizer.fingerprint,
      files: tokenizerFiles,
      library: TOKENIZER_LIBRARY,
      bos: tokenizer.bos,
      eos: tokenizer.eos,
      special_tokens_in_text: 'encoded as text', // see src/model/tokenizer.ts
    },
    corpus,
    shuffle: {
      prng: 'splitmix64',
      method: 'fisher-yates',
      seed: params.seed,
      held_out: params.splitField
        ? `documents whose "${params.splitField}" is "heldout"`
        : 'the first round(heldOutFraction * documents) of the shuffled order',
    },
    row_caps: caps, // from maxTokens; null: every full row kept
    counts: {
      documents: summary.documents,
      text_tokens: summary.textTokens,
      rows: summary.rows,
      dropped_tokens: summary.droppedTokens,
      skipped: summary.skipped,
    },
    issues: summary.issues,
    outputs: [
      { path: ROWS_FILE, ...rowsFile },
      { path: DOCUMENTS_FILE, ...documentsFile },
    ],
  }
  writeFileAtomic(path, `${JSON.stringify(record, null, 2)}\n`)
}
