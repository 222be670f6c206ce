import { afterAll, describe, expect, it } from 'vitest'
import { gemmFallback, type Gemm } from '../stats/gemm.js'
import { decodeF16 } from '../io/safetensors-dtypes.js'
import { amxGemm, type BlobRows, kernels } from '../stats/kernels.js'
import { type ChunkRows, PearsonAccumulator } from '../stats/pearson.js'
import { seededRandom } from '../stats/random.js'
import { GEMM_BACKENDS, type GemmBackend, type GemmBackendName, loadFastGemm, loadGemmBackend } from './gemm.js'

// The reference: the textbook triple loop in float64, plus Σ|a||b| per entry for the float32 error bound.
function naive(a: Float32Array, b: Float32Array, m: number, n: number, k: number): { exact: Float64Array; magnitude: Float64Array } {
  const exact = new Float64Array(m * n), magnitude = new Float64Array(m * n)
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0, t = 0
      for (let p = 0; p < k; p++) {
        s += a[i * k + p] * b[j * k + p]
        t += Math.abs(a[i * k + p] * b[j * k + p])
      }
      exact[i * n + j] = s
      magnitude[i * n + j] = t
    }
  }
  return { exact, magnitude }
}

function randomFloat32(length: number, seed: number): Float32Array {
  const random = seededRandom(seed, 0)
  const out = new Float32Array(length)
  for (let i = 0; i < length; i++) out[i] = random() * 2 - 1
  return out
}

// Backends that cannot load here are skipped with the reason in the test name (e.g. the addon before `make native`).
function tryLoad(name: GemmBackendName): GemmBackend | string {
  try {
    return loadGemmBackend(name, 2)
  } catch (error) {
    return (error as Error).message
  }
}
// The AMX backend hands small products to OpenBLAS; its tile kernel itself is tested on every shape as "amx tiles".
const amxTiles: GemmBackend | string = amxGemm.problem ?? {
  name: 'amx', detail: 'the tile kernel alone', close() {},
  gemm: (a: Float32Array, b: Float32Array, m: number, n: number, k: number, out: Float32Array) => amxGemm.gemm(a, b, m, n, k, out, 2),
}
const backends: { name: GemmBackendName | 'amx tiles'; backend: GemmBackend | string }[] = [
  ...GEMM_BACKENDS.map((name) => ({ name, backend: tryLoad(name) })),
  { name: 'amx tiles', backend: amxTiles },
]
afterAll(() => {
  for (const { backend } of backends) if (typeof backend !== 'string') backend.close()
})

// m, n, k: 1s, empty products, primes, and sizes just past the 16/32/64/256 multiples BLAS kernels block by.
const ODD_SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 7, 3], [5, 1, 9], [3, 5, 1], [2, 3, 0], [0, 4, 5], [17, 13, 31], [67, 70, 300], [129, 65, 513], [33, 250, 1031],
]
// Larger shapes, checked against the pure-JS fallback (itself checked against the triple loop in src/stats).
const LARGE_SHAPES: [number, number, number][] = [[300, 257, 4099], [513, 383, 1000]]

for (const { name, backend } of backends) {
  const reason = typeof backend === 'string' ? backend : undefined
  describe.skipIf(reason !== undefined)(`gemm backend ${name}${reason ? ` (skipped: ${reason})` : ''}`, () => {
    const gemm = () => (backend as GemmBackend).gemm
    // Float32 summation in any order: |error| ≤ (k + 1)·u·Σ|a·b| with u = 2^-24 (Higham's γ_k bound). The AMX
    // backend adds six part products per product (native/kernels/amx.c), so 6k additions, and drops parts
    // below 2^-23·|a·b|.
    const additions = (k: number) => (name.startsWith('amx') ? 6 * k + 2 : k + 1)

    it.each(ODD_SHAPES)('matches the float64 triple loop for m=%i n=%i k=%i', (m, n, k) => {
      const a = randomFloat32(m * k, 1), b = randomFloat32(n * k, 2)
      const out = new Float32Array(m * n).fill(123)  // overwritten, not accumulated into
      gemm()(a, b, m, n, k, out)
      const { exact, magnitude } = naive(a, b, m, n, k)
      for (let i = 0; i < exact.length; i++) {
        expect(Math.abs(out[i] - exact[i])).toBeLessThanOrEqual(additions(k) * 2 ** -24 * magnitude[i] + 1e-30)
      }
    })

    it('reproduces A exactly when B is the identity, over every exponent and all 24 significant bits', () => {
      const [m, k] = [37, 70]
      const random = seededRandom(9, 0)
      const a = new Float32Array(m * k)
      for (let i = 0; i < a.length; i++) {
        a[i] = (random() < 0.5 ? -1 : 1) * (1 + Math.floor(random() * 2 ** 23) / 2 ** 23) * 2 ** Math.floor(random() * 120 - 60)
      }
      const identity = new Float32Array(k * k)
      for (let p = 0; p < k; p++) identity[p * k + p] = 1
      const out = new Float32Array(m * k)
      gemm()(a, identity, m, k, k, out)
      expect(out).toEqual(a)
    })

    it.each(LARGE_SHAPES)('agrees with the pure-JS fallback for m=%i n=%i k=%i', (m, n, k) => {
      const a = randomFloat32(m * k, 3), b = randomFloat32(n * k, 4)
      const out = new Float32Array(m * n), ref = new Float32Array(m * n)
      gemm()(a, b, m, n, k, out)
      gemmFallback(a, b, m, n, k, ref)
      // Entries are sums of k products of magnitude ≤ 1 with random signs (|entry| ~ √k); blocked float32
      // accumulation errs by ~√k·u·√k at most in practice, far below this bound.
      let worst = 0
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(out[i] - ref[i]))
      expect(worst).toBeLessThan(k * 2 ** -24 * 4)
    })

    it.each([[1, 9], [37, 129], [300, 70]])('gives A·Aᵀ, exactly symmetric, when a and b are the same array (n=%i k=%i)', (n, k) => {
      const a = randomFloat32(n * k, 5)
      const out = new Float32Array(n * n).fill(123)
      gemm()(a, a, n, n, k, out)
      const { exact, magnitude } = naive(a, a, n, n, k)
      for (let i = 0; i < exact.length; i++) {
        expect(Math.abs(out[i] - exact[i])).toBeLessThanOrEqual(additions(k) * 2 ** -24 * magnitude[i] + 1e-30)
      }
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(out[i * n + j]).toBe(out[j * n + i])
    })

    it('uses only the leading elements of longer arrays (subarray views included)', () => {
      const [m, n, k] = [6, 5, 7]
      const a = randomFloat32(m * k + 11, 5), b = randomFloat32(n * k + 3, 6)
      const out = new Float32Array(m * n + 4).fill(9), ref = new Float32Array(m * n)
      gemm()(a.subarray(2), b, m, n, k, out)
      gemmFallback(a.subarray(2), b, m, n, k, ref)
      for (let i = 0; i < m * n; i++) expect(out[i]).toBeCloseTo(ref[i], 5)
      expect(Array.from(out.subarray(m * n))).toEqual([9, 9, 9, 9])
    })

    it('rejects operands too short for the shape', () => {
      expect(() => gemm()(new Float32Array(5), new Float32Array(6), 2, 2, 3, new Float32Array(4)))
        .toThrow(/gemm: operands too short for m=2 n=2 k=3: a has 5 \(need 6\)/)
    })

    it('feeds PearsonAccumulator to the same correlations as the default GEMM', () => {
      const [na, nb, tokens] = [9, 7, 400]
      const a = randomFloat32(na * tokens, 7), b = randomFloat32(nb * tokens, 8)
      for (let t = 0; t < tokens; t++) b[3 * tokens + t] = 2 * a[5 * tokens + t] + 1   // a planted r = 1 pair
      const correlation = (g?: typeof gemmFallback) => {
        const acc = new PearsonAccumulator({ a: { start: 0, count: na }, b: { start: 0, count: nb }, gemm: g })
        acc.add(a, b, tokens)
        return acc.correlation()
      }
      const r = correlation(gemm()), ref = correlation()
      for (let i = 0; i < ref.length; i++) expect(r[i]).toBeCloseTo(ref[i], 5)
      expect(r[5 * nb + 3]).toBeCloseTo(1, 5)
    })
  })
}

describe('the AMX backend', () => {
  const amx = backends.find(({ name }) => name === 'amx')!.backend
  it.skipIf(typeof amx === 'string')('gives the same bits on any thread count (each entry has one owner and one order)', () => {
    const [m, n, k] = [100, 70, 1100]   // several 512-token blocks, edge tiles on both sides
    const a = randomFloat32(m * k, 13), b = randomFloat32(n * k, 14)
    const out1 = new Float32Array(m * n), out2 = new Float32Array(m * n)
    amxGemm.gemm(a, b, m, n, k, out1, 1)
    amxGemm.gemm(a, b, m, n, k, out2, 2)
    expect(out2).toEqual(out1)
  })
})

describe('the AMX backend\'s fused shift and product', () => {
  const amx = backends.find(({ name }) => name === 'amx')!.backend
  const [na, nb, tokens] = [45, 37, 1031]   // edge tiles on both sides, three 512-token blocks, an 8-lane tail

  // Rows as an activation shard holds them: float16 or float32 blobs at odd byte offsets of one buffer, with a large
  // mean and a small spread (the case the shift is for), and the first value of row 3 of A set by `poison`.
  function blobs(rows: number, seed: number, bytesPerValue: 2 | 4, poison?: number): BlobRows {
    const values = randomFloat32(rows * tokens, seed).map((x, i) => 300 + (i % 7) + x / 8)
    const bytes = new Uint8Array(rows * tokens * bytesPerValue + 3 * rows + 1)
    const offsets = new Float64Array(rows).map((_, i) => i * (tokens * bytesPerValue + 3) + 1)
    const view = new DataView(bytes.buffer)
    for (let i = 0; i < rows; i++) {
      const row = values.subarray(i * tokens, (i + 1) * tokens)
      const half = new Uint16Array(tokens)
      kernels.toFloat16(row, half)
      if (i === 3 && poison !== undefined) row[0] = poison, half[0] = poison === Infinity ? 0x7c00 : 0x7e00
      for (let t = 0; t < tokens; t++) {
        if (bytesPerValue === 4) view.setFloat32(offsets[i] + 4 * t, row[t], true)
        else view.setUint16(offsets[i] + 2 * t, half[t], true)
      }
    }
    return { bytes, offsets, bytesPerValue }
  }
  // Two chunks (the first sets the shifts) through an accumulator.
  function accumulate(gemm: Gemm, a: (k: number) => ChunkRows, b: (k: number) => ChunkRows, self = false) {
    const acc = new PearsonAccumulator({ a: { start: 0, count: na }, b: { start: 0, count: self ? na : nb }, gemm })
    for (const k of [0, 1]) acc.add(a(k), self ? a(k) : b(k), tokens)
    return acc
  }
  // The unfused reference: the same tile kernel on the shifted copies (the backend sends small products to OpenBLAS).
  const twoSteps = (): Gemm => (x, y, m, n, k, out) => amxGemm.gemm(x, y, m, n, k, out, 2)

  it.skipIf(typeof amx === 'string')('gives the bits of the shift and the product taken one after the other when a side is float32', () => {
    let fusedChunks = 0   // chunks the fused path took (it hands a chunk back only for a non-finite value)
    const backendGemm = (amx as GemmBackend).gemm
    const gemm = Object.assign(twoSteps(), {
      shifted: (...args: Parameters<NonNullable<Gemm['shifted']>>) => (backendGemm.shifted!(...args) ? (fusedChunks++, true) : false),
    })
    const chunksA = [blobs(na, 21, 4), blobs(na, 22, 4)], chunksB = [blobs(nb, 23, 2), blobs(nb, 24, 4)]
    const fused = accumulate(gemm, (k) => chunksA[k], (k) => chunksB[k])
    expect(fused.state()).toEqual(accumulate(twoSteps(), (k) => chunksA[k], (k) => chunksB[k]).state())
    const symmetric = accumulate(gemm, (k) => chunksA[k], (k) => chunksA[k], true)
    expect(symmetric.state()).toEqual(accumulate(twoSteps(), (k) => chunksA[k], (k) => chunksA[k], true).state())
    // And Float32Array chunks, which the stats stage's streamed mode passes.
    const floatsA = [randomFloat32(na * tokens, 25), randomFloat32(na * tokens, 26)], floatsB = [randomFloat32(nb * tokens, 27), randomFloat32(nb * tokens, 28)]
    expect(accumulate(gemm, (k) => floatsA[k], (k) => floatsB[k]).state()).toEqual(accumulate(twoSteps(), (k) => floatsA[k], (k) => floatsB[k]).state())
    expect(fusedChunks).toBe(6)
  })

  // float16 against float16: each shifted value is rounded to 16 significant bits (two bf16 parts, |error| ≤ 2^-17·|y|;
  // the stored values themselves carry 11), and three of the four part products are summed (m·m, ≤ 2^-16·|yz|, is
  // left out). Checked against float64 on the same shifts: each cross sum within 2^-15·Σ|yz| + (3k + 2)·2^-24·Σ|yz|,
  // each row sum within 2^-17·Σ|y|.
  // The same for float32 rows when asked (correlate.operand_bits: 16).
  it.skipIf(typeof amx === 'string').each([
    ['float16 rows', 2, 24],
    ['float32 rows with operandBits 16', 4, 16],
  ] as const)('rounds %s to 16 significant bits after the shift, and errs no more than that allows', (_, width, operandBits) => {
    const backend = loadGemmBackend('amx', 2, { operandBits })
    const chunksA = [blobs(na, 41, width), blobs(na, 42, width)], chunksB = [blobs(nb, 43, width), blobs(nb, 44, width)]
    let state
    try {
      state = accumulate(backend.gemm, (k) => chunksA[k], (k) => chunksB[k]).state()
    } finally {
      backend.close()
    }
    const decode = (rows: BlobRows, count: number) => Array.from({ length: count }, (_, i) => {
      const view = new DataView(rows.bytes.buffer, rows.bytes.byteOffset)
      return Float64Array.from({ length: tokens }, (_, t) => width === 4
        ? view.getFloat32(rows.offsets[i] + 4 * t, true)
        : decodeF16(new Uint16Array([view.getUint16(rows.offsets[i] + 2 * t, true)]))[0])
    })
    const ya = chunksA.flatMap((c) => decode(c, na).map((row, i) => row.map((x) => x - state.shiftA[i])))
    const yb = chunksB.flatMap((c) => decode(c, nb).map((row, j) => row.map((x) => x - state.shiftB[j])))
    const rowsOf = (y: Float64Array[], count: number, i: number) => [y[i], y[count + i]]   // chunk 0's row, then chunk 1's
    const k = 2 * tokens, u = 2 ** -24
    for (let i = 0; i < na; i++) {
      const [a0, a1] = rowsOf(ya, na, i)
      const sum = [...a0, ...a1].reduce((s, v) => s + v, 0), size = [...a0, ...a1].reduce((s, v) => s + Math.abs(v), 0)
      expect(Math.abs(state.sumA[i] - sum)).toBeLessThanOrEqual(2 ** -17 * size + 1e-12)
      for (let j = 0; j < nb; j++) {
        const [b0, b1] = rowsOf(yb, nb, j)
        let exact = 0, magnitude = 0
        for (const [x, y] of [[a0, b0], [a1, b1]]) for (let t = 0; t < tokens; t++) exact += x[t] * y[t], magnitude += Math.abs(x[t] * y[t])
        expect(Math.abs(state.cross[i * nb + j] - exact)).toBeLessThanOrEqual((2 ** -15 + (3 * k + 2) * u) * magnitude)
      }
    }
  })

  it.skipIf(typeof amx === 'string')('leaves the accumulator as it was on a non-finite value, and names it as the unfused path does', () => {
    const gemm = (amx as GemmBackend).gemm
    const acc = new PearsonAccumulator({ a: { start: 0, count: na }, b: { start: 0, count: nb }, gemm })
    acc.add(blobs(na, 31, 2), blobs(nb, 32, 2), tokens)
    const before = acc.state()
    expect(() => acc.add(blobs(na, 33, 2, Infinity), blobs(nb, 34, 2), tokens)).toThrow(/non-finite activation Infinity for neuron 3 of A at token 0/)
    expect(acc.state()).toEqual(before)
    const fresh = new PearsonAccumulator({ a: { start: 0, count: na }, b: { start: 0, count: nb }, gemm })
    expect(() => fresh.add(blobs(na, 33, 4, NaN), blobs(nb, 34, 4), tokens)).toThrow(/non-finite activation NaN for neuron 3 of A at token 0/)
    expect(fresh.n).toBe(0)
  })
})

describe('the OpenBLAS addon', () => {
  const openblas = backends.find(({ name }) => name === 'openblas')!.backend
  it.skipIf(typeof openblas === 'string')('checks its arguments instead of reading out of bounds', () => {
    const gemm = (openblas as GemmBackend).gemm as (...args: unknown[]) => void
    const a = new Float32Array(12), out = new Float32Array(16)
    expect(() => gemm(new Float64Array(12), a, 4, 4, 3, out)).toThrow(/sgemm: a must be a Float32Array/)
    expect(() => gemm(a, a, 4, 4.5, 3, out)).toThrow(/sgemm: n must be an integer/)
    expect(() => gemm(a, a, 4, 4, -3, out)).toThrow(/sgemm: k must be an integer/)
    expect(() => gemm(a, a, 4, 4, 3)).toThrow(/sgemm: out must be a Float32Array/)
    expect(() => gemm(a, a, 2, 2, 3, a.subarray(4))).toThrow(/out overlaps a or b/)
  })

  it.skipIf(typeof openblas === 'string').each(ODD_SHAPES)('multiplies A·B (gemmNN) as the float64 triple loop does for m=%i n=%i k=%i', (m, n, k) => {
    const a = randomFloat32(m * k, 11), b = randomFloat32(k * n, 12)
    const bT = new Float32Array(n * k)   // the triple loop's operand is [n, k]
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) bT[j * k + p] = b[p * n + j]
    const out = new Float32Array(m * n).fill(123)
    ;(openblas as GemmBackend).gemmNN!(a, b, m, n, k, out)
    const { exact, magnitude } = naive(a, bT, m, n, k)
    for (let i = 0; i < exact.length; i++) {
      expect(Math.abs(out[i] - exact[i])).toBeLessThanOrEqual((k + 1) * 2 ** -24 * magnitude[i] + 1e-30)
    }
    expect(() => (openblas as GemmBackend).gemmNN!(a, b, m + 1, n + 1, k + 1, new Float32Array((m + 1) * (n + 1))))
      .toThrow(/gemmNN: operands too short/)
  })
})

describe('loadFastGemm', () => {
  const named = backends.filter(({ name }) => name !== 'amx tiles')
  it('picks the first backend that loads here, in GEMM_BACKENDS order, and says why it skipped faster ones', () => {
    const automatic: readonly string[] = GEMM_BACKENDS
    const fast = loadFastGemm(1)
    try {
      const expected = named.find(({ backend }) => typeof backend !== 'string')!.name
      expect(fast.name).toBe(expected)
      expect(fast.skipped).toHaveLength(automatic.indexOf(expected))
    } finally {
      fast.close()
    }
  })

  it('loads the backend SEEDSCOPE_GEMM names, and rejects a name it does not know', () => {
    const saved = process.env.SEEDSCOPE_GEMM
    try {
      process.env.SEEDSCOPE_GEMM = 'js'
      const js = loadFastGemm(1)
      expect(js.name).toBe('js')
      js.close()
      process.env.SEEDSCOPE_GEMM = 'mkl'
      expect(() => loadFastGemm(1)).toThrow(/SEEDSCOPE_GEMM=mkl: expected one of amx, openblas, onnxruntime, js/)
      const missing = named.find(({ backend }) => typeof backend === 'string')   // e.g. amx on another CPU
      if (missing) {
        process.env.SEEDSCOPE_GEMM = missing.name
        expect(() => loadFastGemm(1)).toThrow(new RegExp(`SEEDSCOPE_GEMM=${missing.name}: .*; unset it to let seedscope choose`))
      }
    } finally {
      if (saved === undefined) delete process.env.SEEDSCOPE_GEMM
      else process.env.SEEDSCOPE_GEMM = saved
    }
  })

  it('shares one engine per backend and thread count; close() lets go of one handle only', () => {
    const name = named.find(({ backend }) => typeof backend !== 'string')!.name as GemmBackendName
    const first = loadGemmBackend(name, 1), second = loadGemmBackend(name, 1)
    const a = Float32Array.of(1, 2, 3, 4), out = new Float32Array(4)
    first.close()
    first.close()   // idempotent
    expect(() => first.gemm(a, a, 2, 2, 2, out)).toThrow(/called after close\(\)/)
    second.gemm(a, a, 2, 2, 2, out)   // [[1,2],[3,4]]·[[1,2],[3,4]]ᵀ
    expect(Array.from(out)).toEqual([5, 11, 11, 25])
    second.close()
  })

  it('rejects a thread count that is not a positive integer', () => {
    expect(() => loadGemmBackend('js', 0)).toThrow(/threads must be a positive integer, got 0/)
  })
})
