// Reshaping between the model's token-major activations and the neuron-major layout the correlation GEMM wants
// (SPEC §3): [batch·pos, d_mlp] with a valid-position mask in, [d_mlp, valid tokens] out.

/**
 * Transpose a token-major chunk `[tokens, width]` to neuron-major `[width, validTokens]`, dropping the tokens
 * whose `valid` entry is 0 (SPEC §2: BOS/pad and "\n" positions). Returns the new array and its token count.
 */
export function toNeuronMajor(
  chunk: Float32Array, tokens: number, valid?: Uint8Array,
): { values: Float32Array; tokens: number } {
  if (tokens === 0) return { values: new Float32Array(0), tokens: 0 }
  if (chunk.length % tokens !== 0) {
    throw new Error(`layout: chunk of ${chunk.length} values is not [tokens=${tokens}, width]`)
  }
  if (valid && valid.length !== tokens) {
    throw new Error(`layout: valid mask has ${valid.length} entries for ${tokens} tokens`)
  }
  const width = chunk.length / tokens
  const kept: number[] = []
  for (let t = 0; t < tokens; t++) if (!valid || valid[t]) kept.push(t)
  const n = kept.length
  const out = new Float32Array(width * n)
  // Blocks of 64 tokens × 64 neurons keep both the reads and the writes within a few cache lines each.
  const B = 64
  for (let q0 = 0; q0 < n; q0 += B) {
    const q1 = Math.min(n, q0 + B)
    for (let j0 = 0; j0 < width; j0 += B) {
      const j1 = Math.min(width, j0 + B)
      for (let q = q0; q < q1; q++) {
        const row = kept[q] * width
        for (let j = j0; j < j1; j++) out[j * n + q] = chunk[row + j]
      }
    }
  }
  return { values: out, tokens: n }
}
