import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { writeTinyGpt2 } from '../../test/helpers/tiny-models.js'
import { borrowModelRunner, prefetchModelRunner } from './model-worker.js'

// Under vitest the worker script is not compiled, so runners run in this thread; the lending is the same.
describe('borrowModelRunner', () => {
  const dir = mkdtempSync(join(tmpdir(), 'borrow-'))
  const model = writeTinyGpt2(join(dir, 'a'), 1)
  const request = { mlpPost: true }
  const tokens = { data: BigInt64Array.from([1n, 2n, 3n, 4n]), batch: 1, positions: 4 }

  it('lends the same loaded model again after close(), and a fresh one for other outputs', async () => {
    const first = await borrowModelRunner(model, request)
    const config = first.config
    await first.run(tokens)
    await first.close()
    const second = await borrowModelRunner(model, request)
    expect(second.config).toBe(config) // the same loaded model
    await second.close()
    const other = await borrowModelRunner(model, { mlpPre: true })
    expect(other.config).not.toBe(config)
    await other.close()
  })

  it('does not keep a runner whose run failed', async () => {
    const first = await borrowModelRunner(model, request)
    await expect(first.run({ data: BigInt64Array.from([999_999n]), batch: 1, positions: 1 })).rejects.toThrow()
    await first.close()
    const second = await borrowModelRunner(model, request)
    expect(second.config).not.toBe(first.config)
    expect(Object.keys(await second.run(tokens))).toContain('blocks.0.mlp.hook_post')
    await second.close()
  })

  it('hands a prefetched model to its borrower, and closes a runner handed back while another model waits', async () => {
    const other = writeTinyGpt2(join(dir, 'b'), 2)
    const first = await borrowModelRunner(model, request)
    prefetchModelRunner(other, request)
    prefetchModelRunner(other, request) // already waiting: nothing more to load
    await first.close() // the prefetched model waits, so this one closes
    const next = await borrowModelRunner(other, request)
    expect(Object.keys(await next.run(tokens))).toContain('blocks.0.mlp.hook_post')
    await next.close()
    const again = await borrowModelRunner(other, request)
    expect(again.config).toBe(next.config) // kept
    await again.close()
    const back = await borrowModelRunner(model, request)
    expect(back.config).not.toBe(first.config) // closed above, loaded again
    await back.close()
  })
})
