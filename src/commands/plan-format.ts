// `seedscope plan`'s table: per stage the units, what is left to run, and the stage's estimates, then each stage's
// notes and one total line.
import { bytes, type PipelinePlan } from '../runner/plan.js'
import { duration } from '../stages/plan-estimates.js'

export function formatPlan(plan: PipelinePlan, outputDir: string): string[] {
  const { env } = plan
  const free = env.freeDiskBytes === undefined ? 'unknown disk' : `${bytes(env.freeDiskBytes)} free`
  const lines = [
    `machine: ${env.cores} cores, ${bytes(env.totalMemoryBytes)} memory (${bytes(env.freeMemoryBytes)} free), ` +
      `${free} under ${outputDir}, provider ${env.provider}`,
  ]
  if (plan.stages.length === 0) return [...lines, 'plan: no stages registered yet']
  const header = ['stage', 'units', 'to run', 'tokens', 'FLOPs', 'disk', 'memory', 'time']
  const unknown = (s: PipelinePlan['stages'][number]) => s.problem !== undefined || (s.waitingFor.length > 0 && s.units === 0)
  const rows = plan.stages.map((s) => [
    s.stage,
    unknown(s) ? '?' : String(s.units),
    unknown(s) ? '?' : String(s.toRun),
    maybe(s.estimate.tokens, count),
    maybe(s.estimate.flops, (n) => n.toExponential(1)),
    maybe(s.estimate.diskBytes, bytes),
    maybe(s.estimate.memoryBytes, bytes),
    maybe(s.estimate.seconds, duration),
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const row = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  lines.push(row(header), ...rows.map(row))
  for (const s of plan.stages) {
    if (s.problem) lines.push(`${s.stage}: units unknown (${s.problem})`)
    else if (s.waitingFor.length && s.units === 0) lines.push(`${s.stage}: units known once ${s.waitingFor.join(', ')} ran`)
    for (const note of s.estimate.notes ?? []) lines.push(`${s.stage}: ${note}`)
  }
  const toRun = plan.stages.reduce((n, s) => n + s.toRun, 0)
  const seconds = plan.stages.reduce((n, s) => n + (s.estimate.seconds ?? 0), 0)
  const time = seconds ? `, about ${duration(seconds)}` : ''
  const warned = plan.warnings.length ? `, ${plan.warnings.length} warning${plan.warnings.length === 1 ? '' : 's'} (below)` : ''
  lines.push(`plan: ${toRun} unit${toRun === 1 ? '' : 's'} to run${time}${warned}`)
  return lines
}

function maybe(n: number | undefined, format: (n: number) => string): string {
  return n === undefined ? '–' : format(n)
}

function count(n: number): string {
  const units: [number, string][] = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']]
  for (const [size, suffix] of units) if (n >= size) return `${(n / size).toFixed(1)}${suffix}`
  return String(Math.round(n))
}
