// Read a Hugging Face checkpoint directory into a state dict of float32 weights, whichever of the four layouts it
// uses: model.safetensors, a sharded safetensors index, pytorch_model.bin, a sharded bin index (SPEC §1 "Checkpoints").
// Names stay as Hugging Face wrote them; mapping them onto canonical weights is src/model/convert's job.
import { existsSync, readFileSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { UserError, atPath } from '../errors.js'
import { readTorchCheckpoint } from './checkpoint-torch.js'
import { readSafetensors } from './safetensors.js'
import { type Tensor, isDecodedDtype, isFloatingDtype } from './safetensors-dtypes.js'

export type FloatDtype = 'F32' | 'F16' | 'BF16' | 'F64'

/**
 * A weight upcast to float32. `dtype` is what the file stored. F16 and BF16 widen exactly; F64 is rounded to the
 * nearest float32, as torch does when it loads a float64 checkpoint into a float32 model.
 * `data` may share memory with another entry (a tied `lm_head.weight` is the same array as `transformer.wte.weight`
 * in a .bin) or with the file's buffer: treat it as read-only.
 */
export interface CheckpointTensor {
  dtype: FloatDtype
  shape: number[]
  data: Float32Array
}

/**
 * Hugging Face parameter name → float32 weight, in file order.
 * Non-float entries are DROPPED here: the uint8/bool causal masks (`attn.bias`) and integer buffers of old GPT-2 and
 * Pythia files are never weights (golden.md pitfalls 13 and 22). Float buffers cannot be told from weights by dtype
 * and are KEPT: `attn.masked_bias` (a 0-dim -1e4) and `attention.rotary_emb.inv_freq`; converters read only the names
 * they need, so these are simply never looked up.
 */
export type StateDict = Map<string, CheckpointTensor>

/** The checkpoint files a directory may hold, in the order they are preferred (Hugging Face's order). */
const LAYOUTS = [
  { file: 'model.safetensors', format: 'safetensors', sharded: false },
  { file: 'model.safetensors.index.json', format: 'safetensors', sharded: true },
  { file: 'pytorch_model.bin', format: 'torch', sharded: false },
  { file: 'pytorch_model.bin.index.json', format: 'torch', sharded: true },
] as const

type Layout = (typeof LAYOUTS)[number]

/** Read the checkpoint in `dir`; every error names the file at fault and says what to do. */
export function readCheckpoint(dir: string): StateDict {
  const { layout, path } = findCheckpoint(dir)
  return layout.sharded ? readSharded(path, layout.format) : readFile(path, layout.format)
}

/** Which checkpoint file `dir` holds, by Hugging Face's order of preference. */
export function findCheckpoint(dir: string): { layout: Layout; path: string } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UserError(`${dir}: not a directory (expected a Hugging Face checkpoint directory)`)
  }
  for (const layout of LAYOUTS) {
    const path = join(dir, layout.file)
    if (existsSync(path)) return { layout, path }
  }
  throw new UserError(`${dir}: no model.safetensors or pytorch_model.bin found (expected a Hugging Face checkpoint directory)`)
}

/** Every file a model directory's weights come from (config.json, the checkpoint, its shards): what a stage hashes. */
export function checkpointFiles(dir: string): string[] {
  const { layout, path } = findCheckpoint(dir)
  const shards = layout.sharded ? [...readIndex(path).keys()].map((shard) => join(dirname(path), shard)) : []
  return [join(dir, 'config.json'), path, ...shards]
}

function readFile(path: string, format: Layout['format'], seen?: Set<string>): StateDict {
  const keep = (name: string, dtype: string) => {
    seen?.add(name)
    return isWeight(name, dtype)
  }
  const tensors =
    format === 'safetensors'
      ? readSafetensors(path, { select: (entry) => keep(entry.name, entry.dtype) })
      : readTorchCheckpoint(path, { select: (name, ref) => keep(name, ref.storage.dtype) })
  const weights: StateDict = new Map()
  for (const [name, tensor] of tensors) weights.set(name, toFloat32(tensor))
  return weights
}

/** Float tensors are weights; other dtypes are buffers to drop; a float dtype we cannot decode is an error, not a drop. */
function isWeight(name: string, dtype: string): boolean {
  if (!isFloatingDtype(dtype)) return false
  if (!isDecodedDtype(dtype)) {
    throw new UserError(`tensor ${name} has dtype ${dtype}; seedscope reads F32, F16, BF16 and F64 weights (convert the checkpoint to one of these)`)
  }
  return true
}

function toFloat32({ dtype, shape, data }: Tensor): CheckpointTensor {
  const floats = data instanceof Float32Array ? data : Float32Array.from(data as Float64Array)
  return { dtype: dtype as FloatDtype, shape, data: floats }
}

/** `*.index.json`: `weight_map` sends each tensor name to the shard file that holds it, next to the index. */
function readSharded(indexPath: string, format: Layout['format']): StateDict {
  const shards = readIndex(indexPath)
  const dir = dirname(indexPath)
  const weights: StateDict = new Map()
  for (const [shard, names] of shards) {
    const path = join(dir, shard)
    if (!existsSync(path)) {
      throw new UserError(`${indexPath}: shard ${shard} (holding ${names[0]} and ${names.length - 1} more) is missing (incomplete download? fetch it again)`)
    }
    const inShard = new Set<string>() // every tensor name in the shard, weights and dropped buffers alike
    for (const [name, tensor] of readFile(path, format, inShard)) {
      if (weights.has(name)) throw new UserError(`${path}: tensor ${name} is also in another shard (corrupt index or shards; fetch them again)`)
      weights.set(name, tensor)
    }
    const absent = names.find((name) => !inShard.has(name))
    if (absent !== undefined) {
      throw new UserError(`${path}: tensor ${absent}, which ${basename(indexPath)} places in this shard, is not in it (mismatched shards; fetch them again)`)
    }
  }
  return weights
}

/** Shard file → the tensor names the index places in it, in index order. */
function readIndex(indexPath: string): Map<string, string[]> {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(indexPath, 'utf8'))
  } catch (error) {
    throw atPath(indexPath, error instanceof SyntaxError ? `not valid JSON (${error.message}); fetch it again` : error)
  }
  const map = typeof json === 'object' && json !== null ? (json as { weight_map?: unknown }).weight_map : undefined
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new UserError(`${indexPath}: expected an object with "weight_map": {tensor name: shard file}, found none`)
  }
  const shards = new Map<string, string[]>()
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard === '' || basename(shard) !== shard) {
      throw new UserError(`${indexPath}: weight_map[${JSON.stringify(name)}] must be a file name next to the index, found ${JSON.stringify(shard)}`)
    }
    const names = shards.get(shard) ?? []
    names.push(name)
    shards.set(shard, names)
  }
  if (shards.size === 0) throw new UserError(`${indexPath}: weight_map is empty; expected at least one shard`)
  return shards
}
