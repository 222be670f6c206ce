// seedscope's AmxMatMul operator (native/kernels/ort.c over amx.c): x · wtᵀ at float32 accuracy, against the
// product computed in float64, on shapes the tiles do not divide.
import { describe, expect, it } from 'vitest'
import { GraphBuilder, SEEDSCOPE_DOMAIN } from './graph-builder.js'
import { concatEncoded, DataType } from './onnx-proto.js'
import { seededRandom } from '../stats/random.js'
import { ModelSession } from './runtime.js'

function seeded(n: number, seed: number): Float32Array {
  const random = seededRandom(seed, 0)
  return Float32Array.from({ length: n }, () => random() - 0.5)
}

describe.skipIf(!ModelSession.runsAmxMatMul({}))('AmxMatMul', () => {
  it.each([
    [1, 7, 5, 3],
    [2, 45, 70, 33],
    [3, 64, 96, 64],
    [1, 130, 200, 513],
  ])('x [%i, %i, %i] · wtᵀ with wt [%i, k]: within float32 GEMM error of the float64 product', async (batch, rows, k, n) => {
    const x = seeded(batch * rows * k, 1)
    const wt = seeded(n * k, 2)
    const g = new GraphBuilder()
    const input = g.input('x', DataType.FLOAT, ['batch', 'rows', k])
    g.output('y', g.op('AmxMatMul', [input, g.weight('wt', [n, k], wt)], {}, SEEDSCOPE_DOMAIN), DataType.FLOAT, ['batch', 'rows', n])
    const session = await ModelSession.create(concatEncoded(g.build('amx')), { threads: 2 })
    try {
      const { y } = await session.run({ x: { dtype: 'float32', data: x, dims: [batch, rows, k] } })
      expect(y.dims).toEqual([batch, rows, n])
      for (let i = 0; i < batch * rows; i++) {
        for (let j = 0; j < n; j++) {
          let exact = 0
          let magnitude = 0
          for (let c = 0; c < k; c++) {
            exact += x[i * k + c] * wt[j * k + c]
            magnitude += Math.abs(x[i * k + c] * wt[j * k + c])
          }
          // amx.c's bound: (6k + 2)·2^-24·Σ|x·w|.
          expect(Math.abs(y.data[i * n + j] - exact)).toBeLessThanOrEqual((6 * k + 2) * 2 ** -24 * magnitude)
        }
      }
    } finally {
      await session.release()
    }
  })
})
