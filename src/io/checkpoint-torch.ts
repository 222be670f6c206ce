// `pytorch_model.bin` as torch ≥ 1.6 writes it: a zip whose root folder is the file stem (`pytorch_model/`, never
// hard-coded) holding `data.pkl` (the state dict, see torch-pickle.ts), one `data/<key>` entry of raw little-endian
// elements per storage, and `version`. golden.md pitfalls 15, 22 and 23.
import { UserError } from '../errors.js'
import { type ByteSource, decodeFile } from './checkpoint-bytes.js'
import { type Tensor, type TensorData, decodeTensorData, dtypeBytes } from './safetensors-dtypes.js'
import { type TorchTensorRef, gatherTensor, parseTorchStateDict } from './torch-pickle.js'
import { type ZipEntry, readZipDirectory, readZipEntry } from './zip.js'

export interface ReadTorchOptions {
  select?: (name: string, ref: TorchTensorRef) => boolean // which tensors to read; default all
  maxInMemory?: number // files larger than this are read entry by entry; default 2 GiB - 1 (Node's Buffer limit)
}

/** Read a torch zip checkpoint's tensors in state-dict order; errors name the file. */
export function readTorchCheckpoint(path: string, options: ReadTorchOptions = {}): Map<string, Tensor> {
  return decodeFile(path, options.maxInMemory, (source) => decodeTorchArchive(source, options.select))
}

/**
 * Decode the selected tensors of a torch zip archive. Each storage is read and decoded once, however many tensors
 * use it: a tied `lm_head.weight` names the same key as `transformer.wte.weight` and gets the same array.
 */
export function decodeTorchArchive(source: ByteSource, select?: ReadTorchOptions['select']): Map<string, Tensor> {
  refuseLegacyFormat(source)
  const entries = readZipDirectory(source)
  const root = archiveRoot(entries)
  checkByteOrder(source, entries, root)
  const refs = parseTorchStateDict(readZipEntry(source, entries.get(`${root}/data.pkl`)!))
  const storages = new Map<string, TensorData>()
  const tensors = new Map<string, Tensor>()
  for (const [name, ref] of refs) {
    if (select && !select(name, ref)) continue
    const { key, dtype, numel } = ref.storage
    let storage = storages.get(key)
    if (storage === undefined) {
      const entryName = `${root}/data/${key}`
      const entry = entries.get(entryName)
      if (entry === undefined) throw new UserError(`storage ${entryName} of tensor ${name} is missing from the archive; the file is truncated or corrupt (fetch it again)`)
      const bytes = readZipEntry(source, entry)
      const needed = numel * dtypeBytes(dtype)!
      if (bytes.byteLength < needed) {
        throw new UserError(`storage ${entryName} holds ${bytes.byteLength} bytes, but ${numel} ${dtype} elements need ${needed}; the file is truncated or corrupt (fetch it again)`)
      }
      storage = decodeTensorData(dtype, bytes.subarray(0, needed))
      storages.set(key, storage)
    }
    try {
      tensors.set(name, { dtype, shape: ref.shape, data: gatherTensor(ref, storage) })
    } catch (error) {
      throw error instanceof UserError ? new UserError(`tensor ${name}: ${error.message}`, { cause: error }) : error
    }
  }
  return tensors
}

/** The root folder is whatever holds `data.pkl` (`pytorch_model/` here, `archive/` in other tools' files). */
function archiveRoot(entries: Map<string, ZipEntry>): string {
  const roots = [...entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name)).map((name) => name.slice(0, -'/data.pkl'.length))
  if (roots.length === 1) return roots[0]
  const listed = [...entries.keys()].slice(0, 5).join(', ')
  throw new UserError(
    roots.length === 0
      ? `zip archive has no <root>/data.pkl entry (found: ${listed}${entries.size > 5 ? ', …' : ''}); not a torch checkpoint`
      : `zip archive has ${roots.length} data.pkl entries (${roots.join(', ')}); expected one torch checkpoint`,
  )
}

/** Torch ≥ 2.1 records the byte order of the storages; older files are little-endian. */
function checkByteOrder(source: ByteSource, entries: Map<string, ZipEntry>, root: string): void {
  const entry = entries.get(`${root}/byteorder`)
  if (entry === undefined) return
  const order = new TextDecoder().decode(readZipEntry(source, entry)).trim()
  if (order !== 'little') throw new UserError(`storages are ${order}-endian; only little-endian checkpoints are read (re-save on a little-endian machine)`)
}

/** torch < 1.6 wrote a bare pickle stream (it starts with PROTO 2 and a magic number), not a zip. */
function refuseLegacyFormat(source: ByteSource): void {
  if (source.byteLength < 4) throw new UserError(`file is ${source.byteLength} bytes, too short for a torch checkpoint (truncated download? fetch it again)`)
  const head = source.read(0, 2)
  if (head[0] === 0x80 && head[1] === 0x02) {
    throw new UserError('legacy torch.save format (torch < 1.6, not a zip archive) is not supported; re-save it with torch ≥ 1.6 or convert it to safetensors')
  }
}
