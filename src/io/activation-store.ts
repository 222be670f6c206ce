// Activation shards: one Parquet file per (seed, shard of token rows), neuron-major, so the correlation stage
// reads a block of neurons × tokens as one contiguous row group at GEMM speed.
//
// Layout (chosen by measurement, see README "Libraries"): one row per neuron with columns `layer` INT32,
// `neuron` INT32 and `acts` BYTE_ARRAY = the neuron's activation at every valid token of the shard, as a
// little-endian float32 (or IEEE float16) blob; one row group per block of 256 neurons. Which token positions
// are valid (SPEC §2: not BOS, not a skipped token) is stored once per shard, in the key-value metadata, as the
// shard's row numbers and a bitmask over (row, position).
import { type BlobRows, kernels } from '../stats/kernels.js'
import { decodeF16, littleEndianBytes } from './safetensors-dtypes.js'
import { readPlainBlobs, readTable, readTableInfo, releasePlainBlobs, TableWriter } from './tables.js'

export const NEURONS_PER_GROUP = 256

export type ActivationDtype = 'float32' | 'float16'

export interface ShardLayout {
  nLayers: number
  dMlp: number
  rows: readonly number[] // token-row numbers (rows.parquet `row`) in shard order
  positions: number // tokens per row (ctx)
  valid: Uint8Array // [rows · positions], 1 where the token enters correlation
  dtype: ActivationDtype
  site: string // e.g. blocks.{l}.mlp.hook_post
  neurons?: readonly number[] // a subset of global indices l·d_mlp + n, in row order (default: every neuron)
  metadata?: Record<string, string> // more key-value metadata, e.g. why these neurons were chosen
}

export interface ShardInfo extends ShardLayout {
  tokens: number // valid tokens = length of each neuron's blob
}

/**
 * Write `acts` ([neurons = nLayers·d_mlp, valid tokens], neuron-major) as one shard. Float16 storage refuses
 * values it cannot represent instead of writing ±Inf (the reference study lost data that way). The write yields
 * to the event loop between row groups: a GPT-2-small shard is ~600 MB, and a model worker waiting for its next
 * batch must not wait for all of it.
 */
export async function writeActivationShard(path: string, layout: ShardLayout, acts: Float32Array): Promise<{ bytes: number; hash: string }> {
  const global = layout.neurons ?? Array.from({ length: layout.nLayers * layout.dMlp }, (_, g) => g)
  const neurons = global.length
  const tokens = countValid(layout.valid)
  if (acts.length !== neurons * tokens) throw new Error(`activation shard ${path}: ${acts.length} values for ${neurons} neurons × ${tokens} tokens`)
  const writer = new TableWriter(path, {
    // Activation blobs are float mantissas: SNAPPY saves nothing on them and costs a third of the write time,
    // and min/max statistics of opaque blobs help no reader.
    codec: 'UNCOMPRESSED',
    statistics: false,
    direct: true, // hundreds of MB written once: past the page cache (src/io/direct-write.ts)
    columns: [
      { name: 'layer', type: 'INT32' },
      { name: 'neuron', type: 'INT32' },
      { name: 'acts', type: 'BYTE_ARRAY', plain: true }, // every blob is unique: a dictionary never pays
    ],
    metadata: {
      'seedscope.site': layout.site,
      'seedscope.dtype': layout.dtype,
      'seedscope.n_layers': String(layout.nLayers),
      'seedscope.d_mlp': String(layout.dMlp),
      'seedscope.tokens': String(tokens),
      'seedscope.positions': String(layout.positions),
      'seedscope.rows': JSON.stringify(layout.rows),
      'seedscope.valid': Buffer.from(packBits(layout.valid)).toString('base64'),
      'seedscope.neurons': layout.neurons ? JSON.stringify(layout.neurons) : 'all',
      ...layout.metadata,
      'seedscope.layout': 'one row per neuron; acts = little-endian blob of the valid tokens in (row, position) order',
    },
  })
  // A row group's acts column, PLAIN-encoded: each neuron's blob behind its u32 length, built in one buffer
  // (float16 encoded straight into it) that goes to the file as it is.
  const bytesPerValue = layout.dtype === 'float16' ? 2 : 4
  const stride = 4 + tokens * bytesPerValue
  const page = new Uint8Array(Math.min(neurons, NEURONS_PER_GROUP) * stride)
  const pageView = new DataView(page.buffer)
  try {
    for (let start = 0; start < neurons; start += NEURONS_PER_GROUP) {
      const end = Math.min(neurons, start + NEURONS_PER_GROUP)
      const layer = new Int32Array(end - start)
      const neuron = new Int32Array(end - start)
      for (let row = start; row < end; row++) {
        const at = (row - start) * stride
        layer[row - start] = Math.floor(global[row] / layout.dMlp)
        neuron[row - start] = global[row] % layout.dMlp
        pageView.setUint32(at, tokens * bytesPerValue, true)
        const values = acts.subarray(row * tokens, (row + 1) * tokens)
        if (layout.dtype === 'float16') encodeFloat16(values, page, at + 4, global[row], layout.dMlp, path)
        else page.set(littleEndianBytes(values), at + 4)
      }
      const rows = end - start
      writer.appendEncoded(rows, { layer: littleEndianBytes(layer), neuron: littleEndianBytes(neuron), acts: page.subarray(0, rows * stride) })
      await new Promise(setImmediate)
    }
  } catch (error) {
    writer.abort()
    throw error
  }
  return writer.close()
}

export async function readActivationShardInfo(path: string): Promise<ShardInfo> {
  const info = await readTableInfo(path)
  const m = info.metadata
  const rows = JSON.parse(m['seedscope.rows']) as number[]
  const positions = Number(m['seedscope.positions'])
  return {
    nLayers: Number(m['seedscope.n_layers']),
    dMlp: Number(m['seedscope.d_mlp']),
    rows,
    positions,
    valid: unpackBits(Buffer.from(m['seedscope.valid'], 'base64'), rows.length * positions),
    dtype: m['seedscope.dtype'] as ActivationDtype,
    site: m['seedscope.site'],
    tokens: Number(m['seedscope.tokens']),
    neurons: m['seedscope.neurons'] && m['seedscope.neurons'] !== 'all' ? (JSON.parse(m['seedscope.neurons']) as number[]) : undefined,
  }
}

/**
 * Rows [start, end) of a shard (= global neurons [start, end) unless it holds a subset) as they lie in the file:
 * one read per row group, no decoding (the correlate stage shifts them straight into its GEMM operand).
 * Undefined when the file's layout needs decoding (e.g. a shard written compressed); use readActivationBlock.
 */
export function readActivationBlobs(path: string, info: ShardInfo, start: number, end: number, reuse?: BlobRows): BlobRows | undefined {
  const blobs = readPlainBlobs(path, 'acts', start, end, reuse?.bytes)
  if (!blobs) return undefined
  const bytesPerValue = info.dtype === 'float16' ? 2 : 4
  blobs.lengths.forEach((length, i) => checkBlobLength(path, start + i, length, info.tokens, bytesPerValue))
  return { bytes: blobs.bytes, offsets: blobs.offsets, bytesPerValue }
}

/**
 * Rows [start, end) of a shard as they lie in the file when the layout allows (no decoding, no copy), else
 * decoded. `reuse`: the previous result of this reader, whose memory it may overwrite.
 */
export async function readActivationRows(path: string, info: ShardInfo, start: number, end: number, reuse?: BlobRows | Float32Array): Promise<BlobRows | Float32Array> {
  const blobs = readActivationBlobs(path, info, start, end, reuse instanceof Float32Array ? undefined : reuse)
  return blobs ?? (await readActivationBlock(path, info, start, end))
}

/** Rows [start, end) of a shard, decoded: [end − start, tokens], neuron-major. */
export async function readActivationBlock(path: string, info: ShardInfo, start: number, end: number): Promise<Float32Array> {
  const width = info.dtype === 'float16' ? 2 : 4
  const blobs = readActivationBlobs(path, info, start, end) // lengths checked there
  const views = blobs
    ? Array.from(blobs.offsets, (at) => blobs.bytes.subarray(at, at + info.tokens * width))
    : (await readTable(path, { columns: ['acts'], rowStart: start, rowEnd: end })).map((record, i) => {
        const blob = record.acts as Uint8Array
        checkBlobLength(path, start + i, blob.length, info.tokens, width)
        return blob
      })
  const out = new Float32Array((end - start) * info.tokens)
  const outBytes = new Uint8Array(out.buffer)
  views.forEach((blob, i) => {
    // float32 on a little-endian machine: copy the bytes as they are (blobs sit at any byte offset in a page,
    // so viewing them as Float32Array would need a per-element DataView read: 10× slower).
    if (width === 4 && LITTLE_ENDIAN) outBytes.set(blob, i * info.tokens * 4)
    else out.set(width === 2 ? fromFloat16Bytes(blob) : fromLittleEndianFloat32(blob), i * info.tokens)
  })
  if (blobs) releasePlainBlobs(blobs.bytes)
  return out
}

function checkBlobLength(path: string, row: number, length: number, tokens: number, width: number): void {
  if (length !== tokens * width) throw new Error(`${path}: neuron ${row} holds ${length / width} values, expected ${tokens}; the shard is corrupt, rerun extract`)
}

export function countValid(valid: Uint8Array): number {
  let n = 0
  for (let i = 0; i < valid.length; i++) n += valid[i]
  return n
}

function packBits(valid: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(valid.length / 8))
  for (let i = 0; i < valid.length; i++) if (valid[i]) out[i >> 3] |= 1 << (i & 7)
  return out
}

function unpackBits(bits: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (bits[i >> 3] >> (i & 7)) & 1
  return out
}

// Typed arrays use the platform's byte order; Parquet blobs are little-endian (as are all machines we run on,
// but say so rather than assume it).
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

function fromLittleEndianFloat32(bytes: Uint8Array): Float32Array {
  if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return Float32Array.from({ length: bytes.byteLength / 4 }, (_, i) => view.getFloat32(i * 4, true))
}

/**
 * One neuron's values as little-endian binary16 into out at byteOffset (even), refusing values float16 cannot
 * hold instead of writing ±Inf.
 */
function encodeFloat16(values: Float32Array, out: Uint8Array, byteOffset: number, neuron: number, dMlp: number, path: string): void {
  const bits = new Uint16Array(out.buffer, out.byteOffset + byteOffset, values.length)
  const bad = kernels.toFloat16(values, bits)
  if (bad >= 0) {
    throw new Error(
      `${path}: activation ${values[bad]} of neuron ${Math.floor(neuron / dMlp)}.${neuron % dMlp} does not fit float16 ` +
        `(|x| ≤ 65504); set extract.dtype: float32`,
    )
  }
  if (!LITTLE_ENDIAN) for (let i = 0; i < bits.length; i++) bits[i] = ((bits[i] & 0xff) << 8) | (bits[i] >>> 8)
}

function fromFloat16Bytes(bytes: Uint8Array): Float32Array {
  const bits = bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2) : new Uint16Array(bytes.slice().buffer)
  return decodeF16(bits)
}
