// `seedscope plan`: before committing hours, per stage the units (all and still to run) and the stage's estimate
// of tokens, FLOPs, disk, memory and time (from a short calibration on this machine, cached); warns when disk or
// memory will not suffice (SPEC §7). `--tokens N` projects a run of N tokens; `--study` the study's scale.
import type { CommandModule } from 'yargs'
import { configFromArgs, withConfigOptions, type ConfigArgs } from '../config-cli.js'
import { UserError } from '../errors.js'
import { displayPath } from '../runner/lock.js'
import { bytes, planEnvironment, planPipeline, type PipelinePlan } from '../runner/plan.js'
import { forgetCalibration } from '../stages/calibrate.js'
import { duration } from '../stages/plan-estimates.js'
import { registeredStages } from '../stages/index.js'
import { planStudy } from '../stages/stage-plans.js'

interface PlanArgs extends ConfigArgs {
  tokens?: string
  study: boolean
  recalibrate: boolean
}

export const planCommand: CommandModule<object, PlanArgs> = {
  command: 'plan',
  describe: 'Estimate the work, disk, memory and time a config implies, before running it',
  builder: (yargs) =>
    withConfigOptions(yargs)
      .option('tokens', {
        type: 'string',
        describe: 'plan a run of this many tokens (as tokenize.max_tokens, e.g. 1e8), whatever the corpus holds; runs nothing',
      })
      .option('study', {
        type: 'boolean',
        default: false,
        describe: "project the study's scale on this machine: GPT-2 small, 5 seeds, 1e8 tokens each, ctx 512, float16 (SPEC §7)",
      })
      .option('recalibrate', {
        type: 'boolean',
        default: false,
        describe: 'measure this machine again instead of using <output_dir>/.cache/calibration.json',
      }),
  handler: async (args) => {
    const { config } = configFromArgs(args)
    if (args.study && args.tokens !== undefined) throw new UserError('--study plans 1e8 tokens per seed; give --study or --tokens, not both')
    const tokens = args.tokens === undefined ? undefined : tokenCount(args.tokens)
    if (args.recalibrate) forgetCalibration(config.output_dir)
    const where = displayPath(config.output_dir)
    const study = args.study ? await planStudy(config, planEnvironment(config)) : undefined
    const plan = study?.plan ?? (await planPipeline(config, await registeredStages(process.env), { tokens }))
    const lines = [...(study ? [`${study.title}:`] : []), ...formatPlan(plan, where)]
    process.stdout.write(lines.join('\n') + '\n')
    for (const warning of plan.warnings) process.stderr.write(`warning: ${warning}\n`)
  },
}

/** `1e8`, `100000000`, `1_000_000` → a positive whole number of tokens. */
function tokenCount(text: string): number {
  const n = Number(text.replaceAll('_', ''))
  if (!Number.isFinite(n) || n < 1) throw new UserError(`--tokens: expected a positive number of tokens such as 1e8, got ${JSON.stringify(text)}`)
  return Math.round(n)
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
