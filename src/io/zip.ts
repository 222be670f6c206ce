// A minimal zip reader for torch checkpoint archives (torch.save since 1.6): read the end-of-central-directory
// record (and the zip64 records torch always writes, which carry the real sizes past 4 GB), list the entries, and
// return an entry's bytes. torch stores entries uncompressed; deflate is handled for archives repacked by other tools.
import { crc32, inflateRawSync } from 'node:zlib'
import { UserError } from '../errors.js'
import type { ByteSource } from './checkpoint-bytes.js'

export interface ZipEntry {
  name: string
  method: number // 0 stored, 8 deflate
  flags: number // general-purpose bit flags; bit 0 = encrypted
  crc32: number
  compressedSize: number
  size: number // uncompressed
  localHeaderOffset: number
}

const EOCD = 0x06054b50
const ZIP64_LOCATOR = 0x07064b50
const ZIP64_EOCD = 0x06064b50
const CENTRAL_HEADER = 0x02014b50
const LOCAL_HEADER = 0x04034b50
const ZIP64_EXTRA = 0x0001
const FIX = 'the archive is corrupt or truncated (fetch it again)'

/** List an archive's entries by name, from its central directory. */
export function readZipDirectory(source: ByteSource): Map<string, ZipEntry> {
  const { count, offset, size } = findCentralDirectory(source)
  const cd = view(source.read(offset, offset + size))
  const entries = new Map<string, ZipEntry>()
  let p = 0
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.byteLength || cd.getUint32(p, true) !== CENTRAL_HEADER) {
      const found = p + 4 <= cd.byteLength ? `0x${cd.getUint32(p, true).toString(16).padStart(8, '0')}` : 'the end of the directory'
      throw new UserError(`bad central directory: entry ${i} of ${count} at byte ${offset + p} starts with ${found}, expected signature 0x02014b50; ${FIX}`)
    }
    const nameLength = cd.getUint16(p + 28, true)
    const extraLength = cd.getUint16(p + 30, true)
    const commentLength = cd.getUint16(p + 32, true)
    const end = p + 46 + nameLength + extraLength + commentLength
    if (end > cd.byteLength) throw new UserError(`bad central directory: entry ${i} runs past the directory's end; ${FIX}`)
    const name = new TextDecoder().decode(new Uint8Array(cd.buffer, cd.byteOffset + p + 46, nameLength))
    const entry: ZipEntry = {
      name,
      flags: cd.getUint16(p + 8, true),
      method: cd.getUint16(p + 10, true),
      crc32: cd.getUint32(p + 16, true),
      compressedSize: cd.getUint32(p + 20, true),
      size: cd.getUint32(p + 24, true),
      localHeaderOffset: cd.getUint32(p + 42, true),
    }
    applyZip64Extra(entry, new DataView(cd.buffer, cd.byteOffset + p + 46 + nameLength, extraLength))
    if (entries.has(name)) throw new UserError(`bad central directory: entry ${name} appears twice; ${FIX}`)
    entries.set(name, entry)
    p = end
  }
  return entries
}

/** The entry's bytes: a view of the source for stored entries (torch's case), a fresh buffer for deflated ones. */
export function readZipEntry(source: ByteSource, entry: ZipEntry): Uint8Array {
  const where = `zip entry ${entry.name}`
  if (entry.flags & 1) throw new UserError(`${where} is encrypted; encrypted archives are not supported`)
  if (entry.localHeaderOffset + 30 > source.byteLength) {
    throw new UserError(`${where}: local header at byte ${entry.localHeaderOffset} lies past the end of the file (${source.byteLength} bytes); ${FIX}`)
  }
  const local = view(source.read(entry.localHeaderOffset, entry.localHeaderOffset + 30))
  if (local.getUint32(0, true) !== LOCAL_HEADER) {
    throw new UserError(`${where}: no local header at byte ${entry.localHeaderOffset} (expected signature 0x04034b50); ${FIX}`)
  }
  // The local header's own name and extra lengths locate the data: torch pads the extra field to align storages.
  const start = entry.localHeaderOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true)
  const end = start + entry.compressedSize
  if (end > source.byteLength) {
    throw new UserError(`${where}: data [${start}, ${end}) runs past the end of the file (${source.byteLength} bytes); ${FIX}`)
  }
  const stored = source.read(start, end)
  let data: Uint8Array
  if (entry.method === 0) data = stored
  else if (entry.method === 8) data = inflate(stored, where)
  else throw new UserError(`${where}: compression method ${entry.method} is not supported (only stored and deflate)`)
  if (data.byteLength !== entry.size) {
    throw new UserError(`${where}: holds ${data.byteLength} bytes, the directory says ${entry.size}; ${FIX}`)
  }
  if (crc32(data) >>> 0 !== entry.crc32) throw new UserError(`${where}: CRC-32 mismatch; ${FIX}`)
  return data
}

function inflate(bytes: Uint8Array, where: string): Uint8Array {
  try {
    return inflateRawSync(bytes)
  } catch (error) {
    throw new UserError(`${where}: deflate data is corrupt (${(error as Error).message}); ${FIX}`)
  }
}

/** Locate the central directory through the end-of-central-directory record, and the zip64 one when present. */
function findCentralDirectory(source: ByteSource): { count: number; offset: number; size: number } {
  const size = source.byteLength
  // The record is 22 bytes plus a comment of up to 65535, so it lies in the file's last 65557 bytes.
  const tailStart = Math.max(0, size - 22 - 0xffff)
  const tail = view(source.read(tailStart, size))
  let at = -1
  for (let p = tail.byteLength - 22; p >= 0; p--) {
    if (tail.getUint32(p, true) === EOCD && p + 22 + tail.getUint16(p + 20, true) <= tail.byteLength) {
      at = p
      break
    }
  }
  if (at < 0) throw new UserError(`not a zip archive: no end-of-central-directory record in the last ${tail.byteLength} bytes; ${FIX}`)
  const eocdOffset = tailStart + at
  if (tail.getUint16(at + 4, true) !== 0 || tail.getUint16(at + 6, true) !== 0) {
    throw new UserError('multi-disk zip archives are not supported')
  }
  let count = tail.getUint16(at + 10, true)
  let cdSize = tail.getUint32(at + 12, true)
  let cdOffset = tail.getUint32(at + 16, true)
  let cdLimit = eocdOffset
  if (eocdOffset >= 20 && view(source.read(eocdOffset - 20, eocdOffset)).getUint32(0, true) === ZIP64_LOCATOR) {
    const locator = view(source.read(eocdOffset - 20, eocdOffset))
    const zip64Offset = u64(locator, 8, 'zip64 end-of-central-directory offset')
    if (zip64Offset + 56 > eocdOffset - 20) {
      throw new UserError(`zip64 end-of-central-directory record at byte ${zip64Offset} lies outside the file; ${FIX}`)
    }
    const record = view(source.read(zip64Offset, zip64Offset + 56))
    if (record.getUint32(0, true) !== ZIP64_EOCD) {
      throw new UserError(`no zip64 end-of-central-directory record at byte ${zip64Offset} (expected signature 0x06064b50); ${FIX}`)
    }
    count = u64(record, 32, 'entry count')
    cdSize = u64(record, 40, 'central directory size')
    cdOffset = u64(record, 48, 'central directory offset')
    cdLimit = zip64Offset
  }
  if (cdOffset + cdSize > cdLimit) {
    throw new UserError(`bad central directory: [${cdOffset}, ${cdOffset + cdSize}) overlaps the end records at byte ${cdLimit}; ${FIX}`)
  }
  return { count, offset: cdOffset, size: cdSize }
}

/** Zip64 extra field: the 64-bit values of whichever 32-bit fields hold 0xFFFFFFFF, in this order. */
function applyZip64Extra(entry: ZipEntry, extra: DataView): void {
  for (let p = 0; p + 4 <= extra.byteLength; ) {
    const id = extra.getUint16(p, true)
    const length = extra.getUint16(p + 2, true)
    if (id === ZIP64_EXTRA) {
      const field = new DataView(extra.buffer, extra.byteOffset + p + 4, Math.min(length, extra.byteLength - p - 4))
      let q = 0
      const next = (what: string) => {
        if (q + 8 > field.byteLength) throw new UserError(`bad central directory: entry ${entry.name}'s zip64 field lacks its ${what}; ${FIX}`)
        const value = u64(field, q, what)
        q += 8
        return value
      }
      if (entry.size === 0xffffffff) entry.size = next('size')
      if (entry.compressedSize === 0xffffffff) entry.compressedSize = next('compressed size')
      if (entry.localHeaderOffset === 0xffffffff) entry.localHeaderOffset = next('local header offset')
    }
    p += 4 + length
  }
}

function u64(data: DataView, offset: number, what: string): number {
  const value = data.getBigUint64(offset, true)
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new UserError(`zip64 ${what} ${value} is impossibly large; ${FIX}`)
  return Number(value)
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
