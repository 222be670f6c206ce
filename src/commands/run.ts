// `seedscope run`: compute what is missing or stale. Ctrl-C once stops after the running units (they are kept);
// twice aborts at once. Ends with one summary line: units run and skipped per stage.
import type { CommandModule } from 'yargs'
import { configFromArgs, configKeysHelp, withConfigOptions, type ConfigArgs } from '../config-cli.js'
import type { RunSummary } from '../runner/run.js'

interface RunArgs extends ConfigArgs {
  stages?: string
  force: boolean
}

export const runCommand: CommandModule<object, RunArgs> = {
  command: 'run',
  describe: 'Compute the stages whose results are missing or stale',
  builder: (yargs) =>
    withConfigOptions(yargs)
      .option('stages', {
        type: 'string',
        describe: 'comma-separated stages to run (default: all); the stages they read must be up to date',
      })
      .option('force', { type: 'boolean', default: false, describe: 'rerun the selected stages even when up to date' })
      .epilogue(configKeysHelp()),
  handler: async (args) => {
    const { config } = configFromArgs(args)
    // The pipeline's modules load only for the command that needs them, so --help and the other commands start fast.
    const [{ createReporter }, { runPipeline }, { registeredStages }] = await Promise.all([import('../runner/progress.js'), import('../runner/run.js'), import('../stages/index.js')])
    const stages = await registeredStages(process.env)
    const reporter = createReporter(process.stderr)
    const stop = new AbortController()
    const abort = new AbortController()
    const onInterrupt = () => {
      if (stop.signal.aborted) return abort.abort()
      reporter.warn('Ctrl-C: stopping after the running units finish (Ctrl-C again to abort now)')
      stop.abort()
    }
    process.on('SIGINT', onInterrupt)
    try {
      const summary = await runPipeline(config, stages, {
        stages: args.stages?.split(',').map((s) => s.trim()).filter(Boolean),
        force: args.force,
        reporter,
        stop: stop.signal,
        signal: abort.signal,
      })
      process.stdout.write(`${summaryLine(summary)}\n`)
      if (summary.interrupted) process.exitCode = 130
    } finally {
      process.off('SIGINT', onInterrupt)
    }
  },
}

/** `run: tokenize 0 run, 1 skipped; extract 3 run, 5 skipped` */
export function summaryLine(summary: RunSummary): string {
  if (summary.stages.length === 0) return 'run: no stages registered yet; nothing to do'
  const parts = summary.stages.map((s) => `${s.stage} ${s.ran} run, ${s.skipped} skipped`)
  return `run: ${parts.join('; ')}${summary.interrupted ? '; interrupted, rerun to continue' : ''}`
}
