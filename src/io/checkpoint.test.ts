// readCheckpoint on the golden Hugging Face checkpoints and on directories built here. Reference values (first, last,
// sequential float64 sum) come from an independent Python reader (zipfile + a restricted pickle.Unpickler + numpy).
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { bytesSource } from './checkpoint-bytes.js'
import { type StateDict, readCheckpoint } from './checkpoint.js'
import { readTorchCheckpoint } from './checkpoint-torch.js'
import { encodeSafetensors, readSafetensors, writeSafetensors } from './safetensors.js'
import type { Tensor } from './safetensors-dtypes.js'
import { parseTorchStateDict } from './torch-pickle.js'
import { readZipDirectory, readZipEntry } from './zip.js'
import { buildZip } from '../../test/helpers/zip-fixtures.js'
import { userErrorMessage } from '../../test/helpers/user-error.js'

const GOLDEN = 'test/fixtures/golden'
const bytesOf = (data: ArrayBufferView) => Buffer.from(data.buffer, data.byteOffset, data.byteLength)
const temporary: string[] = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'seedscope-checkpoint-'))
  temporary.push(dir)
  return dir
}
afterAll(() => temporary.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

const message = userErrorMessage

/** First and last element and the float64 sum taken in order, as the Python reference computed them. */
function summary(data: ArrayLike<number>): [number, number, number] {
  let sum = 0
  for (let i = 0; i < data.length; i++) sum += data[i]
  return [data[0], data[data.length - 1], sum]
}

function expectSameTensors(a: Map<string, Tensor> | StateDict, b: Map<string, Tensor> | StateDict, names = [...a.keys()]): void {
  for (const name of names) {
    const [x, y] = [a.get(name)!, b.get(name)!]
    expect([y.dtype, y.shape], name).toEqual([x.dtype, x.shape])
    expect(Buffer.compare(bytesOf(x.data), bytesOf(y.data)), name).toBe(0)
  }
}

/** fp16 statistics over float weights (README and golden.json: 63 subnormals, no zeros). */
function f16Counts(sd: StateDict, skip: (name: string) => boolean) {
  let values = 0
  let subnormal = 0
  let zero = 0
  for (const [name, { data }] of sd) {
    if (skip(name)) continue
    values += data.length
    for (const x of data) {
      if (x === 0) zero++
      else if (Math.abs(x) < 2 ** -14) subnormal++
    }
  }
  return { values, subnormal, zero }
}

describe('gpt2-tiny: model.safetensors and pytorch_model.bin agree', () => {
  const fromSafetensors = readCheckpoint(`${GOLDEN}/gpt2-tiny`)
  const dir = tempDir()
  copyFileSync(`${GOLDEN}/gpt2-tiny/pytorch_model.bin`, join(dir, 'pytorch_model.bin'))
  const fromBin = readCheckpoint(dir)

  test('model.safetensors is preferred, and omits the tied lm_head.weight', () => {
    expect(fromSafetensors.size).toBe(28)
    expect(fromSafetensors.has('lm_head.weight')).toBe(false)
    expect(fromBin.size).toBe(29)
  })

  test('identical tensors for every shared name', () => {
    expectSameTensors(fromSafetensors, fromBin)
    expect(fromSafetensors.get('transformer.h.0.attn.c_attn.weight')).toMatchObject({ dtype: 'F32', shape: [64, 192] })
  })

  test('the bin ties lm_head.weight to transformer.wte.weight (one storage, one array)', () => {
    expect(fromBin.get('lm_head.weight')!.data).toBe(fromBin.get('transformer.wte.weight')!.data)
  })

  test('values match the independent reader', () => {
    expect(summary(fromSafetensors.get('transformer.h.1.mlp.c_proj.weight')!.data)).toEqual([0.3441027104854584, -0.2253618687391281, -13.003401217385544])
  })
})

describe('gpt2-stanford-tiny: fp16 pytorch_model.bin with legacy mask buffers', () => {
  const path = `${GOLDEN}/gpt2-stanford-tiny/pytorch_model.bin`

  test('46 storages for 47 tensors: lm_head.weight reuses the key of transformer.wte.weight', () => {
    const source = bytesSource(readFileSync(path))
    const entries = readZipDirectory(source)
    expect([...entries.keys()].filter((name) => name.startsWith('pytorch_model/data/')).length).toBe(46)
    const refs = parseTorchStateDict(readZipEntry(source, entries.get('pytorch_model/data.pkl')!))
    expect(refs.size).toBe(47)
    expect(new Set([...refs.values()].map((ref) => ref.storage.key)).size).toBe(46)
    expect(refs.get('lm_head.weight')!.storage).toBe(refs.get('transformer.wte.weight')!.storage)
  })

  test('raw tensors include the uint8 causal masks and the 0-dim fp16 masked_bias', () => {
    const raw = readTorchCheckpoint(path)
    expect(raw.size).toBe(47)
    const mask = raw.get('transformer.h.1.attn.bias')!
    expect([mask.dtype, mask.shape]).toEqual(['U8', [1, 1, 128, 128]])
    expect([mask.data[0], mask.data[1], mask.data[128], mask.data[128 * 128 - 1]]).toEqual([1, 0, 1, 1])
    expect(summary(mask.data as Uint8Array)[2]).toBe((128 * 129) / 2)
    expect(raw.get('transformer.h.1.attn.masked_bias')).toEqual({ dtype: 'F16', shape: [], data: new Float32Array([-10000]) })
  })

  test('reading range by range gives the same tensors', () => {
    expectSameTensors(readTorchCheckpoint(path), readTorchCheckpoint(path, { maxInMemory: 0 }))
  })

  const sd = readCheckpoint(`${GOLDEN}/gpt2-stanford-tiny`)

  test('readCheckpoint drops the uint8 masks and keeps the float masked_bias (converters ignore it by name)', () => {
    expect(sd.size).toBe(44)
    expect([...sd.keys()].filter((name) => name.endsWith('.attn.bias'))).toEqual([])
    expect(sd.get('transformer.h.0.attn.masked_bias')).toEqual({ dtype: 'F16', shape: [], data: new Float32Array([-10000]) })
    expect([...sd.values()].every((t) => t.dtype === 'F16' && t.data instanceof Float32Array)).toBe(true)
    expect(sd.get('lm_head.weight')!.data).toBe(sd.get('transformer.wte.weight')!.data)
  })

  test('fp16 decoded exactly: 63 subnormals, no zeros, reference values', () => {
    expect(f16Counts(sd, (name) => name.endsWith('masked_bias'))).toEqual({ values: 286272, subnormal: 63, zero: 0 })
    expect(summary(sd.get('transformer.wte.weight')!.data)).toEqual([-0.0233154296875, -0.210693359375, 63.84174019098282])
    expect(summary(sd.get('transformer.h.2.mlp.c_fc.weight')!.data)).toEqual([-0.24072265625, -0.326416015625, 4.353428244590759])
  })
})

test('pythia-tiny-f16: F16 model.safetensors', () => {
  const sd = readCheckpoint(`${GOLDEN}/pythia-tiny-f16`)
  expect(sd.size).toBe(40)
  expect(sd.get('gpt_neox.embed_in.weight')).toMatchObject({ dtype: 'F16', shape: [1024, 64] })
  expect(f16Counts(sd, () => false)).toEqual({ values: 281152, subnormal: 63, zero: 0 })
  expect(summary(sd.get('gpt_neox.embed_in.weight')!.data)).toEqual([0.1058349609375, -0.132568359375, 0.25782281160354614])
  expect(summary(sd.get('gpt_neox.layers.2.attention.query_key_value.weight')!.data)).toEqual([0.20703125, 0.2425537109375, -12.369206368923187])
  expect(summary(sd.get('embed_out.weight')!.data)).toEqual([-0.093994140625, -0.1573486328125, 15.325580716133118])
})

describe('sharded checkpoints', () => {
  const single = readSafetensors(`${GOLDEN}/gpt2-tiny/model.safetensors`)
  const names = [...single.keys()]
  const half = Math.ceil(names.length / 2)
  const shards = { 'model-00001-of-00002.safetensors': names.slice(0, half), 'model-00002-of-00002.safetensors': names.slice(half) }

  function shardedDir(weightMap = Object.fromEntries(Object.entries(shards).flatMap(([file, ns]) => ns.map((n) => [n, file])))): string {
    const dir = tempDir()
    for (const [file, ns] of Object.entries(shards)) {
      writeSafetensors(join(dir, file), Object.fromEntries(ns.map((n) => [n, single.get(n)!])))
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }))
    return dir
  }

  test('two safetensors shards read like the single file', () => {
    const sd = readCheckpoint(shardedDir())
    expect(new Set(sd.keys())).toEqual(new Set(names))
    expectSameTensors(single, sd)
  })

  test('a bin index over one shard', () => {
    const dir = tempDir()
    copyFileSync(`${GOLDEN}/gpt2-tiny/pytorch_model.bin`, join(dir, 'pytorch_model-00001-of-00001.bin'))
    const raw = readTorchCheckpoint(join(dir, 'pytorch_model-00001-of-00001.bin'))
    const weightMap = Object.fromEntries([...raw.keys()].map((n) => [n, 'pytorch_model-00001-of-00001.bin']))
    writeFileSync(join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: weightMap }))
    expectSameTensors(raw, readCheckpoint(dir))
  })

  test('a missing shard names the index and the shard', () => {
    const dir = shardedDir()
    const weightMap = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')).weight_map
    weightMap[names[0]] = 'model-00003-of-00002.safetensors'
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }))
    expect(message(() => readCheckpoint(dir))).toBe(
      `${join(dir, 'model.safetensors.index.json')}: shard model-00003-of-00002.safetensors (holding ${names[0]} and 0 more) is missing (incomplete download? fetch it again)`,
    )
  })

  test('a tensor the index places in a shard that lacks it', () => {
    const weightMap = Object.fromEntries(names.map((n) => [n, 'model-00001-of-00002.safetensors']))
    const dir = shardedDir(weightMap)
    expect(message(() => readCheckpoint(dir))).toBe(
      `${join(dir, 'model-00001-of-00002.safetensors')}: tensor ${names[half]}, which model.safetensors.index.json places in this shard, is not in it (mismatched shards; fetch them again)`,
    )
  })

  test('an index without weight_map, and a shard path outside the directory', () => {
    const dir = tempDir()
    const index = join(dir, 'model.safetensors.index.json')
    writeFileSync(index, '{"metadata": {}}')
    expect(message(() => readCheckpoint(dir))).toBe(`${index}: expected an object with "weight_map": {tensor name: shard file}, found none`)
    writeFileSync(index, '{"weight_map": {"w": "../elsewhere.safetensors"}}')
    expect(message(() => readCheckpoint(dir))).toMatch(/must be a file name next to the index, found "\.\.\/elsewhere\.safetensors"$/)
  })
})

describe('dtypes', () => {
  test('BF16 and F16 widen exactly, F64 rounds to float32, integer buffers are dropped', () => {
    const dir = tempDir()
    writeFileSync(
      join(dir, 'model.safetensors'),
      encodeSafetensors({
        bf: { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0x0001]) },
        half: { dtype: 'F16', shape: [1], data: new Uint16Array([0x0001]) },
        double: { dtype: 'F64', shape: [1], data: new Float64Array([0.1]) },
        position_ids: { dtype: 'I64', shape: [1, 2], data: new BigInt64Array([0n, 1n]) },
        mask: { dtype: 'BOOL', shape: [1], data: new Uint8Array([1]) },
      }),
    )
    const sd = readCheckpoint(dir)
    expect([...sd.keys()].sort()).toEqual(['bf', 'double', 'half'])
    expect(sd.get('bf')).toEqual({ dtype: 'BF16', shape: [2], data: new Float32Array([1, 2 ** -133]) })
    expect(sd.get('half')!.data[0]).toBe(2 ** -24)
    expect(sd.get('double')).toEqual({ dtype: 'F64', shape: [1], data: new Float32Array([Math.fround(0.1)]) })
  })

  test('a float dtype seedscope cannot decode is an error, not a dropped buffer', () => {
    const dir = tempDir()
    const header = Buffer.from('{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}')
    writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([Buffer.from(new BigUint64Array([BigInt(header.length)]).buffer), header, Buffer.from([1, 2])]))
    expect(message(() => readCheckpoint(dir))).toBe(
      `${join(dir, 'model.safetensors')}: tensor w has dtype F8_E4M3; seedscope reads F32, F16, BF16 and F64 weights (convert the checkpoint to one of these)`,
    )
  })
})

describe('bad checkpoints: every error names the file', () => {
  const model = readFileSync(`${GOLDEN}/gpt2-tiny/model.safetensors`)
  const bin = readFileSync(`${GOLDEN}/gpt2-tiny/pytorch_model.bin`)

  function withFile(name: string, bytes: Uint8Array): { dir: string; path: string } {
    const dir = tempDir()
    writeFileSync(join(dir, name), bytes)
    return { dir, path: join(dir, name) }
  }

  test('no checkpoint in the directory, or no directory', () => {
    const dir = tempDir()
    expect(message(() => readCheckpoint(dir))).toBe(`${dir}: no model.safetensors or pytorch_model.bin found (expected a Hugging Face checkpoint directory)`)
    expect(message(() => readCheckpoint(join(dir, 'absent')))).toBe(`${join(dir, 'absent')}: not a directory (expected a Hugging Face checkpoint directory)`)
  })

  test('header length past the end of model.safetensors', () => {
    const bytes = new Uint8Array(1024)
    new DataView(bytes.buffer).setBigUint64(0, 1844n, true)
    const { dir, path } = withFile('model.safetensors', bytes)
    expect(message(() => readCheckpoint(dir))).toBe(`${path}: header length 1844 exceeds file size 1024 (truncated download? fetch it again)`)
  })

  test('a truncated model.safetensors', () => {
    const { dir, path } = withFile('model.safetensors', model.subarray(0, model.length - 100))
    expect(message(() => readCheckpoint(dir))).toMatch(new RegExp(`^${path}: header entry ".+": data_offsets \\[\\d+, \\d+\\] run past the data region \\(\\d+ bytes\\) \\(truncated download\\? fetch it again\\)$`))
  })

  test('a model.safetensors whose shape disagrees with its offsets', () => {
    const bytes = Buffer.from(model)
    const at = bytes.indexOf('"shape":[192]')
    bytes.write('"shape":[193]', at)
    const { dir, path } = withFile('model.safetensors', bytes)
    expect(message(() => readCheckpoint(dir))).toBe(
      `${path}: header entry "transformer.h.0.attn.c_attn.bias": shape [193] of F32 needs 772 bytes, but data_offsets [0, 768] hold 768 (corrupt header; fetch it again)`,
    )
  })

  test('a truncated pytorch_model.bin', () => {
    const { dir, path } = withFile('pytorch_model.bin', bin.subarray(0, bin.length >> 1))
    expect(message(() => readCheckpoint(dir))).toMatch(new RegExp(`^${path}: not a zip archive: no end-of-central-directory record`))
  })

  test('a pytorch_model.bin with a bad central directory', () => {
    const bytes = Buffer.from(bin)
    const cdOffset = bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]))
    bytes[cdOffset + 3] = 0x09
    const { dir, path } = withFile('pytorch_model.bin', bytes)
    expect(message(() => readCheckpoint(dir))).toBe(
      `${path}: bad central directory: entry 0 of 30 at byte ${cdOffset} starts with 0x09014b50, expected signature 0x02014b50; the archive is corrupt or truncated (fetch it again)`,
    )
  })

  test('a pytorch_model.bin whose pickle calls a forbidden global', () => {
    const pkl = [0x80, 2, 0x63, ...Buffer.from('os\nsystem\n'), 0x58, 4, 0, 0, 0, ...Buffer.from('echo'), 0x85, 0x52, 0x2e]
    const archive = buildZip([{ name: 'evil/data.pkl', data: new Uint8Array(pkl) }, { name: 'evil/version', data: new Uint8Array([0x33]) }], true)
    const { dir, path } = withFile('pytorch_model.bin', archive)
    expect(message(() => readCheckpoint(dir))).toBe(`${path}: unsupported pickle content: global os.system; only torch state dicts are read`)
  })

  test('a storage missing from the archive', () => {
    const source = bytesSource(bin)
    const entries = readZipDirectory(source)
    const kept = [...entries.values()].filter((e) => e.name !== 'pytorch_model/data/3')
    const archive = buildZip(kept.map((e) => ({ name: e.name.replace('pytorch_model/', 'renamed/'), data: readZipEntry(source, e) })), true)
    const { dir, path } = withFile('pytorch_model.bin', archive)
    expect(message(() => readCheckpoint(dir))).toMatch(new RegExp(`^${path}: storage renamed/data/3 of tensor \\S+ is missing from the archive`))
  })

  test('a legacy (torch < 1.6) pickle file', () => {
    const { dir, path } = withFile('pytorch_model.bin', new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46]))
    expect(message(() => readCheckpoint(dir))).toBe(
      `${path}: legacy torch.save format (torch < 1.6, not a zip archive) is not supported; re-save it with torch ≥ 1.6 or convert it to safetensors`,
    )
  })
})
