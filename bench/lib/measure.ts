// What every benchmark prints beside its numbers: the machine, its load, medians and ratios against a peer
// measured in the same run. The machine is shared (a training job, other developers), so a single timing means
// little: benchmarks interleave subject and peer and report medians, per wall second and per CPU second.
import { cpus, freemem, loadavg, totalmem } from 'node:os'

export interface Timing {
  wall: number // seconds
  cpu: number // seconds of CPU over all threads of the process measured
}

/** Wall and CPU seconds of `work`, run in this process (CPU counts every thread, onnxruntime's included). */
export async function timed<T>(work: () => Promise<T> | T): Promise<Timing & { value: T }> {
  const cpu = process.cpuUsage()
  const start = performance.now()
  const value = await work()
  const used = process.cpuUsage(cpu)
  return { wall: (performance.now() - start) / 1000, cpu: (used.user + used.system) / 1e6, value }
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** Median wall and CPU seconds of several timings (each median taken on its own). */
export function medianTiming(ts: readonly Timing[]): Timing {
  return { wall: median(ts.map((t) => t.wall)), cpu: median(ts.map((t) => t.cpu)) }
}

export const loadAverage = () => loadavg().map((x) => x.toFixed(1)).join(' ')

/** One line naming the machine: the numbers mean nothing without it. */
export function machineLine(): string {
  const model = cpus()[0]?.model.trim() ?? 'unknown CPU'
  const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(1)
  return `${cpus().length} cores (${model}), ${gib(totalmem())} GiB (${gib(freemem())} free), Node ${process.version}`
}

/** The header every benchmark starts with: what it compares, on what, under which load. */
export function printHeader(title: string, compares: string): void {
  console.log(`\n=== ${title} ===`)
  console.log(compares)
  console.log(`machine: ${machineLine()}`)
  console.log(`load average at start: ${loadAverage()} (shared machine: numbers are noisy, ratios are taken within this run)`)
}

/** `stage / bare forward: 0.42× (target ≥ 0.90)  BELOW TARGET` */
export function ratioLine(name: string, ratio: number, target?: { min: number; unit?: string }): string {
  const unit = target?.unit ?? '×'
  const shown = unit === '%' ? `${(100 * ratio).toFixed(0)}%` : `${ratio.toFixed(2)}×`
  if (!target) return `${name}: ${shown}`
  const goal = unit === '%' ? `${(100 * target.min).toFixed(0)}%` : `${target.min.toFixed(2)}×`
  return `${name}: ${shown} (target ≥ ${goal})${ratio >= target.min ? '' : '  BELOW TARGET'}`
}

/** A right-aligned table: one header row, then rows of cells. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  console.log(line(header))
  for (const row of rows) console.log(line(row))
}

export const thousands = (x: number) => Math.round(x).toLocaleString('en-US')

/** An environment variable as a positive number, or the default. */
export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: expected a positive number, got ${JSON.stringify(raw)}`)
  return value
}
