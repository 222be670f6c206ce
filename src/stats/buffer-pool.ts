// Large Float32Arrays handed back after use and taken again by the next shard or chunk. A fresh buffer of a few
// hundred MB is zeroed and faulted in page by page (and unmapped again when collected), which cost more than the
// work done in it: the extract stage's shard buffers and the screened correlate's centred chunks both reuse theirs.

export class BufferPool {
  private readonly free: Float32Array[] = []

  /** `keep`: the most buffers held between uses; handing back one more lets the oldest go. */
  constructor(private readonly keep: number) {}

  /** A held buffer of at least `length` values, as a view of exactly `length`; undefined when none is that large. */
  take(length: number): Float32Array | undefined {
    const i = this.free.findIndex((buffer) => buffer.length >= length)
    return i < 0 ? undefined : this.free.splice(i, 1)[0].subarray(0, length)
  }

  /** Hand back a buffer taken (or allocated) earlier: the whole of its memory is reused, not just this view. */
  giveBack(values: Float32Array): void {
    this.free.push(new Float32Array(values.buffer))
    if (this.free.length > this.keep) this.free.shift()
  }
}
