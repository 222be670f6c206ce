// A small typed builder over onnx-proto: ops return the names of their outputs, so a forward pass reads as
// a sequence of calls (`const h = g.op('MatMul', [x, w])`). Weights become initializers without copying.
import {
  type AttributeValue,
  DataType,
  type DataTypeCode,
  encodeModel,
  type Encoded,
  type NodeProto,
  type TensorProto,
  type ValueInfo,
} from './onnx-proto.js'
import { externalizeWeights } from './weights-file.js'

export const OPSET = 23 // Attention needs 23; Gelu(approximate) 20; LayerNormalization 17
export const IR_VERSION = 10
export const SEEDSCOPE_DOMAIN = 'seedscope' // operators of native/kernels/ort.c, known to the direct binding's sessions

export const int = (value: number): AttributeValue => ({ kind: 'int', value })
export const float = (value: number): AttributeValue => ({ kind: 'float', value })
export const ints = (value: number[]): AttributeValue => ({ kind: 'ints', value })
export const str = (value: string): AttributeValue => ({ kind: 'string', value })

function bytesOf(data: Float32Array | BigInt64Array | Uint8Array | Int32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
}

export class GraphBuilder {
  private nodes: NodeProto[] = []
  private initializers: TensorProto[] = []
  private inputs: ValueInfo[] = []
  private outputs: ValueInfo[] = []
  private names = new Set<string>()
  private publicNames = new Map<string, string>() // node output → the graph output name it is renamed to
  private counter = 0

  private fresh(hint: string): string {
    let name: string
    do name = `${hint}_${this.counter++}`
    while (this.names.has(name))
    this.names.add(name)
    return name
  }

  /** Add a node; returns its single output name. */
  op(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, domain?: string): string {
    return this.opN(opType, inputs, 1, attributes, domain)[0]
  }

  /** Add a node with `nOutputs` outputs; an input name '' marks an omitted optional input. */
  opN(opType: string, inputs: string[], nOutputs: number, attributes: Record<string, AttributeValue> = {}, domain?: string): string[] {
    const outputs = Array.from({ length: nOutputs }, () => this.fresh(opType))
    this.nodes.push({ opType, inputs, outputs, name: this.fresh(`n_${opType}`), attributes, domain })
    return outputs
  }

  /** A float32 weight; the array is referenced, not copied. */
  weight(hint: string, dims: number[], data: Float32Array): string {
    return this.initializer(hint, DataType.FLOAT, dims, data)
  }

  initializer(hint: string, dataType: DataTypeCode, dims: number[], data: Float32Array | BigInt64Array | Uint8Array | Int32Array): string {
    const name = this.fresh(hint)
    const expected = dims.reduce((a, b) => a * b, 1)
    if (data.length !== expected) throw new Error(`initializer ${hint}: ${data.length} values for shape [${dims}]`)
    this.initializers.push({ name, dataType, dims, rawData: bytesOf(data) })
    return name
  }

  /** An int64 constant, e.g. a shape or a list of axes. */
  int64(values: number[], dims: number[] = [values.length]): string {
    return this.initializer('i64', DataType.INT64, dims, BigInt64Array.from(values.map(BigInt)))
  }

  /** A float32 scalar constant. */
  scalar(value: number): string {
    return this.initializer('f32', DataType.FLOAT, [], Float32Array.of(value))
  }

  input(name: string, dataType: DataTypeCode, dims: (number | string)[]): string {
    this.names.add(name)
    this.inputs.push({ name, dataType, dims })
    return name
  }

  /**
   * Expose `value` as a graph output called `name`. A node's output is renamed to `name` when the graph is built;
   * onnxruntime runs an Identity node as a copy (3% of a GPT-2-small forward pass with every hook_post exposed),
   * so one is added only where renaming cannot work: a graph input, an initializer, or a value exposed twice.
   */
  output(name: string, value: string, dataType: DataTypeCode, dims: (number | string)[]): void {
    if (this.names.has(name)) throw new Error(`graph output ${name} defined twice`)
    this.names.add(name)
    const producedHere = this.nodes.some((node) => node.outputs.includes(value))
    if (producedHere && !this.publicNames.has(value)) this.publicNames.set(value, name)
    else this.nodes.push({ opType: 'Identity', inputs: [value], outputs: [name], name: this.fresh('n_out'), attributes: {} })
    this.outputs.push({ name, dataType, dims })
  }

  outputNames(): string[] {
    return this.outputs.map((o) => o.name)
  }

  /** `weightsDir`: the weights go to a file there, onnxruntime's external initializers folder (weights-file.ts). */
  build(graphName: string, weightsDir?: string): Encoded {
    if (weightsDir) externalizeWeights(this.initializers, weightsDir)
    const rename = (value: string) => this.publicNames.get(value) ?? value
    const nodes = this.nodes.map((node) => ({ ...node, inputs: node.inputs.map(rename), outputs: node.outputs.map(rename) }))
    return encodeModel({
      irVersion: IR_VERSION,
      producerName: 'seedscope',
      opsets: [
        { domain: '', version: OPSET },
        { domain: 'com.microsoft', version: 1 },
        ...(nodes.some((node) => node.domain === SEEDSCOPE_DOMAIN) ? [{ domain: SEEDSCOPE_DOMAIN, version: 1 }] : []),
      ],
      graph: { name: graphName, nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs },
    })
  }
}
