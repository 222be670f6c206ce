// Graph outputs: a node's output is renamed to the public name (no Identity copy); a value exposed twice, or a
// graph input exposed as an output, still gets one. Checked by running the built graphs on onnxruntime.
import { describe, expect, it } from 'vitest'
import * as ort from 'onnxruntime-node'
import { GraphBuilder } from './graph-builder.js'
import { concatEncoded, DataType } from './onnx-proto.js'

async function run(g: GraphBuilder, x: Float32Array): Promise<Record<string, number[]>> {
  const session = await ort.InferenceSession.create(concatEncoded(g.build('test')))
  const result = await session.run({ x: new ort.Tensor('float32', x, [x.length]) })
  await session.release()
  return Object.fromEntries(Object.entries(result).map(([name, t]) => [name, Array.from(t.data as Float32Array)]))
}

const opTypes = (g: GraphBuilder) => (g as unknown as { nodes: { opType: string }[] }).nodes.map((n) => n.opType)

describe('GraphBuilder outputs', () => {
  it('renames a node output to its public name, and later consumers read it under that name', async () => {
    const g = new GraphBuilder()
    const x = g.input('x', DataType.FLOAT, [3])
    const doubled = g.op('Add', [x, x])
    g.output('doubled', doubled, DataType.FLOAT, [3])
    g.output('squared', g.op('Mul', [doubled, doubled]), DataType.FLOAT, [3])
    expect(opTypes(g)).not.toContain('Identity')
    expect(await run(g, Float32Array.of(1, 2, 3))).toEqual({ doubled: [2, 4, 6], squared: [4, 16, 36] })
  })

  it('copies through Identity where a rename cannot work: the same value twice, or a graph input', async () => {
    const g = new GraphBuilder()
    const x = g.input('x', DataType.FLOAT, [2])
    const negated = g.op('Neg', [x])
    g.output('a', negated, DataType.FLOAT, [2])
    g.output('b', negated, DataType.FLOAT, [2])
    g.output('x_again', x, DataType.FLOAT, [2])
    expect(opTypes(g).filter((op) => op === 'Identity')).toHaveLength(2)
    expect(await run(g, Float32Array.of(1, -5))).toEqual({ a: [-1, 5], b: [-1, 5], x_again: [1, -5] })
  })
})
