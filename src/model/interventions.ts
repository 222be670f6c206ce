// Per-neuron affine overrides on hook_post, a' = mul·a + add (SPEC §6), as graph inputs.
//
// Layout (sparse, so cost scales with the number of overrides, not with batch × L·d_mlp):
//   intervention.index  int64  [K, 4]  rows of (batch row, position, layer, neuron)
//   intervention.mul    float  [K]
//   intervention.add    float  [K]
// Each layer selects its rows (Compress on the layer column), gathers the K_l activations, applies the affine
// map and scatters them back (GatherND/ScatterND on [batch, pos, d_mlp]). Different batch rows may carry
// different interventions, so one forward pass evaluates many ablations; K = 0 is the identity.
// Entries must be unique per (row, position, layer, neuron): ScatterND leaves duplicates undefined, so
// `encodeInterventions` composes nothing silently and refuses them.
import { UserError } from '../errors.js'
import { type GraphBuilder, int } from './graph-builder.js'
import { DataType } from './onnx-proto.js'

export const INTERVENTION_INPUTS = ['intervention.index', 'intervention.mul', 'intervention.add']

/** One override: at `row` (all positions when `position` is undefined), neuron `layer.neuron`. */
export interface Intervention {
  row: number
  position?: number
  layer: number
  neuron: number
  mul: number
  add: number
}

export const zeroAblation = (layer: number, neuron: number, row: number): Intervention => ({ row, layer, neuron, mul: 0, add: 0 })
export const scaleBy = (layer: number, neuron: number, row: number, k: number): Intervention => ({ row, layer, neuron, mul: k, add: 0 })
export const fixAt = (layer: number, neuron: number, row: number, value: number): Intervention => ({ row, layer, neuron, mul: 0, add: value })

export interface EncodedInterventions {
  index: BigInt64Array // [K, 4]
  mul: Float32Array // [K]
  add: Float32Array // [K]
  count: number
}

/** Expand and pack interventions for a batch of `batch` rows × `positions` positions. */
export function encodeInterventions(
  list: readonly Intervention[],
  dims: { batch: number; positions: number; nLayers: number; dMlp: number },
): EncodedInterventions {
  const entries: [number, number, number, number, number, number][] = []
  const seen = new Set<string>()
  for (const iv of list) {
    const where = `intervention on ${iv.layer}.${iv.neuron} (row ${iv.row})`
    if (iv.layer < 0 || iv.layer >= dims.nLayers) throw new UserError(`${where}: layer out of range (model has ${dims.nLayers} layers)`)
    if (iv.neuron < 0 || iv.neuron >= dims.dMlp) throw new UserError(`${where}: neuron out of range (d_mlp is ${dims.dMlp})`)
    if (iv.row < 0 || iv.row >= dims.batch) throw new UserError(`${where}: row out of range (batch has ${dims.batch} rows)`)
    const positions = iv.position === undefined ? range(dims.positions) : [iv.position]
    for (const p of positions) {
      if (p < 0 || p >= dims.positions) throw new UserError(`${where}: position ${p} out of range (rows have ${dims.positions})`)
      const key = `${iv.row}:${p}:${iv.layer}:${iv.neuron}`
      if (seen.has(key)) throw new UserError(`${where}: given twice for position ${p}; combine them into one affine override`)
      seen.add(key)
      entries.push([iv.row, p, iv.layer, iv.neuron, iv.mul, iv.add])
    }
  }
  const count = entries.length
  const index = new BigInt64Array(count * 4)
  const mul = new Float32Array(count)
  const add = new Float32Array(count)
  entries.forEach(([row, p, layer, neuron, m, a], i) => {
    index.set([BigInt(row), BigInt(p), BigInt(layer), BigInt(neuron)], i * 4)
    mul[i] = m
    add[i] = a
  })
  return { index, mul, add, count }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i)
}

/** Declare the three inputs and return the per-layer override function the block builder calls. */
export function interventionInputs(g: GraphBuilder): (post: string, layer: number) => string {
  const [indexName, mulName, addName] = INTERVENTION_INPUTS
  const index = g.input(indexName, DataType.INT64, ['interventions', 4])
  const mul = g.input(mulName, DataType.FLOAT, ['interventions'])
  const add = g.input(addName, DataType.FLOAT, ['interventions'])
  const layerColumn = g.op('Gather', [index, g.int64([2], [])], { axis: int(1) }) // [K]
  const whereColumns = g.int64([0, 1, 3]) // (row, position, neuron)
  return (post, layer) => {
    const mine = g.op('Equal', [layerColumn, g.int64([layer], [])]) // [K] bool
    const rows = g.op('Compress', [index, mine], { axis: int(0) }) // [K_l, 4]
    const where = g.op('Gather', [rows, whereColumns], { axis: int(1) }) // [K_l, 3]
    const current = g.op('GatherND', [post, where]) // [K_l]
    const scaled = g.op('Mul', [current, g.op('Compress', [mul, mine], { axis: int(0) })])
    const updated = g.op('Add', [scaled, g.op('Compress', [add, mine], { axis: int(0) })])
    return g.op('ScatterND', [post, where, updated]) // [batch, pos, d_mlp]
  }
}
