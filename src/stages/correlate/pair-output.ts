// Writes a pair's table (both modes end here) and reports its dead neurons: NaN, counted, never 0 (SPEC §3).
import type { StageContext } from '../../runner/stage.js'
import { pairPath } from './index.js'
import { writePairTable, type PairTableData } from './pair-table.js'

export function writePairOutput(ctx: StageContext<unknown>, u: { id: string; a: string; b: string }, data: PairTableData): void {
  writePairTable(ctx.outputPath(pairPath(u.a, u.b)), u, data)
  const dead = (values: Float64Array) => values.reduce((n, v) => n + (v !== v ? 1 : 0), 0)
  const deadA = dead(data.maxima.rows.value)
  const deadB = dead(data.maxima.cols.value)
  if (deadA || deadB) {
    ctx.warn(`${deadA} neurons of ${u.a} and ${deadB} of ${u.b} have zero variance (dead) over these tokens; their correlations are NaN and they are never universal`)
  }
}
