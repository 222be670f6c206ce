// `seedscope plan`: before committing hours, per stage the units (all and still to run) and the stage's estimate
// of tokens, FLOPs, disk, memory and time; warns when disk or memory will not suffice (SPEC §7).
import type { CommandModule } from 'yargs'
import { configFromArgs, withConfigOptions, type ConfigArgs } from '../config-cli.js'
import { displayPath } from '../runner/lock.js'
import { bytes, planPipeline, type PipelinePlan } from '../runner/plan.js'
import { registeredStages } from '../stages/index.js'

export const planCommand: CommandModule<object, ConfigArgs> = {
  command: 'plan',
  describe: 'Estimate the work, disk, memory and time a config implies, before running it',
  builder: (yargs) => withConfigOptions(yargs),
  handler: async (args) => {
    const { config } = configFromArgs(args)
    const plan = await planPipeline(config, await registeredStages(process.env))
    const where = displayPath(config.output_dir)
    process.stdout.write(formatPlan(plan, where).join('\n') + '\n')
    for (const warning of plan.warnings) process.stderr.write(`warning: ${warning}\n`)
  },
}

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
  const warned = plan.warnings.length ? `, ${plan.warnings.length} warnings (below)` : ''
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

function duration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`
  return `${(seconds / 86400).toFixed(1)} d`
}
