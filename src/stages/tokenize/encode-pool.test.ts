// The encode pool: worker threads give the ids the Tokenizer gives on this thread, batch by batch, and a
// worker that cannot start fails the pool loudly instead of hanging it.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadTokenizer } from '../../model/tokenizer.js'
import type { Tokenizer } from '../../model/tokenizer.js'
import { EncodePool } from './encode-pool.js'

const fixtures = new URL('../../../test/fixtures/', import.meta.url).pathname
const texts = readFileSync(join(fixtures, 'corpus/sample.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => (JSON.parse(line) as { text: string }).text)

let neox: Tokenizer
beforeAll(async () => {
  neox = await loadTokenizer(join(fixtures, 'tokenizers/neox'))
})

describe('EncodePool', () => {
  it('gives the same ids with two worker threads as Tokenizer.encode, in batch order', async () => {
    const expected = await Promise.all(texts.map(async (text) => Array.from(await neox.encode(text))))
    for (const workers of [0, 2]) {
      const pool = new EncodePool(neox, workers)
      const batches = await Promise.all([pool.encode(texts.slice(0, 7)), pool.encode(texts.slice(7)), pool.encode([])])
      await pool.close()
      const got = batches.flatMap(({ ids, offsets }) => Array.from({ length: offsets.length - 1 }, (_, k) => Array.from(ids.subarray(offsets[k], offsets[k + 1]))))
      expect(got).toEqual(expected)
      expect(batches[0].ids).toBeInstanceOf(Uint16Array) // NeoX's 50,277 ids fit in 16 bits
    }
  })

  it('fails every pending batch when a worker cannot load the tokenizer', async () => {
    const broken = { ...neox, portable: { module: join(fixtures, 'no-such-module.js'), json: '{}' } }
    const pool = new EncodePool(broken, 1)
    await expect(pool.encode(['text'])).rejects.toThrow(/no-such-module/)
    await expect(pool.ready()).rejects.toThrow(/no-such-module/)
    await pool.close()
  })
})
