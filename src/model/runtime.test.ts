import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { writeTinyGpt2 } from '../../test/helpers/tiny-models.js'
import { kernels } from '../stats/kernels.js'
import { buildGraph } from './graph.js'
import { hookBuffers, loadInstrumentedModel, loadWeights, type TokenBatch } from './instrumented.js'
import type { Intervention } from './interventions.js'
import { concatEncoded } from './onnx-proto.js'
import { ModelSession, type OutputTensor } from './runtime.js'
import { INSPECT_OUTPUTS, site } from './sites.js'

const dir = writeTinyGpt2(join(mkdtempSync(join(tmpdir(), 'runtime-')), 'gpt2'), 3)
const tokens: TokenBatch = { data: BigInt64Array.from([5n, 9n, 2n, 7n, 1n, 3n, 3n, 8n]), batch: 2, positions: 4 }
const other: TokenBatch = { data: BigInt64Array.from([4n, 4n, 6n, 0n, 2n, 9n, 1n, 5n]), batch: 2, positions: 4 }
const ablation: Intervention[] = [{ row: 1, layer: 0, neuron: 3, mul: 0, add: 0.5 }]

/** Every output of a run, copied out of whatever buffers they were written to. */
const copied = (outputs: Record<string, OutputTensor>) =>
  Object.fromEntries(Object.entries(outputs).map(([name, t]) => [name, { dims: [...t.dims], data: [...t.data] }]))

async function runWith(binding: 'direct' | 'onnxruntime-node', reuse: boolean) {
  process.env.SEEDSCOPE_ORT = binding === 'onnxruntime-node' ? 'onnxruntime-node' : ''
  process.env.SEEDSCOPE_OPERATORS = 'onnx' // the same graph on both bindings (onnxruntime-node lacks CausalAttention)
  const model = await loadInstrumentedModel(dir, INSPECT_OUTPUTS, { threads: 1 })
  try {
    const into = reuse ? hookBuffers(model, tokens.batch, tokens.positions) : undefined
    await model.run(other, [], into) // a different batch first: reused buffers must hold nothing of it afterwards
    const outputs = await model.run(tokens, ablation, into)
    if (into) for (const [name, buffer] of Object.entries(into)) expect(outputs[name]).toBe(buffer)
    return copied(outputs)
  } finally {
    await model.release()
  }
}

afterEach(() => {
  delete process.env.SEEDSCOPE_ORT
  delete process.env.SEEDSCOPE_OPERATORS
})

describe('ModelSession bindings', () => {
  it.skipIf(kernels.name !== 'native')('runs on the direct binding where the native kernels are built, with the outputs of onnxruntime-node bit for bit', async () => {
    const { config, weights } = loadWeights(dir)
    const session = await ModelSession.create(concatEncoded(buildGraph(weights, config.shape, config.traits, { mlpPost: true }).model))
    expect(session.binding).toBe('direct')
    await session.release()
    const reference = await runWith('onnxruntime-node', false)
    expect(Object.keys(reference)).toContain(site.logits)
    expect(await runWith('direct', false)).toEqual(reference)
    expect(await runWith('direct', true)).toEqual(reference)
    expect(await runWith('onnxruntime-node', true)).toEqual(reference)
  })

  it.each(['direct', 'onnxruntime-node'] as const)('%s: a buffer of the wrong shape is an error naming the output', async (binding) => {
    if (binding === 'direct' && kernels.name !== 'native') return
    process.env.SEEDSCOPE_ORT = binding === 'onnxruntime-node' ? 'onnxruntime-node' : ''
    const model = await loadInstrumentedModel(dir, { mlpPost: true }, { threads: 1 })
    try {
      const wrong = hookBuffers(model, 1, tokens.positions) // one row where the batch has two
      await expect(model.run(tokens, [], wrong)).rejects.toThrow(/blocks\.0\.mlp\.hook_post/)
    } finally {
      await model.release()
    }
  })
})
