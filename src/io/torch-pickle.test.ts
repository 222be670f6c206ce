// Pickles built opcode by opcode, in the shapes torch.save writes (see `python -m pickletools data.pkl`).
import { describe, expect, test } from 'vitest'
import { type TorchTensorRef, gatherTensor, parseTorchStateDict, unpickle } from './torch-pickle.js'
import { userErrorMessage } from '../../test/helpers/user-error.js'

const ascii = (s: string) => [...Buffer.from(s)]
const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff]

const PROTO2 = [0x80, 2]
const STOP = [0x2e]
const MARK = [0x28]
const global = (module: string, name: string) => [0x63, ...ascii(`${module}\n${name}\n`)]
const str = (s: string) => [0x58, ...u32(Buffer.byteLength(s)), ...ascii(s)] // BINUNICODE
const int = (n: number) => (n < 256 ? [0x4b, n] : n < 65536 ? [0x4d, n & 0xff, n >> 8] : [0x4a, ...u32(n)])
const tuple = (...items: number[][]) => {
  const body = items.flat()
  return [[0x29], [...body, 0x85], [...body, 0x86], [...body, 0x87]][items.length] ?? [...MARK, ...body, 0x74]
}
const orderedDict = () => [...global('collections', 'OrderedDict'), 0x29, 0x52] // GLOBAL, EMPTY_TUPLE, REDUCE
const storage = (type: string, key: string, numel: number) => [...tuple(str('storage'), global('torch', type), str(key), str('cpu'), int(numel)), 0x51]
const tensor = (store: number[], offset: number, size: number[], stride: number[]) => [
  ...global('torch._utils', '_rebuild_tensor_v2'),
  ...tuple(store, int(offset), tuple(...size.map(int)), tuple(...stride.map(int)), [0x89], orderedDict()),
  0x52,
]
/** `OrderedDict([...])` with SETITEMS, then BUILD with a `_metadata` state as torch writes it. */
const stateDict = (...entries: [string, number[]][]) => [
  ...PROTO2,
  ...orderedDict(),
  ...MARK,
  ...entries.flatMap(([name, value]) => [...str(name), ...value]),
  0x75,
  ...[0x7d, ...str('_metadata'), ...orderedDict(), 0x73], // {'_metadata': OrderedDict()}
  0x62,
  ...STOP,
]
const pickle = (...parts: number[][]) => new Uint8Array(parts.flat())

const message = userErrorMessage

describe('parseTorchStateDict', () => {
  const floats = storage('FloatStorage', '0', 6)
  const sd = parseTorchStateDict(
    pickle(
      stateDict(
        ['w', tensor(floats, 0, [2, 3], [3, 1])],
        ['w_t', tensor(floats, 0, [3, 2], [1, 3])], // a transposed view of the same storage
        ['tail', tensor(floats, 4, [2], [1])],
        ['scalar', tensor(floats, 5, [], [])], // 0-dim: size () and stride () as EMPTY_TUPLE
        ['mask', tensor(storage('ByteStorage', '1', 4), 0, [1, 1, 2, 2], [4, 4, 2, 1])],
      ),
    ),
  )
  const values = new Float32Array([0, 1, 2, 3, 4, 5])

  test('reads names, storages, offsets, sizes and strides in order', () => {
    expect([...sd.keys()]).toEqual(['w', 'w_t', 'tail', 'scalar', 'mask'])
    expect(sd.get('w')).toEqual({ storage: { key: '0', dtype: 'F32', numel: 6, location: 'cpu' }, offset: 0, shape: [2, 3], stride: [3, 1] })
    expect(sd.get('scalar')).toMatchObject({ offset: 5, shape: [], stride: [] })
    expect(sd.get('mask')!.storage).toEqual({ key: '1', dtype: 'U8', numel: 4, location: 'cpu' })
  })

  test('tensors naming the same storage key share one storage ref', () => {
    expect(sd.get('w_t')!.storage).toBe(sd.get('w')!.storage)
  })

  test('gatherTensor honours offset and stride; contiguous tensors are views', () => {
    const w = gatherTensor(sd.get('w')!, values)
    expect([...w]).toEqual([0, 1, 2, 3, 4, 5])
    expect(w.buffer).toBe(values.buffer)
    expect([...gatherTensor(sd.get('w_t')!, values)]).toEqual([0, 3, 1, 4, 2, 5])
    expect([...gatherTensor(sd.get('tail')!, values)]).toEqual([4, 5])
    expect([...gatherTensor(sd.get('scalar')!, values)]).toEqual([5])
  })

  test('gatherTensor copies broadcast (stride 0) and 3-d strided views', () => {
    const ref = (offset: number, shape: number[], stride: number[]): TorchTensorRef => ({ storage: sd.get('w')!.storage, offset, shape, stride })
    expect([...gatherTensor(ref(1, [2, 3], [0, 1]), values)]).toEqual([1, 2, 3, 1, 2, 3])
    // storage as [2, 3] → permute to [3, 1, 2] with a size-1 axis of arbitrary stride
    expect([...gatherTensor(ref(0, [3, 1, 2], [1, 99, 3]), values)]).toEqual([0, 3, 1, 4, 2, 5])
    const ints = new BigInt64Array([10n, 11n, 12n, 13n])
    expect([...gatherTensor({ ...ref(0, [2, 2], [1, 2]), storage: { key: 'i', dtype: 'I64', numel: 4, location: 'cpu' } }, ints)]).toEqual([10n, 12n, 11n, 13n])
  })

  test('gatherTensor refuses a tensor that reaches past its storage', () => {
    const ref: TorchTensorRef = { storage: sd.get('w')!.storage, offset: 4, shape: [2, 2], stride: [2, 1] }
    expect(message(() => gatherTensor(ref, values))).toMatch(/^tensor at offset 4 with size \(2, 2\) and stride \(2, 1\) reaches element 7, past the 6 of storage 0/)
  })

  test('memo opcodes: BINPUT/BINGET and LONG_BINPUT/LONG_BINGET', () => {
    const pid = tuple(str('storage'), global('torch', 'HalfStorage'), str('k'), str('cpu'), int(2))
    const args = (store: number[]) => tuple(store, int(0), tuple(int(2)), tuple(int(1)), [0x89], orderedDict())
    const refs = parseTorchStateDict(
      pickle(
        PROTO2,
        orderedDict(),
        MARK,
        str('a'),
        global('torch._utils', '_rebuild_tensor_v2'),
        [0x72, ...u32(300)], // LONG_BINPUT 300: the rebuild function
        args([...pid, 0x71, 5, 0x51]), // BINPUT 5: the persistent id, then BINPERSID
        [0x52],
        str('b'),
        [0x6a, ...u32(300)], // LONG_BINGET 300
        args([0x68, 5, 0x51]), // BINGET 5, BINPERSID: the same storage again (a tied weight)
        [0x52],
        [0x75],
        STOP,
      ),
    )
    expect([...refs.keys()]).toEqual(['a', 'b'])
    expect(refs.get('b')!.storage).toBe(refs.get('a')!.storage)
    expect(refs.get('a')!.storage).toEqual({ key: 'k', dtype: 'F16', numel: 2, location: 'cpu' })
  })

  test('protocol 4: FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE, a plain dict, NEWTRUE and _rebuild_parameter', () => {
    const short = (s: string) => [0x8c, s.length, ...ascii(s)]
    const stackGlobal = (module: string, name: string) => [...short(module), 0x94, ...short(name), 0x94, 0x93, 0x94]
    const rebuilt = [
      ...stackGlobal('torch._utils', '_rebuild_tensor_v2'),
      ...tuple([...tuple(short('storage'), stackGlobal('torch', 'BFloat16Storage'), short('0'), short('cuda:0'), int(3)), 0x51], int(1), tuple(int(2)), tuple(int(1)), [0x88], [...stackGlobal('collections', 'OrderedDict'), 0x29, 0x52]),
      0x52,
    ]
    // _rebuild_parameter(data, requires_grad, backward_hooks)
    const param = [...stackGlobal('torch._utils', '_rebuild_parameter'), ...tuple(rebuilt, [0x88], [0x7d]), 0x52]
    const body = [0x7d, 0x94, ...short('p'), 0x94, ...param, 0x73, ...STOP]
    const bytes = pickle([0x80, 4, 0x95, ...u32(body.length), 0, 0, 0, 0], body)
    expect(parseTorchStateDict(bytes).get('p')).toEqual({
      storage: { key: '0', dtype: 'BF16', numel: 3, location: 'cuda:0' },
      offset: 1,
      shape: [2],
      stride: [1],
    })
  })

  test('other values: lists, None, floats, big and negative ints, booleans', () => {
    const value = unpickle(
      pickle(PROTO2, [0x5d], int(1), [0x61], MARK, [0x4e, 0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0], [0x8a, 5, 0, 0, 0, 0, 0x80], [0x4a, ...u32(-2 >>> 0)], [0x88, 0x89, 0x65], STOP),
    )
    expect(value).toEqual([1, null, 1.5, -(2 ** 39), -2, true, false])
  })
})

describe('refused and corrupt pickles', () => {
  test.each([
    ['os.system (the classic exploit)', pickle(PROTO2, global('os', 'system'), str('echo pwned'), [0x85, 0x52], STOP), 'unsupported pickle content: global os.system; only torch state dicts are read'],
    ['builtins.eval through STACK_GLOBAL', pickle([0x80, 4, 0x8c, 8], ascii('builtins'), [0x8c, 4], ascii('eval'), [0x93], STOP), 'unsupported pickle content: global builtins.eval; only torch state dicts are read'],
    ['a call of a storage class', pickle(PROTO2, global('torch', 'FloatStorage'), [0x29, 0x52], STOP), 'unsupported pickle content: a call of torch.FloatStorage; only torch state dicts are read'],
    ['an opcode torch never writes (STRING)', pickle(PROTO2, ascii("S'x'\n"), STOP), 'unsupported pickle content: opcode 0x53 at byte 2; only torch state dicts are read'],
  ])('%s', (_, bytes, expected) => {
    expect(message(() => parseTorchStateDict(bytes))).toBe(expected)
  })

  test('torch.storage._load_from_bytes says why and what to do', () => {
    const bytes = pickle(PROTO2, global('torch.storage', '_load_from_bytes'), STOP)
    expect(message(() => parseTorchStateDict(bytes))).toMatch(/^unsupported pickle content: global torch\.storage\._load_from_bytes .*re-save with torch ≥ 1\.6 or convert to safetensors\)$/)
  })

  test.each([
    ['cut off inside an argument', pickle(PROTO2, [0x58, 10, 0, 0, 0], ascii('abc')), /^corrupt pickle: data\.pkl is cut off at byte 10/],
    ['no STOP', pickle(PROTO2, [0x7d]), /^corrupt pickle: data\.pkl ends at byte 3 without a STOP opcode/],
    ['a memo key never stored', pickle(PROTO2, [0x68, 9], STOP), /^corrupt pickle: data\.pkl byte 2: memo key 9 was never stored/],
    ['a pop past the mark', pickle(PROTO2, [0x7d], MARK, [0x73], STOP), /^corrupt pickle: data\.pkl byte \d+: stack underflow/],
    ['a persistent id that is not a storage', pickle(PROTO2, str('x'), [0x51], STOP), /^corrupt pickle: data\.pkl byte 8: unexpected persistent id a string/],
    ['a top-level tuple', pickle(PROTO2, [0x29], STOP), /^data\.pkl holds a tuple\/list of 0, not a state dict/],
    ['a training checkpoint', pickle(PROTO2, [0x7d], str('optimizer'), [0x7d, 0x73], STOP), /^data\.pkl entry "optimizer" is a dict, not a tensor; this looks like a training checkpoint/],
  ])('%s', (_, bytes, expected) => {
    expect(message(() => parseTorchStateDict(bytes))).toMatch(expected)
  })
})
