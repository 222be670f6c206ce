// The tokenize stage as the runner sees it: one unit ("corpus") whose inputs are the corpus and tokenizer files
// and whose outputs are rows.parquet, documents.parquet and summary.json under <output_dir>/tokenize/.
import { readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { PipelineConfig } from '../../config.js'
import { listCorpusFiles } from '../../io/corpus.js'
import { assertSeedsShareTokenizer, findTokenizerFiles, loadTokenizer } from '../../model/tokenizer.js'
import type { Stage, Unit } from '../../runner/stage.js'
import { planTokenize } from '../stage-plans.js'
import { TOKENIZE_VERSION, tokenizeCorpus, type TokenizeSummary } from './index.js'
import { DOCUMENTS_FILE, MANIFEST_FILE, ROWS_FILE } from './outputs.js'

export { readTokenRows, type TokenRow } from './outputs.js'

interface CorpusUnit extends Unit {
  corpusPaths: string[]
  tokenizerPath: string
  seeds: { name: string; checkpoint: string }[] // checked to share the corpus tokenizer before any work
}

export const TOKENIZE_OUTPUTS = {
  rows: `tokenize/${ROWS_FILE}`,
  documents: `tokenize/${DOCUMENTS_FILE}`,
  summary: `tokenize/${MANIFEST_FILE}`,
}

function tokenizeParams(cfg: PipelineConfig) {
  const { format, text_field, split_field, strict } = cfg.corpus
  return { tokenize: cfg.tokenize, corpus: { format, text_field, split_field, strict } }
}

export const tokenize: Stage<CorpusUnit, ReturnType<typeof tokenizeParams>> = {
  name: 'tokenize',
  version: TOKENIZE_VERSION,
  needs: [],
  work: 'doc',
  params: tokenizeParams,
  units: (cfg) => [{ id: 'corpus', corpusPaths: cfg.corpus.paths, tokenizerPath: cfg.tokenizer, seeds: cfg.seeds }],
  outputs: () => Object.values(TOKENIZE_OUTPUTS),
  plan: planTokenize,
  inputs: (unit, cfg) => ({ files: [...listCorpusFiles(unit.corpusPaths, cfg.corpus.format).map((f) => f.path), ...tokenizerFilePaths(unit.tokenizerPath)] }),
  async run(unit, ctx) {
    await assertSeedsShareTokenizer(unit.seeds, await loadTokenizer(unit.tokenizerPath))
    const { tokenize: t, corpus } = ctx.params
    await tokenizeCorpus(
      {
        ctx: t.ctx,
        seed: t.shuffle_seed,
        heldOutFraction: t.heldout_share,
        maxTokens: t.max_tokens,
        format: corpus.format,
        textField: corpus.text_field,
        splitField: corpus.split_field,
        strict: corpus.strict,
      },
      {
        corpusPaths: unit.corpusPaths,
        tokenizerPath: unit.tokenizerPath,
        outDir: dirname(ctx.outputPath(TOKENIZE_OUTPUTS.rows)),
        progress: { advance: (documents) => ctx.progress.advance(documents) },
        workers: Math.max(0, ctx.execution.threads),
      },
    )
  },
}

function tokenizerFilePaths(path: string): string[] {
  const files = findTokenizerFiles(path)
  return files.kind === 'tokenizer.json' ? [files.path] : [files.vocab, files.merges]
}

/** The tokenize stage's summary (counts, tokenizer, BOS/EOS), as written in summary.json. */
export interface TokenizeOutputSummary {
  rows: { main: number; heldout: number }
  tokenizer: { name: string; fingerprint: string; bos: number; eos: number }
  params: { ctx: number }
}

export function tokenizeSummary(path: string): TokenizeOutputSummary {
  const manifest = JSON.parse(readFileSync(path, 'utf8'))
  return { rows: manifest.counts.rows, tokenizer: manifest.tokenizer, params: manifest.params }
}

export type { TokenizeSummary }
