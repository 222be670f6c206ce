import { describe, expect, it } from 'vitest'
import { gemm64Fallback, gemmFallback } from './gemm.js'
import { seededRandom } from './random.js'

// The reference: the textbook triple loop in float64.
function naive(a: ArrayLike<number>, b: ArrayLike<number>, m: number, n: number, k: number): Float64Array {
  const out = new Float64Array(m * n)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p]
      out[i * n + j] = s
    }
  }
  return out
}

function randomArray<T extends Float32Array | Float64Array>(
  make: new (n: number) => T, length: number, seed: number,
): T {
  const random = seededRandom(seed, 0)
  const out = new make(length)
  for (let i = 0; i < length; i++) out[i] = random() * 2 - 1
  return out
}

// Shapes that exercise full 4×4 tiles, ragged row/column edges, panel (64) and depth-block (256) boundaries.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [3, 5, 7], [4, 4, 4], [8, 12, 256], [67, 70, 300], [64, 129, 513], [130, 3, 17],
]

describe('gemmFallback', () => {
  it.each(SHAPES)('matches the naive triple loop for m=%i n=%i k=%i', (m, n, k) => {
    const a = randomArray(Float32Array, m * k, 1), b = randomArray(Float32Array, n * k, 2)
    const out = new Float32Array(m * n).fill(123)  // overwritten, not accumulated into
    gemmFallback(a, b, m, n, k, out)
    const ref = naive(a, b, m, n, k)
    // Summed in float64 and rounded once: within one float32 rounding of the exact result.
    for (let i = 0; i < ref.length; i++) {
      expect(Math.abs(out[i] - ref[i])).toBeLessThanOrEqual(2 ** -24 * Math.abs(ref[i]) + 1e-13 * k)
    }
  })

  it('rejects operands too short for the shape', () => {
    expect(() => gemmFallback(new Float32Array(5), new Float32Array(6), 2, 2, 3, new Float32Array(4)))
      .toThrow(/gemm: operands too short for m=2 n=2 k=3: a has 5 \(need 6\)/)
  })
})

describe('gemm64Fallback', () => {
  it.each(SHAPES)('matches the naive triple loop for m=%i n=%i k=%i', (m, n, k) => {
    const a = randomArray(Float64Array, m * k, 3), b = randomArray(Float64Array, n * k, 4)
    const out = new Float64Array(m * n).fill(7)
    gemm64Fallback(a, b, m, n, k, out)
    const ref = naive(a, b, m, n, k)
    for (let i = 0; i < ref.length; i++) expect(Math.abs(out[i] - ref[i])).toBeLessThan(1e-12 * k)
  })

})
