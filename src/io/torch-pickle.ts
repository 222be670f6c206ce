// A small, safe pickle VM for the `data.pkl` of torch zip checkpoints (golden.md pitfalls 15 and 23). It runs the
// opcodes torch.save emits for a state dict and calls no code: a global outside a short whitelist stops the load
// with an error naming it. Tensors come back as references into the archive's storages; gatherTensor reads them.
import { UserError } from '../errors.js'
import { type Dtype, type TensorData, numel } from './safetensors-dtypes.js'

/** A storage as its persistent id names it: `('storage', torch.HalfStorage, '<key>', 'cpu', numel)`. */
export interface TorchStorageRef {
  key: string // its bytes are the archive entry `<root>/data/<key>`
  dtype: Dtype
  numel: number
  location: string // 'cpu', 'cuda:0', ...; irrelevant here, everything is read to the CPU
}

/** `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`: where a tensor's elements sit in its storage. */
export interface TorchTensorRef {
  storage: TorchStorageRef // shared by tied tensors (the same object for the same key)
  offset: number // in elements
  shape: number[] // `[]` for a 0-dim tensor
  stride: number[] // in elements
}

/**
 * Run a pickle under the torch whitelist and return its value: dicts become Maps, tuples and lists arrays, None null,
 * storages TorchStorageRef and tensors TorchTensorRef.
 */
export function unpickle(pickle: Uint8Array): unknown {
  return new PickleMachine(pickle).run()
}

/** Run `data.pkl` and return its state dict: tensor name → where the tensor's data lies. */
export function parseTorchStateDict(pickle: Uint8Array): Map<string, TorchTensorRef> {
  const root = unpickle(pickle)
  if (!(root instanceof Map)) {
    throw new UserError(`data.pkl holds ${describe(root)}, not a state dict (name → tensor); save one with torch.save(model.state_dict())`)
  }
  const tensors = new Map<string, TorchTensorRef>()
  for (const [name, value] of root) {
    if (typeof name !== 'string' || !isTensorRef(value)) {
      throw new UserError(
        `data.pkl entry ${JSON.stringify(name)} is ${describe(value)}, not a tensor; this looks like a training checkpoint, not a state dict (save torch.save(model.state_dict()))`,
      )
    }
    tensors.set(name, value)
  }
  return tensors
}

/** The tensor's elements in row-major order: a view of `storage` when contiguous, a copy when strided. */
export function gatherTensor(ref: TorchTensorRef, storage: TensorData): TensorData {
  const { shape, stride, offset } = ref
  const n = numel(shape)
  let last = offset
  for (let d = 0; d < shape.length; d++) if (shape[d] > 0) last += (shape[d] - 1) * stride[d]
  if (n > 0 && last >= storage.length) {
    throw new UserError(
      `tensor at offset ${offset} with size (${shape.join(', ')}) and stride (${stride.join(', ')}) reaches element ${last}, past the ${storage.length} of storage ${ref.storage.key}; corrupt checkpoint (fetch it again)`,
    )
  }
  if (n === storage.length && isContiguous(shape, stride)) return storage // tied tensors get the very same array
  if (n === 0 || isContiguous(shape, stride)) return storage.subarray(offset, offset + n)
  const out = new (storage.constructor as new (length: number) => TensorData)(n)
  const src = storage as unknown as Record<number, number | bigint>
  const dst = out as unknown as Record<number, number | bigint>
  const index = new Array<number>(shape.length).fill(0)
  let at = offset
  for (let i = 0; i < n; i++) {
    dst[i] = src[at]
    for (let d = shape.length - 1; d >= 0; d--) { // odometer over the indices, last axis fastest
      at += stride[d]
      if (++index[d] < shape[d]) break
      at -= stride[d] * shape[d]
      index[d] = 0
    }
  }
  return out
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false // a size-1 axis may carry any stride
    expected *= shape[d]
  }
  return true
}

/** Storage classes torch pickles by name; the `torch.cuda.` spellings come from checkpoints saved on a GPU by old torch. */
const STORAGES: Record<string, Dtype> = {
  FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16', DoubleStorage: 'F64',
  LongStorage: 'I64', IntStorage: 'I32', ByteStorage: 'U8', BoolStorage: 'BOOL',
}

type Callable = 'OrderedDict' | 'rebuild_tensor' | 'rebuild_parameter'
const CALLABLES: Record<string, Callable> = {
  'collections.OrderedDict': 'OrderedDict',
  'torch._utils._rebuild_tensor_v2': 'rebuild_tensor',
  'torch._utils._rebuild_parameter': 'rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state': 'rebuild_parameter',
}

class PickleGlobal {
  constructor(
    readonly name: string,
    readonly callable?: Callable,
    readonly storage?: Dtype,
  ) {}
}

function resolveGlobal(module: string, name: string): PickleGlobal {
  const full = `${module}.${name}`
  if (Object.hasOwn(CALLABLES, full)) return new PickleGlobal(full, CALLABLES[full])
  if ((module === 'torch' || module === 'torch.cuda') && Object.hasOwn(STORAGES, name)) return new PickleGlobal(full, undefined, STORAGES[name])
  if (full === 'torch.storage._load_from_bytes') {
    throw new UserError(
      'unsupported pickle content: global torch.storage._load_from_bytes (storages pickled inline in the legacy format); only zip checkpoints with storages under data/ are read (re-save with torch ≥ 1.6 or convert to safetensors)',
    )
  }
  throw new UserError(`unsupported pickle content: global ${full}; only torch state dicts are read`)
}

/** The pickle VM: a stack, a memo and a mark stack; every opcode not listed here is refused. */
class PickleMachine {
  private at = 0
  private stack: unknown[] = []
  private marks: number[] = []
  private readonly memo = new Map<number, unknown>()
  private readonly storages = new Map<string, TorchStorageRef>()
  private readonly data: DataView

  constructor(private readonly bytes: Uint8Array) {
    this.data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  run(): unknown {
    while (this.at < this.bytes.length) {
      const start = this.at
      const op = this.u8()
      switch (op) {
        case 0x80: this.u8(); break // PROTO
        case 0x95: this.take(8); break // FRAME (protocol 4): a length hint
        case 0x2e: return this.stop() // STOP '.'
        case 0x28: this.marks.push(this.stack.length); break // MARK '('
        case 0x63: this.push(resolveGlobal(this.line(), this.line())); break // GLOBAL 'c'
        case 0x93: { // STACK_GLOBAL
          const name = this.pop()
          const module = this.pop()
          if (typeof module !== 'string' || typeof name !== 'string') this.corrupt(start, 'STACK_GLOBAL needs two strings')
          this.push(resolveGlobal(module, name))
          break
        }
        case 0x71: this.memo.set(this.u8(), this.top()); break // BINPUT 'q'
        case 0x72: this.memo.set(this.u32(), this.top()); break // LONG_BINPUT 'r'
        case 0x94: this.memo.set(this.memo.size, this.top()); break // MEMOIZE
        case 0x68: this.push(this.get(this.u8(), start)); break // BINGET 'h'
        case 0x6a: this.push(this.get(this.u32(), start)); break // LONG_BINGET 'j'
        case 0x29: this.push([]); break // EMPTY_TUPLE ')'
        case 0x85: this.push([this.pop()]); break // TUPLE1
        case 0x86: { const b = this.pop(); this.push([this.pop(), b]); break } // TUPLE2
        case 0x87: { const c = this.pop(); const b = this.pop(); this.push([this.pop(), b, c]); break } // TUPLE3
        case 0x74: this.push(this.popMark(start)); break // TUPLE 't'
        case 0x7d: this.push(new Map()); break // EMPTY_DICT '}'
        case 0x5d: this.push([]); break // EMPTY_LIST ']'
        case 0x4e: this.push(null); break // NONE 'N'
        case 0x88: this.push(true); break // NEWTRUE
        case 0x89: this.push(false); break // NEWFALSE
        case 0x4b: this.push(this.u8()); break // BININT1 'K'
        case 0x4d: this.push(this.data.getUint16(this.take(2), true)); break // BININT2 'M'
        case 0x4a: this.push(this.data.getInt32(this.take(4), true)); break // BININT 'J'
        case 0x8a: this.push(this.long(this.u8(), start)); break // LONG1
        case 0x8b: this.push(this.long(this.u32(), start)); break // LONG4
        case 0x47: this.push(this.data.getFloat64(this.take(8), false)); break // BINFLOAT 'G': big-endian
        case 0x58: this.push(this.text(this.u32())); break // BINUNICODE 'X'
        case 0x8c: this.push(this.text(this.u8())); break // SHORT_BINUNICODE
        case 0x8d: this.push(this.text(this.u64())); break // BINUNICODE8
        case 0x61: { const item = this.pop(); this.list(start).push(item); break } // APPEND 'a'
        case 0x65: { const items = this.popMark(start); this.list(start).push(...items); break } // APPENDS 'e'
        case 0x73: { const value = this.pop(); const key = this.pop(); this.dict(start).set(key, value); break } // SETITEM 's'
        case 0x75: { // SETITEMS 'u'
          const items = this.popMark(start)
          const dict = this.dict(start)
          for (let i = 0; i + 1 < items.length; i += 2) dict.set(items[i], items[i + 1])
          break
        }
        case 0x52: { const args = this.pop(); this.push(this.call(this.pop(), args, start)); break } // REDUCE 'R'
        case 0x51: this.push(this.persistentLoad(this.pop(), start)); break // BINPERSID 'Q'
        case 0x62: { // BUILD 'b': the OrderedDict's `_metadata` (module versions), or a Parameter's state
          this.pop()
          const target = this.top()
          if (!(target instanceof Map) && !isTensorRef(target)) this.corrupt(start, `BUILD on ${describe(target)}`)
          break
        }
        default:
          throw new UserError(
            `unsupported pickle content: opcode 0x${op.toString(16).padStart(2, '0')} at byte ${start}; only torch state dicts are read`,
          )
      }
    }
    throw new UserError(`corrupt pickle: data.pkl ends at byte ${this.at} without a STOP opcode (truncated? fetch it again)`)
  }

  private call(callee: unknown, args: unknown, at: number): unknown {
    if (!(callee instanceof PickleGlobal) || !Array.isArray(args)) this.corrupt(at, 'REDUCE needs a global and an argument tuple')
    switch (callee.callable) {
      case 'OrderedDict': {
        const dict = new Map<unknown, unknown>()
        for (const pair of (args[0] ?? []) as unknown[]) if (Array.isArray(pair)) dict.set(pair[0], pair[1])
        return dict
      }
      case 'rebuild_parameter': // (data, requires_grad, backward_hooks[, state]): a Parameter is its data here
        if (!isTensorRef(args[0])) this.corrupt(at, `${callee.name} expects a tensor, got ${describe(args[0])}`)
        return args[0]
      case 'rebuild_tensor': return this.rebuildTensor(args, at)
      default:
        throw new UserError(`unsupported pickle content: a call of ${callee.name}; only torch state dicts are read`)
    }
  }

  /** `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`. */
  private rebuildTensor(args: unknown[], at: number): TorchTensorRef {
    const [storage, offset, shape, stride] = args
    if (!isStorageRef(storage)) this.corrupt(at, `_rebuild_tensor_v2 expects a storage, got ${describe(storage)}`)
    if (!isCount(offset) || !isCounts(shape) || !isCounts(stride) || shape.length !== stride.length) {
      this.corrupt(at, `_rebuild_tensor_v2 expects (offset, size, stride) of non-negative integers, got ${JSON.stringify([offset, shape, stride])}`)
    }
    return { storage, offset, shape, stride }
  }

  /** The persistent id `('storage', StorageClass, key, location, numel)`; one ref per key, however often it appears. */
  private persistentLoad(pid: unknown, at: number): TorchStorageRef {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') this.corrupt(at, `unexpected persistent id ${describe(pid)}`)
    const [, type, key, location, count] = pid
    if (!(type instanceof PickleGlobal) || type.storage === undefined) {
      throw new UserError(`unsupported pickle content: storage type ${type instanceof PickleGlobal ? type.name : describe(type)}`)
    }
    if (typeof key !== 'string' || typeof location !== 'string' || !isCount(count)) {
      this.corrupt(at, `persistent id needs (key, location, numel), got ${JSON.stringify([key, location, count])}`)
    }
    const known = this.storages.get(key)
    if (known === undefined) {
      const ref = { key, dtype: type.storage, numel: count, location }
      this.storages.set(key, ref)
      return ref
    }
    if (known.dtype !== type.storage || known.numel !== count) {
      this.corrupt(at, `storage ${key} is both ${known.dtype} × ${known.numel} and ${type.storage} × ${count}`)
    }
    return known
  }

  private stop(): unknown {
    if (this.stack.length !== 1 || this.marks.length > 0) this.corrupt(this.at - 1, `STOP with ${this.stack.length} values on the stack`)
    return this.stack[0]
  }

  private push(value: unknown): void {
    this.stack.push(value)
  }

  private pop(): unknown {
    if (this.stack.length <= (this.marks.at(-1) ?? 0)) this.corrupt(this.at - 1, 'stack underflow')
    return this.stack.pop()
  }

  private top(): unknown {
    if (this.stack.length <= (this.marks.at(-1) ?? 0)) this.corrupt(this.at - 1, 'stack underflow')
    return this.stack[this.stack.length - 1]
  }

  private popMark(at: number): unknown[] {
    const mark = this.marks.pop()
    if (mark === undefined) this.corrupt(at, 'no MARK to pop to')
    return this.stack.splice(mark)
  }

  private get(key: number, at: number): unknown {
    if (!this.memo.has(key)) this.corrupt(at, `memo key ${key} was never stored`)
    return this.memo.get(key)
  }

  private list(at: number): unknown[] {
    const list = this.top()
    if (!Array.isArray(list)) this.corrupt(at, `APPEND to ${describe(list)}`)
    return list
  }

  private dict(at: number): Map<unknown, unknown> {
    const dict = this.top()
    if (!(dict instanceof Map)) this.corrupt(at, `SETITEM on ${describe(dict)}`)
    return dict
  }

  /** Little-endian two's-complement integer of n bytes; a number when exact, else the opcode is refused. */
  private long(n: number, at: number): number {
    const bytes = this.bytes.subarray(this.take(n), this.at)
    let value = 0n
    for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i])
    if (n > 0 && bytes[n - 1] & 0x80) value -= 1n << BigInt(8 * n)
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) this.corrupt(at, `integer ${value} is out of range`)
    return Number(value)
  }

  private text(length: number): string {
    return new TextDecoder().decode(this.bytes.subarray(this.take(length), this.at))
  }

  /** A newline-terminated ASCII line (GLOBAL's module and name). */
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.at)
    if (end < 0) this.corrupt(this.at, 'GLOBAL name without a newline')
    const text = new TextDecoder().decode(this.bytes.subarray(this.at, end))
    this.at = end + 1
    return text
  }

  private u8(): number {
    return this.bytes[this.take(1)]
  }

  private u32(): number {
    return this.data.getUint32(this.take(4), true)
  }

  private u64(): number {
    const value = this.data.getBigUint64(this.take(8), true)
    if (value > BigInt(this.bytes.length)) this.corrupt(this.at - 8, `length ${value} is past the end`)
    return Number(value)
  }

  /** Advance over n argument bytes and return where they start. */
  private take(n: number): number {
    const start = this.at
    if (start + n > this.bytes.length) {
      throw new UserError(`corrupt pickle: data.pkl is cut off at byte ${this.bytes.length} (opcode argument needs ${n} bytes at ${start}); fetch it again`)
    }
    this.at += n
    return start
  }

  private corrupt(at: number, what: string): never {
    throw new UserError(`corrupt pickle: data.pkl byte ${at}: ${what}; fetch the checkpoint again`)
  }
}

function isTensorRef(x: unknown): x is TorchTensorRef {
  return typeof x === 'object' && x !== null && 'storage' in x && isStorageRef((x as TorchTensorRef).storage)
}

function isStorageRef(x: unknown): x is TorchStorageRef {
  return typeof x === 'object' && x !== null && 'key' in x && 'dtype' in x && 'numel' in x
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
}

function isCounts(x: unknown): x is number[] {
  return Array.isArray(x) && x.every(isCount)
}

function describe(x: unknown): string {
  if (x instanceof Map) return 'a dict'
  if (Array.isArray(x)) return `a tuple/list of ${x.length}`
  if (x instanceof PickleGlobal) return `global ${x.name}`
  if (isTensorRef(x)) return 'a tensor'
  if (x === null) return 'None'
  return `a ${typeof x}`
}
