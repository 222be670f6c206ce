// `seedscope plan`: before committing hours, per stage the units (all and still to run) and the stage's estimate
// of tokens, FLOPs, disk, memory and time (from a short calibration on this machine, cached); warns when disk or
// memory will not suffice (SPEC §7). `--tokens N` projects a run of N tokens; `--study` the study's scale.
import type { CommandModule } from 'yargs'
import { configFromArgs, withConfigOptions, type ConfigArgs } from '../config-cli.js'
import { UserError } from '../errors.js'
import { displayPath } from '../runner/lock.js'

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
    // The planner's modules load only when planning, so --help and the other commands start fast.
    const [{ planEnvironment, planPipeline }, { forgetCalibration }, { registeredStages }, { planStudy }, { formatPlan }] = await Promise.all([
      import('../runner/plan.js'), import('../stages/calibrate.js'), import('../stages/index.js'), import('../stages/stage-plans.js'), import('./plan-format.js'),
    ])
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
