// Test support, not used by seedscope itself: a zip writer that builds archives byte by byte (layout from PKWARE's
// APPNOTE), including the zip64 records torch writes, so tests can make good and corrupt checkpoints.
import { crc32, deflateRawSync } from 'node:zlib'

export interface ZipInput {
  name: string
  data: Uint8Array
  deflate?: boolean
  localExtra?: number // bytes of padding in the local header's extra field (torch aligns storages to 64 bytes)
  zip64?: boolean // sizes and offset as 0xFFFFFFFF in the central directory, real values in a zip64 extra field
}

/** A zip archive; `zip64Records` adds the zip64 end record and locator that torch always writes. */
export function buildZip(inputs: ZipInput[], zip64Records = false): Uint8Array {
  const parts: Buffer[] = []
  const central: Buffer[] = []
  let offset = 0
  for (const { name, data, deflate = false, localExtra = 0, zip64 = false } of inputs) {
    const stored = deflate ? deflateRawSync(data) : Buffer.from(data)
    const nameBytes = Buffer.from(name)
    const local = Buffer.alloc(30 + nameBytes.length + localExtra)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4)
    local.writeUInt16LE(deflate ? 8 : 0, 8)
    local.writeUInt32LE(crc32(data), 14)
    local.writeUInt32LE(stored.length, 18)
    local.writeUInt32LE(data.length, 22)
    local.writeUInt16LE(nameBytes.length, 26)
    local.writeUInt16LE(localExtra, 28)
    if (localExtra >= 4) local.writeUInt16LE(0x4246, 30 + nameBytes.length) // torch's 'FB' padding field
    if (localExtra >= 4) local.writeUInt16LE(localExtra - 4, 32 + nameBytes.length)
    nameBytes.copy(local, 30)
    const extra = Buffer.alloc(zip64 ? 28 : 0)
    if (zip64) {
      extra.writeUInt16LE(0x0001, 0)
      extra.writeUInt16LE(24, 2)
      extra.writeBigUInt64LE(BigInt(data.length), 4)
      extra.writeBigUInt64LE(BigInt(stored.length), 12)
      extra.writeBigUInt64LE(BigInt(offset), 20)
    }
    const entry = Buffer.alloc(46 + nameBytes.length + extra.length)
    entry.writeUInt32LE(0x02014b50, 0)
    entry.writeUInt16LE(45, 4)
    entry.writeUInt16LE(45, 6)
    entry.writeUInt16LE(deflate ? 8 : 0, 10)
    entry.writeUInt32LE(crc32(data), 16)
    entry.writeUInt32LE(zip64 ? 0xffffffff : stored.length, 20)
    entry.writeUInt32LE(zip64 ? 0xffffffff : data.length, 24)
    entry.writeUInt16LE(nameBytes.length, 28)
    entry.writeUInt16LE(extra.length, 30)
    entry.writeUInt32LE(zip64 ? 0xffffffff : offset, 42)
    nameBytes.copy(entry, 46)
    extra.copy(entry, 46 + nameBytes.length)
    central.push(entry)
    parts.push(local, stored)
    offset += local.length + stored.length
  }
  const cd = Buffer.concat(central)
  const cdOffset = offset
  parts.push(cd)
  offset += cd.length
  if (zip64Records) {
    const record = Buffer.alloc(56)
    record.writeUInt32LE(0x06064b50, 0)
    record.writeBigUInt64LE(44n, 4)
    record.writeBigUInt64LE(BigInt(inputs.length), 24)
    record.writeBigUInt64LE(BigInt(inputs.length), 32)
    record.writeBigUInt64LE(BigInt(cd.length), 40)
    record.writeBigUInt64LE(BigInt(cdOffset), 48)
    const locator = Buffer.alloc(20)
    locator.writeUInt32LE(0x07064b50, 0)
    locator.writeBigUInt64LE(BigInt(offset), 8)
    locator.writeUInt32LE(1, 16)
    parts.push(record, locator)
  }
  const eocd = Buffer.alloc(22)
  eocd.writeUInt32LE(0x06054b50, 0)
  eocd.writeUInt16LE(zip64Records ? 0xffff : inputs.length, 8)
  eocd.writeUInt16LE(zip64Records ? 0xffff : inputs.length, 10)
  eocd.writeUInt32LE(zip64Records ? 0xffffffff : cd.length, 12)
  eocd.writeUInt32LE(zip64Records ? 0xffffffff : cdOffset, 16)
  parts.push(eocd)
  return new Uint8Array(Buffer.concat(parts))
}
