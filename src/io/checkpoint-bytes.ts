// Random access to the bytes of a checkpoint file. Decoders read through a `ByteSource` (hyparquet's two-member
// buffer interface), so the same code serves a file held in one Buffer and one read range by range.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { atPath, UserError } from '../errors.js'

/** Bytes [start, end) of something `byteLength` long. In memory the result is a view; from a file, a fresh buffer. */
export interface ByteSource {
  byteLength: number
  read(start: number, end: number): Uint8Array
}

/** A source backed by a file; `close()` releases its descriptor (a no-op when the file was read whole). */
export interface FileSource extends ByteSource {
  close(): void
}

/** Node cannot read more than 2 GiB into one Buffer (ERR_FS_FILE_TOO_LARGE); larger files are read by range. */
export const MAX_IN_MEMORY_BYTES = 2 ** 31 - 1

/** View a buffer as a source (no copy). */
export function bytesSource(bytes: Uint8Array): ByteSource {
  return {
    byteLength: bytes.byteLength,
    read(start, end) {
      checkRange(start, end, bytes.byteLength)
      return bytes.subarray(start, end)
    },
  }
}

/**
 * Open `path` for random access. Files up to `maxInMemory` bytes are read whole into one Buffer and served as views;
 * larger ones keep the descriptor open and `readSync` each requested range. Throws Node's fs errors unchanged.
 */
export function openFileSource(path: string, maxInMemory = MAX_IN_MEMORY_BYTES): FileSource {
  const fd = openSync(path, 'r')
  try {
    const size = fstatSync(fd).size
    if (size <= maxInMemory) {
      const whole = readRange(fd, 0, size)
      closeSync(fd)
      return { ...bytesSource(whole), close() {} }
    }
    return {
      byteLength: size,
      read(start, end) {
        checkRange(start, end, size)
        return readRange(fd, start, end)
      },
      close() {
        closeSync(fd)
      },
    }
  } catch (error) {
    closeSync(fd)
    throw error
  }
}

/** readSync refuses lengths of 2 GiB or more, so a larger tensor is read in pieces. */
const READ_CHUNK_BYTES = 2 ** 30

function readRange(fd: number, start: number, end: number): Uint8Array {
  // allocUnsafeSlow: an ArrayBuffer of its own at byteOffset 0, so typed-array views of it are aligned.
  const buffer = Buffer.allocUnsafeSlow(end - start)
  let done = 0
  while (done < buffer.length) {
    const n = readSync(fd, buffer, done, Math.min(buffer.length - done, READ_CHUNK_BYTES), start + done)
    if (n === 0) {
      throw new UserError(`file ended at byte ${start + done}, expected ${end} bytes (did it change while being read?)`)
    }
    done += n
  }
  return buffer
}

function checkRange(start: number, end: number, size: number): void {
  if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && 0 <= start && start <= end && end <= size)) {
    throw new UserError(`byte range [${start}, ${end}) lies outside the file (${size} bytes); truncated download? fetch it again`)
  }
}

/**
 * Open `path`, run `decode` on its bytes, close it. User-fixable errors (a missing file, a corrupt format) come
 * back prefixed with the path; anything else is a bug and keeps its stack.
 */
export function decodeFile<T>(path: string, maxInMemory: number | undefined, decode: (source: ByteSource) => T): T {
  let source: FileSource
  try {
    source = openFileSource(path, maxInMemory)
  } catch (error) {
    throw atPath(path, error)
  }
  try {
    return decode(source)
  } catch (error) {
    throw error instanceof UserError ? atPath(path, error) : error
  } finally {
    source.close()
  }
}
