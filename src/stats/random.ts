// Seeded random numbers for the rotation baseline (rotation.ts) and the tests: xoshiro128** (Blackman & Vigna)
// uniforms and Box–Muller normals. The draws are defined by these functions to the bit: the native kernels
// (native/kernels/correlate.c's gaussianPairs) make the same numbers, and the tests hold them to it.

/** The generator's 128-bit state for (seed, stream), filled by a 32-bit integer hash. Never all zero. */
export function xoshiroState(seed: number, stream: number): Uint32Array {
  let z = hash32((seed >>> 0) ^ hash32(stream >>> 0))
  const next = () => (z = hash32((z + 0x9e3779b9) >>> 0))
  const state = Uint32Array.of(next(), next(), next(), next())
  if ((state[0] | state[1] | state[2] | state[3]) === 0) state[0] = 1  // the all-zero state is a fixed point
  return state
}

/** Uniform [0, 1) draws of 53 random bits from `state`, which each draw advances in place. */
export function uniformFrom(state: Uint32Array): () => number {
  const u32 = (): number => {
    const s1 = state[1] | 0
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
    const t = s1 << 9
    state[2] ^= state[0]; state[3] ^= state[1]; state[1] ^= state[2]; state[0] ^= state[3]; state[2] ^= t
    state[3] = rotl(state[3] | 0, 11)
    return result
  }
  return () => ((u32() >>> 5) * 67108864 + (u32() >>> 6)) / 9007199254740992
}

/** A uniform [0, 1) generator for (seed, stream). */
export function seededRandom(seed: number, stream: number): () => number {
  return uniformFrom(xoshiroState(seed, stream))
}

/** Fill `out` with standard normals, two per pair of uniform draws (Box–Muller), the last one alone when odd. */
export function boxMullerFill(random: () => number, out: Float64Array): void {
  for (let i = 0; i < out.length; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - random()))  // 1 − u ∈ (0, 1]: log stays finite
    const angle = 2 * Math.PI * random()
    out[i] = radius * Math.cos(angle)
    if (i + 1 < out.length) out[i + 1] = radius * Math.sin(angle)
  }
}

/** rows×cols standard normal entries (Box–Muller), row-major. */
export function gaussianMatrix(rows: number, cols: number, random: () => number): Float64Array {
  const out = new Float64Array(rows * cols)
  boxMullerFill(random, out)
  return out
}

// Chris Wellons' lowbias32 integer hash.
function hash32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d)
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b)
  return (x ^ (x >>> 16)) >>> 0
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}
