import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { fileMapping, jsKernels } from '../stats/kernels.js'
import { readActivationBlobs, readActivationBlock, readActivationShardInfo, writeActivationShard, type ShardLayout } from './activation-store.js'
import { readPlainBlobs, releasePlainBlobs, TableWriter } from './tables.js'
import { contentHashOf } from './content-hash.js'
import { decodeF16, toFloat16Bits } from './safetensors-dtypes.js'

const dir = mkdtempSync(join(tmpdir(), 'seedscope-acts-'))

function layout(dtype: ShardLayout['dtype']): { layout: ShardLayout; acts: Float32Array } {
  const rows = [4, 5, 9]
  const positions = 7
  const valid = new Uint8Array(rows.length * positions).map((_, i) => (i % positions === 0 || i % 5 === 3 ? 0 : 1))
  const tokens = valid.reduce((a, b) => a + b, 0)
  const nLayers = 3
  const dMlp = 200 // 600 neurons: three row groups, the last one partial
  const acts = new Float32Array(nLayers * dMlp * tokens).map((_, i) => Math.sin(i * 0.37) * 7 + (i % 11) / 3)
  return { layout: { nLayers, dMlp, rows, positions, valid, dtype, site: 'blocks.{l}.mlp.hook_post' }, acts }
}

test('a shard whose row groups are large (written in parts, past the page cache where it can) reads back bit for bit, and its hash is the file’s', async () => {
  const positions = 300 // 299 valid tokens: 300 KB per row group of 256 neurons, past the writer's 64 KB threshold
  const valid = new Uint8Array(positions).map((_, i) => (i === 0 ? 0 : 1))
  const l: ShardLayout = { nLayers: 2, dMlp: 300, rows: [0], positions, valid, dtype: 'float32', site: 'blocks.{l}.mlp.hook_post' }
  const acts = new Float32Array(600 * 299).map((_, i) => Math.cos(i * 0.11) * 3)
  const path = join(dir, 'large.parquet')
  const written = await writeActivationShard(path, l, acts)
  expect(written.hash).toBe(contentHashOf(readFileSync(path)))
  const info = await readActivationShardInfo(path)
  expect(await readActivationBlock(path, info, 0, 600)).toEqual(acts)
})

describe.each(['float32', 'float16'] as const)('activation shard (%s)', (dtype) => {
  test('round trip: metadata, every block, any neuron range', async () => {
    const { layout: l, acts } = layout(dtype)
    const path = join(dir, `${dtype}.parquet`)
    const written = await writeActivationShard(path, l, acts)
    expect(written.bytes).toBeGreaterThan(0)
    const info = await readActivationShardInfo(path)
    expect(info.rows).toEqual(l.rows)
    expect([...info.valid]).toEqual([...l.valid])
    expect(info.tokens).toBe(l.valid.reduce((a, b) => a + b, 0))
    for (const [start, end] of [[0, 600], [250, 262], [599, 600]]) {
      const block = await readActivationBlock(path, info, start, end)
      for (let i = 0; i < block.length; i++) {
        const expected = acts[start * info.tokens + i]
        const want = dtype === 'float32' ? expected : decodeF16(Uint16Array.of(toFloat16Bits(expected)))[0]
        expect(block[i]).toBe(Math.fround(want))
      }
    }
  })
})

test('float16 storage refuses values it cannot hold instead of writing Inf, and leaves no file behind', async () => {
  const { layout: l, acts } = layout('float16')
  acts[300 * (acts.length / 600) + 5] = 70000 // neuron 300: in the second row group, after the first was written
  await expect(writeActivationShard(join(dir, 'overflow.parquet'), l, acts)).rejects.toThrow(/neuron 1\.\d+ does not fit float16.*extract\.dtype: float32/)
  expect(readdirSync(dir).filter((f) => f.includes('overflow'))).toEqual([])
})

test('float16 conversion rounds to the nearest representable value (ties to even)', () => {
  const decode = (bits: number) => decodeF16(Uint16Array.of(bits))[0]
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround((Math.random() - 0.5) * 2 ** (Math.random() * 40 - 26))
    const bits = toFloat16Bits(x)
    const err = Math.abs(decode(bits) - x)
    for (const neighbour of [bits - 1, bits + 1]) {
      if ((neighbour & 0x7c00) === 0x7c00 || neighbour < 0 || (neighbour ^ bits) & 0x8000) continue
      expect(err).toBeLessThanOrEqual(Math.abs(decode(neighbour) - x))
    }
  }
  expect(toFloat16Bits(1 + 2 ** -11)).toBe(0x3c00) // tie → even mantissa
  expect(toFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02)
  expect(toFloat16Bits(2 ** -24)).toBe(1) // smallest subnormal
  expect(toFloat16Bits(65504)).toBe(0x7bff)
  expect(toFloat16Bits(-0)).toBe(0x8000)
})

describe('reading blobs in place', () => {
  test('the blobs a shard holds decode to the same values as the full reader, any range, reusing memory', async () => {
    for (const dtype of ['float32', 'float16'] as const) {
      const { layout: l, acts } = layout(dtype)
      const path = join(dir, `blobs-${dtype}.parquet`)
      await writeActivationShard(path, l, acts)
      const info = await readActivationShardInfo(path)
      let reuse
      for (const [start, end] of [[0, 600], [250, 262], [199, 401]]) {
        const blobs = readActivationBlobs(path, info, start, end, reuse)!
        expect(blobs.bytesPerValue).toBe(dtype === 'float32' ? 4 : 2)
        const rows = end - start
        const decoded = new Float32Array(rows * info.tokens)
        jsKernels.shiftBlobs(blobs.bytes, blobs.offsets, blobs.bytesPerValue, info.tokens, new Float64Array(rows), decoded, new Float64Array(rows), new Float64Array(rows))
        expect(decoded).toEqual(await readActivationBlock(path, info, start, end))
        reuse = blobs
      }
    }
  })

  test.runIf(fileMapping)('mapped (native kernels) and read, the same blobs; a mapping is unmapped when reused or released', async () => {
    const { layout: l, acts } = layout('float16')
    const path = join(dir, 'mapped.parquet')
    await writeActivationShard(path, l, acts)
    const file = readFileSync(path)
    let previous: Uint8Array | undefined
    for (const [start, end] of [[0, 600], [250, 262], [401, 600]]) {
      const read = readPlainBlobs(path, 'acts', start, end, undefined, null)!
      const mapped = readPlainBlobs(path, 'acts', start, end, previous)!
      if (previous) expect(previous.length).toBe(0) // the earlier mapping, given as reuse, is gone
      expect(mapped.lengths).toEqual(read.lengths)
      for (let i = 0; i < end - start; i++) {
        const blob = (r: typeof read) => r.bytes.subarray(r.offsets[i], r.offsets[i] + r.lengths[i])
        expect(Buffer.from(blob(mapped)).equals(Buffer.from(blob(read)))).toBe(true)
      }
      // and the mapping is the file itself: its first blob is somewhere in the file's bytes
      const first = mapped.bytes.subarray(mapped.offsets[0], mapped.offsets[0] + mapped.lengths[0])
      expect(file.indexOf(Buffer.from(first))).toBeGreaterThan(0)
      previous = mapped.bytes
    }
    releasePlainBlobs(previous!)
    expect(previous!.length).toBe(0)
  })

  // The pages must leave the process at unmap, not when V8 collects the buffer: V8 does not count mapped bytes as
  // memory, so a long correlate held every shard it had read (8.6 GB resident for the 4-seed demo) until it did.
  test.runIf(fileMapping)('an unmapped view\'s pages leave the process at once', () => {
    const path = join(dir, 'pages.bin'), bytes = 32 << 20
    writeFileSync(path, Buffer.alloc(bytes, 7))
    const residentFile = () => Number(/RssFile:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024
    const fd = openSync(path, 'r')
    try {
      const view = fileMapping!.map(fd, 0, bytes)
      let sum = 0
      for (let i = 0; i < bytes; i += 4096) sum += view[i]   // every page into the process
      expect(sum).toBe(7 * (bytes / 4096))
      const mapped = residentFile()
      fileMapping!.unmap(view)
      expect(view.length).toBe(0)
      expect(mapped - residentFile()).toBeGreaterThan(bytes * 0.9)
    } finally {
      closeSync(fd)
    }
  })

  test('a footer pointing past the end of the file is a clear error, mapped or read (a mapped read there would crash)', async () => {
    const { layout: l, acts } = layout('float32')
    const path = join(dir, 'cut.parquet')
    await writeActivationShard(path, l, acts)
    const file = readFileSync(path)
    writeFileSync(path, Buffer.concat([file.subarray(0, 4), file.subarray(4 + 20_000)])) // footer intact, data cut short
    expect(() => readPlainBlobs(path, 'acts', 0, 600)).toThrow(path)
    expect(() => readPlainBlobs(path, 'acts', 0, 600, undefined, null)).toThrow(path)
  })

  test('a compressed or dictionary-encoded column is not read in place (the caller decodes it)', () => {
    const path = join(dir, 'snappy.parquet')
    const writer = new TableWriter(path, { codec: 'SNAPPY', columns: [{ name: 'acts', type: 'BYTE_ARRAY' }] })
    writer.append({ acts: [Uint8Array.of(1, 2, 3, 4), Uint8Array.of(5, 6, 7, 8)] })
    writer.close()
    expect(readPlainBlobs(path, 'acts', 0, 2)).toBeUndefined()
  })

  test('a truncated shard is a clear error naming the file', async () => {
    const { layout: l, acts } = layout('float32')
    const path = join(dir, 'truncated.parquet')
    await writeActivationShard(path, l, acts)
    const info = await readActivationShardInfo(path)
    const { truncateSync } = await import('node:fs')
    truncateSync(path, 5000)
    expect(() => readActivationBlobs(path, info, 0, 600)).toThrow(path)
  })
})
