// Checkpoints of in-memory state (accumulators, maxima): any object tree whose leaves are typed arrays, numbers,
// strings or booleans, saved as one safetensors file. Typed arrays keep their exact bits (float64 sums resume
// bit for bit); everything else travels as JSON in a U8 tensor. Written atomically, like every output.
import { existsSync } from 'node:fs'
import { readSafetensors, type TensorToWrite, writeSafetensors } from './safetensors.js'

type Leaf = Float64Array | Float32Array | Int32Array | Uint8Array
const JSON_TENSOR = '__json__'
const ARRAY_MARK = '__array__:'

function dtypeOf(a: Leaf): TensorToWrite['dtype'] {
  if (a instanceof Float64Array) return 'F64'
  if (a instanceof Float32Array) return 'F32'
  if (a instanceof Int32Array) return 'I32'
  return 'U8'
}

function isLeaf(value: unknown): value is Leaf {
  return value instanceof Float64Array || value instanceof Float32Array || value instanceof Int32Array || value instanceof Uint8Array
}

export function writeStateFile(path: string, state: unknown): void {
  const tensors: Record<string, TensorToWrite> = {}
  let next = 0
  const json = JSON.stringify(state, (_key, value) => {
    if (!isLeaf(value)) return value
    const name = `a${next++}`
    tensors[name] = { dtype: dtypeOf(value), shape: [value.length], data: value }
    return `${ARRAY_MARK}${name}`
  })
  tensors[JSON_TENSOR] = { dtype: 'U8', shape: [Buffer.byteLength(json)], data: new Uint8Array(Buffer.from(json)) }
  writeSafetensors(path, tensors)
}

/** The saved state, or undefined when there is no file. */
export function readStateFile<T>(path: string): T | undefined {
  if (!existsSync(path)) return undefined
  const tensors = readSafetensors(path)
  const json = tensors.get(JSON_TENSOR)
  if (!json) throw new Error(`${path}: not a seedscope state file`)
  const text = Buffer.from(json.data as Uint8Array).toString('utf8')
  return JSON.parse(text, (_key, value) => {
    if (typeof value !== 'string' || !value.startsWith(ARRAY_MARK)) return value
    const tensor = tensors.get(value.slice(ARRAY_MARK.length))
    if (!tensor) throw new Error(`${path}: state refers to a missing array ${value}`)
    // Views into the file's bytes, not copies: a state's arrays live and die together (an accumulator adopts
    // them), and a copy would double the peak memory of a pair's sums, gigabytes at GPT-2 small.
    return tensor.data as Leaf
  }) as T
}

/**
 * When a long pass saves its state: once `every.tokens` tokens, or `every.minutes` minutes, have gone by since the
 * last save, whichever comes first (correlate.checkpoint_every, checkpoint_minutes).
 */
export class CheckpointClock {
  private tokens = 0
  private last = Date.now()

  constructor(private readonly every: { tokens: number; minutes: number }) {}

  /** Count a chunk's tokens; true when a save is due. */
  count(tokens: number): boolean {
    this.tokens += tokens
    return this.tokens >= this.every.tokens || Date.now() - this.last >= this.every.minutes * 60_000
  }

  /** A save was made: count from here. */
  saved(): void {
    this.tokens = 0
    this.last = Date.now()
  }
}
