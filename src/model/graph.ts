// Stacks the blocks into an instrumented ONNX graph: token ids in; the requested hook sites, logits and
// in-graph heads (loss, entropy, ln_final.hook_scale) out. Heads are computed in the graph because full
// logits for a 24×512 batch are gigabytes (SPEC §6).
import { type BlockContext, layerNorm, transformerBlock } from './block.js'
import type { ModelWeights } from './convert.js'
import { GraphBuilder, int } from './graph-builder.js'
import type { ArchitectureTraits, ModelShape } from './hf-config.js'
import { interventionInputs, INTERVENTION_INPUTS } from './interventions.js'
import { DataType, type Encoded } from './onnx-proto.js'
import { type OutputRequest, site } from './sites.js'

export interface BuiltGraph {
  model: Encoded
  outputs: string[]
  inputs: string[]
}

/**
 * `seedscopeAttention`: use seedscope's causal attention operators (ModelSession.runsSeedscopeAttention);
 * `amxMatMul`: its AMX weight products (ModelSession.runsAmxMatMul); `weightsDir`: the weights go to a file there
 * (weights-file.ts), and the session needs the same `weightsDir`.
 */
export function buildGraph(
  weights: ModelWeights,
  shape: ModelShape,
  traits: ArchitectureTraits,
  request: OutputRequest,
  options: { seedscopeAttention: boolean; amxMatMul: boolean; weightsDir?: string } = { seedscopeAttention: false, amxMatMul: false },
): BuiltGraph {
  const g = new GraphBuilder()
  const ids = g.input('input_ids', DataType.INT64, ['batch', 'pos']) // [batch, pos]
  const posLength = g.op('Slice', [g.op('Shape', [ids]), g.int64([1]), g.int64([2])]) // [1] = pos
  const upToPos = (table: string) => g.op('Slice', [table, g.int64([0]), posLength, g.int64([0])])

  let x = g.op('Gather', [g.weight('W_E', [shape.dVocab, shape.dModel], weights.W_E), ids], { axis: int(0) }) // [batch, pos, d_model]
  if (weights.W_pos) x = g.op('Add', [x, upToPos(g.weight('W_pos', [shape.nCtx, shape.dModel], weights.W_pos))])

  const mask = g.initializer('causal_mask', DataType.BOOL, [shape.nCtx, shape.nCtx], causalMask(shape.nCtx))
  const square = g.op('Concat', [posLength, posLength], { axis: int(0) })
  const ctx: BlockContext = {
    g,
    shape,
    traits,
    causalMask: g.op('Slice', [mask, g.int64([0, 0]), square, g.int64([0, 1])]), // [pos, pos]
    seedscopeAttention: options.seedscopeAttention,
    amxMatMul: options.amxMatMul,
  }
  if (traits.positions !== 'learned' && traits.positions.rotaryDims > 0) {
    const { cos, sin } = rotaryTables(shape.nCtx, traits.positions.rotaryDims, traits.positions.rotaryBase)
    const dims = [shape.nCtx, traits.positions.rotaryDims]
    const perHead = (table: string) => g.op('Unsqueeze', [upToPos(table), g.int64([1])]) // [pos, 1, rotary_dims]
    ctx.rotary = { cos: perHead(g.weight('rotary_cos', dims, cos)), sin: perHead(g.weight('rotary_sin', dims, sin)) }
  }
  if (request.interventions) ctx.intervene = interventionInputs(g)

  const wantsFinal = Boolean(request.logits || request.loss || request.entropy || request.lnFinalScale)
  const act = ['batch', 'pos', shape.dMlp]
  const hookPre = Boolean(request.mlpPre)
  for (let layer = 0; layer < shape.nLayers; layer++) {
    const stopAtPost = !wantsFinal && layer === shape.nLayers - 1
    const out = transformerBlock(ctx, x, weights.layers[layer], layer, { attnToBos: Boolean(request.attnToBos), stopAtPost, hookPre })
    if (out.mlpPre) g.output(site.mlpPre(layer), out.mlpPre, DataType.FLOAT, act)
    if (request.mlpPost) g.output(site.mlpPost(layer), out.mlpPost, DataType.FLOAT, act)
    if (out.attnToBos) g.output(site.attnToBos(layer), out.attnToBos, DataType.FLOAT, ['batch', shape.nHeads, 'pos'])
    if (out.resid) x = out.resid
  }
  if (wantsFinal) addHeads(g, x, ids, weights, shape, request)

  const inputs = ['input_ids', ...(request.interventions ? INTERVENTION_INPUTS : [])]
  return { model: g.build('seedscope', options.weightsDir), outputs: g.outputNames(), inputs }
}

function addHeads(g: GraphBuilder, resid: string, ids: string, weights: ModelWeights, shape: ModelShape, request: OutputRequest): void {
  const lastAxis = g.int64([-1])
  if (request.lnFinalScale) {
    // TransformerLens ln_final.hook_scale: sqrt(biased variance + eps) of the final LayerNorm's input.
    const centred = g.op('Sub', [resid, g.op('ReduceMean', [resid, lastAxis])])
    const variance = g.op('ReduceMean', [g.op('Mul', [centred, centred]), lastAxis], { keepdims: int(0) })
    g.output(site.lnFinalScale, g.op('Sqrt', [g.op('Add', [variance, g.scalar(shape.lnEps)])]), DataType.FLOAT, ['batch', 'pos'])
  }
  if (!(request.logits || request.loss || request.entropy)) return
  const normed = layerNorm(g, resid, weights.lnFinal, shape.lnEps, 'ln_final')
  const logits = g.op('MatMul', [normed, g.weight('W_U', [shape.dModel, shape.dVocab], weights.W_U)]) // [batch, pos, d_vocab]
  if (request.logits) g.output(site.logits, logits, DataType.FLOAT, ['batch', 'pos', shape.dVocab])
  if (!(request.loss || request.entropy)) return
  // Over every row of the (possibly padded) vocabulary, as HF does.
  const logProbs = g.op('LogSoftmax', [logits], { axis: int(-1) })
  if (request.entropy) {
    const plogp = g.op('Mul', [g.op('Exp', [logProbs]), logProbs])
    g.output(site.entropy, g.op('Neg', [g.op('ReduceSum', [plogp, lastAxis], { keepdims: int(0) })]), DataType.FLOAT, ['batch', 'pos'])
  }
  if (request.loss) {
    const posAxis = g.int64([1])
    const predicting = g.op('Slice', [logProbs, g.int64([0]), g.int64([-1]), posAxis]) // [batch, pos − 1, d_vocab]
    const next = g.op('Slice', [ids, g.int64([1]), g.int64([Number.MAX_SAFE_INTEGER]), posAxis]) // [batch, pos − 1]
    const picked = g.op('GatherElements', [predicting, g.op('Unsqueeze', [next, lastAxis])], { axis: int(2) }) // [batch, pos − 1, 1]
    g.output(site.loss, g.op('Neg', [g.op('Squeeze', [picked, lastAxis])]), DataType.FLOAT, ['batch', 'pos_minus_1'])
  }
}

/** Lower-triangular [n, n] (row = query, column = key). */
function causalMask(n: number): Uint8Array {
  const mask = new Uint8Array(n * n)
  for (let q = 0; q < n; q++) mask.fill(1, q * n, q * n + q + 1)
  return mask
}

/**
 * cos/sin tables [n, rotaryDims] as HF's GPTNeoXRotaryEmbedding computes them in float32:
 * inv_freq = 1 / base^(2j / rotaryDims), θ = pos · inv_freq, emb = [θ, θ].
 */
export function rotaryTables(n: number, rotaryDims: number, base: number): { cos: Float32Array; sin: Float32Array } {
  const f = Math.fround
  const half = rotaryDims / 2
  const invFreq = Array.from({ length: half }, (_, j) => f(1 / f(Math.pow(base, f((2 * j) / rotaryDims)))))
  const cos = new Float32Array(n * rotaryDims)
  const sin = new Float32Array(n * rotaryDims)
  for (let p = 0; p < n; p++) {
    for (let j = 0; j < half; j++) {
      const theta = f(p * invFreq[j]) // float32 product, as torch.outer computes it
      for (const col of [j, j + half]) {
        cos[p * rotaryDims + col] = Math.cos(theta)
        sin[p * rotaryDims + col] = Math.sin(theta)
      }
    }
  }
  return { cos, sin }
}
