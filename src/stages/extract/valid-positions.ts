// Which token positions enter correlation and statistics (SPEC §2): not position 0 (BOS), not any BOS/pad token
// (GPT-2's BOS is also its EOS, which joins documents), not the configured skip tokens (default "\n").
import type { PipelineConfig } from '../../config.js'
import { UserError } from '../../errors.js'
import { assertSeedsShareTokenizer, loadTokenizer } from '../../model/tokenizer.js'
import type { TokenizeOutputSummary } from '../tokenize/stage.js'

/**
 * The token ids left out: BOS/EOS plus each `extract.skip_tokens` string, which must be exactly one token.
 * Also checks that every seed that ships a tokenizer ships the corpus tokens' one (only those can be compared).
 */
export async function skipTokenIds(cfg: PipelineConfig, summary: TokenizeOutputSummary): Promise<number[]> {
  await assertSeedsShareTokenizer(cfg.seeds, summary.tokenizer)
  const tokenizer = await loadTokenizer(cfg.tokenizer)
  const ids = new Set([summary.tokenizer.bos, summary.tokenizer.eos])
  for (const text of cfg.extract.skip_tokens) {
    const encoded = await tokenizer.encode(text)
    if (encoded.length !== 1) {
      throw new UserError(`extract.skip_tokens: ${JSON.stringify(text)} is ${encoded.length} tokens for ${tokenizer.name}; list single tokens only`)
    }
    ids.add(encoded[0])
  }
  return [...ids].sort((a, b) => a - b)
}

/** valid[r·positions + p] = 1 where row r's token at p enters correlation. */
export function validPositions(rows: readonly Int32Array[], positions: number, skipIds: readonly number[]): Uint8Array {
  const skip = new Set(skipIds)
  const valid = new Uint8Array(rows.length * positions)
  rows.forEach((tokens, r) => {
    for (let p = 1; p < positions; p++) valid[r * positions + p] = skip.has(tokens[p]) ? 0 : 1
  })
  return valid
}
