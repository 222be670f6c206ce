// The weights as a file onnxruntime maps (weights-file.ts): same outputs bit for bit as weights inside the model,
// one file per content, reused while sound, written again when damaged.
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadInstrumentedModel, tokenBatch } from './instrumented.js'
import { DataType, type TensorProto } from './onnx-proto.js'
import { INSPECT_OUTPUTS } from './sites.js'
import { externalizeWeights } from './weights-file.js'

const tensor = (name: string, bytes: number, fill: number): TensorProto => ({
  name, dataType: DataType.UINT8, dims: [bytes], rawData: new Uint8Array(bytes).fill(fill),
})

describe('externalizeWeights', () => {
  it('moves initializers of 4 KB and more into one file, each on a page boundary, and leaves the small ones', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seedscope-weights-'))
    const initializers = [tensor('small', 100, 1), tensor('a', 5000, 2), tensor('b', 8192, 3)]
    externalizeWeights(initializers, dir)
    const [small, a, b] = initializers
    expect(small.external).toBeUndefined()
    expect(a.external).toMatchObject({ offset: 0, length: 5000 })
    expect(b.external).toMatchObject({ offset: 8192, length: 8192 })
    expect(readdirSync(dir)).toEqual([a.external!.location])
    const file = readFileSync(join(dir, a.external!.location))
    expect(file.length).toBe(16384)
    expect(file.subarray(0, 5000).every((v) => v === 2)).toBe(true)
    expect(file.subarray(5000, 8192).every((v) => v === 0)).toBe(true)
    expect(file.subarray(8192).every((v) => v === 3)).toBe(true)
  })
})

describe.each(['gpt2-tiny', 'neox-tiny'])('a session on weights in a file (%s)', (name) => {
  const model = join('test/fixtures/golden', name)
  const ids = JSON.parse(readFileSync(join(model, 'golden.json'), 'utf8')).input_ids as number[][]
  const forward = async (weightsDir?: string) => {
    const m = await loadInstrumentedModel(model, INSPECT_OUTPUTS, { threads: 1, weightsDir })
    try {
      return await m.run(tokenBatch(ids))
    } finally {
      await m.release()
    }
  }

  it('gives the outputs of the weights inside the model, bit for bit, and reuses its file until it is damaged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seedscope-weights-'))
    const inside = await forward()
    const expectSame = (got: Awaited<ReturnType<typeof forward>>) => {
      expect(Object.keys(got).sort()).toEqual(Object.keys(inside).sort())
      for (const [output, t] of Object.entries(inside)) expect(Buffer.from(got[output].data.buffer).equals(Buffer.from(t.data.buffer)), output).toBe(true)
    }
    expectSame(await forward(dir))
    const [file] = readdirSync(dir)
    const path = join(dir, file)
    const written = statSync(path)

    expectSame(await forward(dir))
    expect(readdirSync(dir)).toEqual([file])
    expect(statSync(path).mtimeMs).toBe(written.mtimeMs) // reused, not written again

    const damaged = readFileSync(path)
    damaged[damaged.length >> 1] ^= 0xff
    writeFileSync(path, damaged)
    expectSame(await forward(dir))
    expect(readdirSync(dir)).toEqual([file])
    expect(readFileSync(path).equals(damaged)).toBe(false) // written again before use
  })
})

describe('a weights file that cannot be written', () => {
  it('is a one-line error naming the file and what to do', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seedscope-weights-'))
    const blocked = join(dir, 'blocked')
    writeFileSync(blocked, 'a file where the folder should be')
    expect(() => externalizeWeights([tensor('a', 5000, 2)], blocked)).toThrow(/blocked\/xxh3-[0-9a-f]{16}\.weights: cannot write the model's weights file \(E\w+\); free some disk space there, or delete .*blocked \(a cache\)/)
  })
})
