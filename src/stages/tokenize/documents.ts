// Reading and tokenizing the corpus for the tokenize stage: documents in corpus order with their metadata and
// token ids. Ids are stored per batch (Uint16 where the vocabulary allows), 2 bytes a token for GPT-2 and NeoX.
import { readCorpus } from '../../io/corpus.js'
import type { CorpusDocument, CorpusReadOptions } from '../../io/corpus.js'
import type { Tokenizer } from '../../model/tokenizer.js'
import { EncodePool } from './encode-pool.js'
import type { TokenBatch } from './encode-pool.js'

// A batch is what one worker message carries: big enough that messaging costs little, small enough that
// both workers stay busy near the end of the corpus.
const BATCH_CHARS = 256 * 1024
// The value of the corpus's split field that holds a document out (data/corpus uses "train" and "heldout").
export const HELD_OUT_LABEL = 'heldout'

/** Every usable document of the corpus with its token ids, indexed in corpus order. */
export class TokenizedDocuments {
  readonly ids: string[] = []
  readonly sources: (string | null)[] = []
  readonly files: string[] = []
  readonly lines: number[] = []
  readonly metas: (string | null)[] = []
  private readonly heldOutFlags: number[] = [] // 1 where the corpus's split field says "heldout"
  private readonly splitField: string | undefined

  constructor(splitField: string | undefined) {
    this.splitField = splitField
  }
  private readonly batches: TokenBatch[] = []
  private readonly batchOf: number[] = []
  private readonly slotOf: number[] = []

  get count(): number {
    return this.ids.length
  }

  /** Record a batch's documents; their tokens arrive later with `fill`. */
  addBatch(documents: readonly CorpusDocument[]): number {
    const batch = this.batches.length
    this.batches.push({ ids: new Uint16Array(0), offsets: new Int32Array(documents.length + 1) })
    documents.forEach((document, slot) => {
      this.ids.push(document.id)
      this.sources.push(document.source)
      this.files.push(document.file)
      this.lines.push(document.line)
      this.metas.push(Object.keys(document.meta).length ? JSON.stringify(document.meta) : null)
      this.heldOutFlags.push(this.splitField !== undefined && document.meta[this.splitField] === HELD_OUT_LABEL ? 1 : 0)
      this.batchOf.push(batch)
      this.slotOf.push(slot)
    })
    return batch
  }

  fill(batch: number, tokens: TokenBatch): void {
    this.batches[batch] = tokens
  }

  get heldOut(): Uint8Array {
    return Uint8Array.from(this.heldOutFlags)
  }

  tokens(doc: number): Uint16Array | Int32Array {
    const { ids, offsets } = this.batches[this.batchOf[doc]]
    const slot = this.slotOf[doc]
    return ids.subarray(offsets[slot], offsets[slot + 1])
  }

  nTokens(doc: number): number {
    const { offsets } = this.batches[this.batchOf[doc]]
    const slot = this.slotOf[doc]
    return offsets[slot + 1] - offsets[slot]
  }

  totalTokens(docs: ArrayLike<number>): number {
    let total = 0
    for (let i = 0; i < docs.length; i++) total += this.nTokens(docs[i])
    return total
  }
}

export interface TokenizeDocumentsOptions {
  read: CorpusReadOptions // how the corpus is read; bad documents go to read.onIssue
  splitField: string | undefined // the field whose value "heldout" holds a document out
  workers: number // tokenizer threads (0: this thread)
  progress?: { advance(documents: number): void }
}

/** Read and tokenize the corpus: this thread reads and batches documents, the pool's workers encode them. */
export async function tokenizeDocuments(
  tokenizer: Tokenizer,
  corpusPaths: readonly string[],
  options: TokenizeDocumentsOptions,
): Promise<TokenizedDocuments> {
  const documents = new TokenizedDocuments(options.splitField)
  const pool = new EncodePool(tokenizer, options.workers)
  const encoding: Promise<void>[] = []
  const submit = async (batch: CorpusDocument[]) => {
    await pool.ready()
    const index = documents.addBatch(batch)
    const count = batch.length // the texts themselves are not kept once sent
    const done = pool.encode(batch.map((document) => document.text)).then((tokens) => {
      documents.fill(index, tokens)
      options.progress?.advance(count)
    })
    done.catch(() => {}) // handled by Promise.all below; this keeps an early failure from being "unhandled"
    encoding.push(done)
  }
  try {
    let batch: CorpusDocument[] = []
    let chars = 0
    for await (const document of readCorpus(corpusPaths, options.read)) {
      batch.push(document)
      chars += document.text.length
      if (chars >= BATCH_CHARS) {
        await submit(batch)
        batch = []
        chars = 0
      }
    }
    if (batch.length) await submit(batch)
    await Promise.all(encoding)
  } finally {
    await pool.close()
  }
  return documents
}
