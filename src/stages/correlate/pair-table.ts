// correlate/<a>--<b>.parquet: one row per neuron of either seed with its best partner in the other seed
// (max_corr and its argmax) and its rotation baseline, both directions of one pair in one table.
import { readTable, readTableInfo, writeTable } from '../../io/tables.js'
import type { Maxima } from '../../stats/maxima.js'
import type { RotationKind } from '../../stats/rotation.js'
import type { ModelLayout } from './pair-sums.js'

export interface PairTableData {
  layoutA: ModelLayout
  layoutB: ModelLayout
  tokens: number
  rotation: { kind: RotationKind; seeds: Record<string, number> }
  maxima: { rows: Maxima; cols: Maxima }
  baselineA: PairBaseline
  baselineB: PairBaseline
}

/**
 * Per anchor neuron, its baseline against the other seed: `value`, exact (NaN for a dead neuron). The screened
 * mode knows some only as an interval that a flag does not need narrowed: then value is NaN and lo < hi.
 */
export interface PairBaseline {
  value: Float64Array
  interval?: { lo: Float64Array; hi: Float64Array }
}

/** Where an interval has collapsed (lo = hi), its value; NaN where it is open (or NaN). */
export function exactWhereEqual(lo: Float64Array, hi: Float64Array): Float64Array {
  return lo.map((v, i) => (v === hi[i] ? v : NaN))
}

export function writePairTable(path: string, u: { a: string; b: string }, r: PairTableData): void {
  const sides = [
    { seed: u.a, other: u.b, layout: r.layoutA, otherLayout: r.layoutB, maxima: r.maxima.rows, baseline: r.baselineA },
    { seed: u.b, other: u.a, layout: r.layoutB, otherLayout: r.layoutA, maxima: r.maxima.cols, baseline: r.baselineB },
  ]
  const columns: Record<string, unknown[]> = { seed: [], layer: [], neuron: [], other: [], max_corr: [], max_layer: [], max_neuron: [], baseline: [] }
  for (const side of sides) appendSide(columns, side)
  const intervals = sides.every((side) => side.baseline.interval)
  const interval = (key: 'lo' | 'hi') => Float64Array.from(sides.flatMap((side) => [...side.baseline.interval![key]]))
  writeTable(
    path,
    {
      columns: [
        { name: 'seed', type: 'STRING' },
        { name: 'layer', type: 'INT32' },
        { name: 'neuron', type: 'INT32' },
        { name: 'other', type: 'STRING' },
        { name: 'max_corr', type: 'DOUBLE' },
        { name: 'max_layer', type: 'INT32' },
        { name: 'max_neuron', type: 'INT32' },
        { name: 'baseline', type: 'DOUBLE' },
        ...(intervals ? [{ name: 'baseline_lo', type: 'DOUBLE' }, { name: 'baseline_hi', type: 'DOUBLE' }] as const : []),
      ],
      metadata: {
        'seedscope.tokens': String(r.tokens),
        'seedscope.baseline': `${r.rotation.kind} rotation per layer of the other seed; rotation seeds ${JSON.stringify(r.rotation.seeds)}`,
        'seedscope.columns': 'max_corr: max Pearson r over every neuron of every layer of `other` (NaN for a dead neuron); max_layer/max_neuron: its argmax (-1 with NaN); baseline: the same max against the rotated layers' +
          (intervals ? ' (screened mode: NaN where only bounded); baseline_lo/baseline_hi: bounds on it, equal where it is exact' : ''),
      },
    },
    {
      ...columns,
      layer: Int32Array.from(columns.layer as number[]),
      neuron: Int32Array.from(columns.neuron as number[]),
      max_corr: Float64Array.from(columns.max_corr as number[]),
      max_layer: Int32Array.from(columns.max_layer as number[]),
      max_neuron: Int32Array.from(columns.max_neuron as number[]),
      baseline: Float64Array.from(columns.baseline as number[]),
      ...(intervals ? { baseline_lo: interval('lo'), baseline_hi: interval('hi') } : {}),
    },
  )
}

function appendSide(
  columns: Record<string, unknown[]>,
  side: { seed: string; other: string; layout: ModelLayout; otherLayout: ModelLayout; maxima: Maxima; baseline: PairBaseline },
): void {
  const n = side.layout.nLayers * side.layout.dMlp
  for (let g = 0; g < n; g++) {
    const partner = side.maxima.index[g]
    columns.seed.push(side.seed)
    columns.layer.push(Math.floor(g / side.layout.dMlp))
    columns.neuron.push(g % side.layout.dMlp)
    columns.other.push(side.other)
    columns.max_corr.push(side.maxima.value[g])
    columns.max_layer.push(partner < 0 ? -1 : Math.floor(partner / side.otherLayout.dMlp))
    columns.max_neuron.push(partner < 0 ? -1 : partner % side.otherLayout.dMlp)
    columns.baseline.push(side.baseline.value[g])
  }
}

export interface PairSide {
  other: string
  layer: Int32Array
  neuron: Int32Array
  maxCorr: Float64Array
  maxLayer: Int32Array
  maxNeuron: Int32Array
  baseline: Float64Array
  baselineLo: Float64Array  // = baseline where exact; the screened mode's bounds elsewhere
  baselineHi: Float64Array
}

/** The rows of `seed` in one pair table, in (layer, neuron) order. */
export async function readPairSide(path: string, seed: string): Promise<PairSide & { tokens: number }> {
  const info = await readTableInfo(path)
  const rows = (await readTable(path)).filter((r) => r.seed === seed)
  return {
    other: rows[0]?.other as string,
    tokens: Number(info.metadata['seedscope.tokens']),
    layer: Int32Array.from(rows, (r) => r.layer as number),
    neuron: Int32Array.from(rows, (r) => r.neuron as number),
    maxCorr: Float64Array.from(rows, (r) => (r.max_corr as number | null) ?? NaN),
    maxLayer: Int32Array.from(rows, (r) => r.max_layer as number),
    maxNeuron: Int32Array.from(rows, (r) => r.max_neuron as number),
    baseline: Float64Array.from(rows, (r) => (r.baseline as number | null) ?? NaN),
    baselineLo: Float64Array.from(rows, (r) => ((r.baseline_lo ?? r.baseline) as number | null) ?? NaN),
    baselineHi: Float64Array.from(rows, (r) => ((r.baseline_hi ?? r.baseline) as number | null) ?? NaN),
  }
}
