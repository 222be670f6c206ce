// The study's 256-edge histogram of the pre-activation on [−10, 15] (SPEC §4): its edges and the bin of a value.
// Its own module so that the moments (moments.ts) and their JavaScript kernels (kernels.ts) share one definition.

/** The study's bin edges: torch.linspace(−10, 15, 256), here in float64 (native/kernels/extract.c computes the same). */
export const HISTOGRAM_EDGES: Float64Array = linspace(-10, 15, 256)

/**
 * Counts per neuron: one more than the edges, as the study's `searchsorted` gives. Bin 0 holds x ≤ −10 (the
 * underflow), bin i (1…255) holds edges[i−1] < x ≤ edges[i], bin 256 holds x > 15 (the overflow). So values
 * outside [−10, 15] land in the end bins, as in the study, and those bins are also the under/overflow counts.
 */
export const HISTOGRAM_BINS = HISTOGRAM_EDGES.length + 1

const LAST_EDGE = HISTOGRAM_EDGES.length - 1
const EDGE_LO = HISTOGRAM_EDGES[0]
const EDGE_HI = HISTOGRAM_EDGES[LAST_EDGE]
const EDGES_PER_UNIT = LAST_EDGE / (EDGE_HI - EDGE_LO)

/** Histogram bin of a finite value: the number of edges strictly below it (numpy/torch searchsorted, left). */
export function histogramBin(x: number): number {
  if (x <= EDGE_LO) return 0
  if (x > EDGE_HI) return HISTOGRAM_BINS - 1
  // The arithmetic estimate can be one off only for x within rounding of an edge: one step corrects it.
  let i = Math.ceil((x - EDGE_LO) * EDGES_PER_UNIT)
  if (i < 1) i = 1
  else if (i > LAST_EDGE) i = LAST_EDGE
  if (x <= HISTOGRAM_EDGES[i - 1]) i--
  else if (x > HISTOGRAM_EDGES[i]) i++
  return i
}

function linspace(lo: number, hi: number, n: number): Float64Array {
  const out = new Float64Array(n)
  for (let i = 0; i < n; i++) out[i] = lo + ((hi - lo) * i) / (n - 1)
  return out
}
