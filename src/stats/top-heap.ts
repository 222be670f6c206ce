// Per-neuron min-heaps of the top-k activations (top-activations.ts): the insertion step, shared by the streaming
// kernel (kernels.ts; native/kernels/extract.c implements the same) and the exact merge of shards.
//
// Order: value descending; ties go to the earlier (row, pos). With (row, pos) unique per token this is a total
// order, so the kept set is the same whatever the order of the offers.

/** Per neuron a min-heap of at most k entries (the weakest at slot 0), as flat typed arrays. */
export interface TopHeaps {
  k: number
  size: Int32Array      // [neurons] entries held (≤ k)
  value: Float64Array   // [neurons, k]
  row: Int32Array       // [neurons, k]
  pos: Int32Array       // [neurons, k]
}

/** The weakest kept value of neuron g: −∞ until its heap is full. */
export function heapFloor(h: TopHeaps, g: number): number {
  return h.size[g] < h.k ? -Infinity : h.value[g * h.k]
}

/** Insert (value, row, pos) into neuron g's heap if it is finite and ranks above the weakest entry. */
export function offerTop(h: TopHeaps, g: number, value: number, row: number, pos: number): void {
  if (value - value !== 0) return
  const k = h.k
  const base = g * k
  if (h.size[g] < k) {
    let i = h.size[g]++
    while (i > 0) {  // sift up
      const parent = (i - 1) >> 1
      if (!weaker(value, row, pos, h.value[base + parent], h.row[base + parent], h.pos[base + parent])) break
      move(h, base + parent, base + i)
      i = parent
    }
    put(h, base + i, value, row, pos)
    return
  }
  if (!weaker(h.value[base], h.row[base], h.pos[base], value, row, pos)) return
  let i = 0
  for (;;) {  // sift down from the root, which the new entry replaces
    const left = 2 * i + 1
    if (left >= k) break
    let child = left
    const right = left + 1
    if (right < k && weaker(h.value[base + right], h.row[base + right], h.pos[base + right],
      h.value[base + left], h.row[base + left], h.pos[base + left])) child = right
    if (!weaker(h.value[base + child], h.row[base + child], h.pos[base + child], value, row, pos)) break
    move(h, base + child, base + i)
    i = child
  }
  put(h, base + i, value, row, pos)
}

/**
 * Rewrite neuron g's heap sorted weakest first: a valid min-heap, and one arrangement for a given set of entries,
 * so that kernels finding the same top k by different algorithms store the same bytes.
 */
export function sortWeakestFirst(h: TopHeaps, g: number): void {
  const base = g * h.k
  const entries = Array.from({ length: h.size[g] }, (_, e) => [h.value[base + e], h.row[base + e], h.pos[base + e]] as const)
  entries.sort((x, y) => (weaker(x[0], x[1], x[2], y[0], y[1], y[2]) ? -1 : 1))
  entries.forEach(([value, row, pos], e) => put(h, base + e, value, row, pos))
}

// x ranks below y: smaller value, or the same value at a later (row, pos).
function weaker(xv: number, xr: number, xp: number, yv: number, yr: number, yp: number): boolean {
  return xv < yv || (xv === yv && (xr > yr || (xr === yr && xp > yp)))
}

function move(h: TopHeaps, from: number, to: number): void {
  h.value[to] = h.value[from]
  h.row[to] = h.row[from]
  h.pos[to] = h.pos[from]
}

function put(h: TopHeaps, slot: number, value: number, row: number, pos: number): void {
  h.value[slot] = value
  h.row[slot] = row
  h.pos[slot] = pos
}
