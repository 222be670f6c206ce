// The tokenize stage's outputs and how later stages read them: rows.parquet (one row of ctx token ids per
// record, with its document segments), documents.parquet (one record per document) and summary.json (inputs
// with their hashes, params, counts).
import { join } from 'node:path'
import { int32Blob, readInt32Blob, readTable, readTableInfo } from '../../io/tables.js'
import type { TableSpec } from '../../io/tables.js'
import type { PackedRow, Split } from './rows.js'

export const ROWS_FILE = 'rows.parquet'
export const DOCUMENTS_FILE = 'documents.parquet'
export const MANIFEST_FILE = 'summary.json' // not manifest.json: that name is the runner's (src/runner/manifest.ts)

/** rows.parquet: main-stream rows first, then held-out rows; `row` numbers them across both. */
export function rowsTable(metadata: Record<string, string>): TableSpec {
  return {
    columns: [
      { name: 'row', type: 'INT32' },
      { name: 'split', type: 'STRING' }, // 'main' | 'heldout'
      { name: 'tokens', type: 'BYTE_ARRAY' }, // ctx ids as little-endian int32; BOS first
      { name: 'segment_start', type: 'INT32_LIST' }, // row positions where a document's tokens begin (≥ 1)
      { name: 'segment_doc', type: 'INT32_LIST' }, // the doc index of each segment (documents.parquet `doc`)
    ],
    metadata: {
      ...metadata,
      'seedscope.tokens': 'ctx token ids per row as little-endian int32, BOS at position 0',
      'seedscope.segments':
        'position p >= 1 belongs to segment_doc[s] for the last s with segment_start[s] <= p; position 0 (BOS) to no document; ' +
        'the EOS after a document belongs to that document',
    },
  }
}

/** documents.parquet: every document read, in corpus order; `doc` is its index. */
export function documentsTable(metadata: Record<string, string>): TableSpec {
  return {
    columns: [
      { name: 'doc', type: 'INT32' },
      { name: 'id', type: 'STRING' },
      { name: 'source', type: 'STRING', nullable: true },
      { name: 'split', type: 'STRING' },
      { name: 'order', type: 'INT32' }, // position in its split's stream (after shuffling)
      { name: 'n_tokens', type: 'INT32' }, // text tokens, without the joining EOS
      { name: 'file', type: 'STRING' },
      { name: 'line', type: 'INT32' }, // 1-based line (JSONL), 0-based row (Parquet), 1 (.txt)
      { name: 'meta', type: 'STRING', nullable: true }, // the record's other fields as JSON, null when none
    ],
    metadata,
  }
}

/** Column values of a group of packed rows. */
export function rowColumns(rows: readonly PackedRow[], firstRow: number, split: Split) {
  return {
    row: Int32Array.from(rows, (_, k) => firstRow + k),
    split: rows.map(() => split),
    tokens: rows.map((row) => int32Blob(row.tokens)),
    segment_start: rows.map((row) => row.segmentStart),
    segment_doc: rows.map((row) => row.segmentDoc),
  }
}

export interface TokenRow {
  row: number
  split: Split
  tokens: Int32Array // [pos]
  segmentStart: number[]
  segmentDoc: number[]
}

/** Rows [rowStart, rowEnd) of a tokenize output directory (default all). */
export async function readTokenRows(outDir: string, range: { rowStart?: number; rowEnd?: number } = {}): Promise<TokenRow[]> {
  const records = await readTable(join(outDir, ROWS_FILE), range)
  return records.map((record) => ({
    row: record.row as number,
    split: record.split as Split,
    tokens: readInt32Blob(record.tokens as Uint8Array),
    segmentStart: record.segment_start as number[],
    segmentDoc: record.segment_doc as number[],
  }))
}

/** Number of rows, and the row-group boundaries a reader can shard on. */
export async function readTokenRowsInfo(outDir: string) {
  return readTableInfo(join(outDir, ROWS_FILE))
}
