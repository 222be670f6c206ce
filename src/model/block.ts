// One transformer block's graph nodes, in the order data flows: LayerNorm, attention, MLP, residual wiring.
// Architecture differences arrive as traits (hf-config.ts) and canonical weights (convert.ts), so this file
// never asks which model it is building.
import { float, type GraphBuilder, int, ints, SEEDSCOPE_DOMAIN, str } from './graph-builder.js'
import type { LayerWeights } from './convert.js'
import type { ArchitectureTraits, ModelShape } from './hf-config.js'

/** Graph values shared by every block of one model. */
export interface BlockContext {
  g: GraphBuilder
  shape: ModelShape
  traits: ArchitectureTraits
  causalMask: string // bool [pos, pos], true where the key may be attended
  rotary?: { cos: string; sin: string } // [pos, 1, rotary_dims] each, broadcast over heads
  /** Per-neuron overrides of hook_post for `layer`, or undefined when the graph takes none. */
  intervene?: (post: string, layer: number) => string
  /** Attention through seedscope's CausalAttention operators (ModelSession.runsSeedscopeAttention). */
  seedscopeAttention: boolean
  /** The blocks' weight products through seedscope's AmxMatMul operator (ModelSession.runsAmxMatMul). */
  amxMatMul: boolean
}

export interface BlockOutputs {
  resid: string | undefined // [batch, pos, d_model]; undefined when `lastNeeded` stopped at hook_post
  mlpPre: string | undefined // [batch, pos, d_mlp]; undefined unless `hookPre` asked for it
  mlpPost: string // [batch, pos, d_mlp], after interventions
  attnToBos?: string // [batch, head, pos]
}

export function layerNorm(g: GraphBuilder, x: string, ln: { w: Float32Array; b: Float32Array }, eps: number, name: string): string {
  const d = ln.w.length
  return g.op('LayerNormalization', [x, g.weight(`${name}.w`, [d], ln.w), g.weight(`${name}.b`, [d], ln.b)], {
    axis: int(-1),
    epsilon: float(eps),
  })
}

/** x·W for a weight W [dIn, dOut]; on seedscope's AMX operator the weight is stored transposed, [dOut, dIn]. */
function matmul(ctx: BlockContext, x: string, w: Float32Array, dIn: number, dOut: number, name: string): string {
  const { g } = ctx
  if (!ctx.amxMatMul) return g.op('MatMul', [x, g.weight(`${name}.W`, [dIn, dOut], w)])
  return g.op('AmxMatMul', [x, g.weight(`${name}.Wt`, [dOut, dIn], transposed(w, dIn, dOut))], {}, SEEDSCOPE_DOMAIN)
}

// In 64 × 64 tiles: element by element, the strided writes made a GPT-2-small model load 0.4 s slower.
function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length)
  const TILE = 64
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const r1 = Math.min(rows, r0 + TILE)
      const c1 = Math.min(cols, c0 + TILE)
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) t[c * rows + r] = w[r * cols + c]
    }
  }
  return t
}

function linear(ctx: BlockContext, x: string, w: Float32Array, b: Float32Array, dIn: number, dOut: number, name: string): string {
  return ctx.g.op('Add', [matmul(ctx, x, w, dIn, dOut, name), ctx.g.weight(`${name}.b`, [dOut], b)])
}

/**
 * Emit block `layer`. With `stopAtPost` the block ends at hook_post (the extraction variant of the last layer
 * needs nothing after it).
 */
export function transformerBlock(
  ctx: BlockContext,
  x: string,
  w: LayerWeights,
  layer: number,
  options: { attnToBos: boolean; stopAtPost: boolean; hookPre: boolean },
): BlockOutputs {
  const { g, shape, traits } = ctx
  const name = `blocks.${layer}`
  const attention = attentionBlock(ctx, layerNorm(g, x, w.ln1, shape.lnEps, `${name}.ln1`), w, layer, options.attnToBos)
  // Sequential: the MLP reads x + attn. Parallel (NeoX): both LayerNorms read the same x.
  const afterAttn = g.op('Add', [x, attention.out])
  const mlpIn = traits.residual === 'parallel' ? x : afterAttn
  const ln2 = layerNorm(g, mlpIn, w.ln2, shape.lnEps, `${name}.ln2`)
  let mlpPre: string | undefined
  let activated: string
  if (options.hookPre) {
    mlpPre = linear(ctx, ln2, w.W_in, w.b_in, shape.dModel, shape.dMlp, `${name}.mlp.in`)
    activated = g.op('Gelu', [mlpPre], { approximate: str(traits.gelu === 'tanh' ? 'tanh' : 'none') })
  } else {
    // The bias added inside the activation (onnxruntime's contrib kernels): one pass over [batch, pos, d_mlp]
    // fewer. onnxruntime fuses Add + Gelu this way by itself, but not in a graph holding a seedscope operator.
    const product = matmul(ctx, ln2, w.W_in, shape.dModel, shape.dMlp, `${name}.mlp.in`)
    const bias = g.weight(`${name}.mlp.in.b`, [shape.dMlp], w.b_in)
    activated = g.op(traits.gelu === 'tanh' ? 'FastGelu' : 'BiasGelu', [product, bias], {}, 'com.microsoft')
  }
  const mlpPost = ctx.intervene ? ctx.intervene(activated, layer) : activated
  if (options.stopAtPost) return { resid: undefined, mlpPre, mlpPost, attnToBos: attention.toBos }
  const mlpOut = linear(ctx, mlpPost, w.W_out, w.b_out, shape.dMlp, shape.dModel, `${name}.mlp.out`)
  return { resid: g.op('Add', [afterAttn, mlpOut]), mlpPre, mlpPost, attnToBos: attention.toBos }
}

function attentionBlock(ctx: BlockContext, x: string, w: LayerWeights, layer: number, wantBos: boolean) {
  const { g, shape } = ctx
  const { nHeads, dHead, dModel } = shape
  const scale = ctx.traits.attnScale(layer)
  const name = `blocks.${layer}.attn`
  if (!wantBos && ctx.seedscopeAttention && !ctx.rotary) {
    // seedscope's causal kernel (native/kernels/attention.c) on the projection as it comes, [batch, pos, 3·d_model]:
    // it adds the bias and reads Q, K and V in place, and meets only the keys each query sees.
    const qkv = matmul(ctx, x, w.W_qkv, dModel, 3 * dModel, `${name}.qkv`)
    const attrs = { num_heads: int(nHeads), scale: float(scale) }
    const merged = g.op('CausalAttentionQKV', [qkv, g.weight(`${name}.qkv.b`, [3 * dModel], w.b_qkv)], attrs, SEEDSCOPE_DOMAIN)
    return { out: linear(ctx, merged, w.W_O, w.b_O, dModel, dModel, `${name}.out`), toBos: undefined }
  }
  const qkv = linear(ctx, x, w.W_qkv, w.b_qkv, dModel, 3 * dModel, `${name}.qkv`) // [batch, pos, 3·d_model]
  const split = g.op('Reshape', [qkv, g.int64([0, 0, 3, nHeads, dHead])]) // [batch, pos, 3, n_heads, d_head]
  const pick = (i: number) => g.op('Gather', [split, g.int64([i], [])], { axis: int(2) }) // [batch, pos, n_heads, d_head]
  const q = applyRotary(ctx, pick(0))
  const k = applyRotary(ctx, pick(1))
  const v = pick(2)
  let merged: string // [batch, pos, d_model]
  let toBos: string | undefined
  const flat = (t: string) => g.op('Reshape', [t, g.int64([0, 0, dModel])])
  if (!wantBos && ctx.seedscopeAttention) {
    // seedscope's causal kernel, on Q and K after the rotary embedding.
    merged = g.op('CausalAttention', [flat(q), flat(k), flat(v)], { num_heads: int(nHeads), scale: float(scale) }, SEEDSCOPE_DOMAIN)
  } else if (!wantBos) {
    // One fused causal attention node (ONNX opset 23). onnxruntime's kernel for it took 0.96 s where its
    // com.microsoft MultiHeadAttention took 1.15 s, over four GPT-2-small batches of 4 × 512 (session 7).
    merged = g.op('Attention', [flat(q), flat(k), flat(v)], { q_num_heads: int(nHeads), kv_num_heads: int(nHeads), is_causal: int(1), scale: float(scale) })
  } else {
    // Explicit pattern, so attention to position 0 can be read out.
    const qh = g.op('Transpose', [q], { perm: ints([0, 2, 1, 3]) }) // [batch, n_heads, pos, d_head]
    const kT = g.op('Transpose', [k], { perm: ints([0, 2, 3, 1]) }) // [batch, n_heads, d_head, pos]
    const vh = g.op('Transpose', [v], { perm: ints([0, 2, 1, 3]) }) // [batch, n_heads, pos, d_head]
    const scores = g.op('Mul', [g.op('MatMul', [qh, kT]), g.scalar(scale)]) // [batch, n_heads, query, key]
    // HF fills masked scores with finfo(float32).min rather than -inf; either gives probability exactly 0.
    const masked = g.op('Where', [ctx.causalMask, scores, g.scalar(-3.4028234663852886e38)])
    const pattern = g.op('Softmax', [masked], { axis: int(-1) })
    toBos = g.op('Gather', [pattern, g.int64([0], [])], { axis: int(3) }) // [batch, n_heads, query]
    const z = g.op('MatMul', [pattern, vh]) // [batch, n_heads, pos, d_head]
    merged = g.op('Reshape', [g.op('Transpose', [z], { perm: ints([0, 2, 1, 3]) }), g.int64([0, 0, dModel])])
  }
  return { out: linear(ctx, merged, w.W_O, w.b_O, dModel, dModel, `${name}.out`), toBos }
}

// NeoX rotary, rotate-half style, on the first rotary_dims of each head; the rest pass through unchanged.
function applyRotary(ctx: BlockContext, x: string): string {
  const { g, shape, traits } = ctx
  if (traits.positions === 'learned' || !ctx.rotary) return x
  const r = traits.positions.rotaryDims
  const axis = g.int64([3])
  const slice = (from: number, to: number, of: string) => g.op('Slice', [of, g.int64([from]), g.int64([to]), axis])
  const rot = r === shape.dHead ? x : slice(0, r, x) // [batch, pos, n_heads, rotary_dims]
  const half = r / 2
  const rotated = g.op('Concat', [g.op('Neg', [slice(half, r, rot)]), slice(0, half, rot)], { axis: int(3) })
  const mixed = g.op('Add', [g.op('Mul', [rot, ctx.rotary.cos]), g.op('Mul', [rotated, ctx.rotary.sin])])
  return r === shape.dHead ? mixed : g.op('Concat', [mixed, slice(r, shape.dHead, x)], { axis: int(3) })
}
