import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { writeTinyGpt2 } from '../../test/helpers/tiny-models.js'
import { borrowModelRunner } from './model-worker.js'

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
})
