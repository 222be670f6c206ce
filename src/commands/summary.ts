// `seedscope summary`: what a finished run found, readable in a terminal (see src/report/summary.ts).
import type { CommandModule } from 'yargs'
import { type ConfigArgs, configFromArgs, withConfigOptions } from '../config-cli.js'

interface SummaryArgs extends ConfigArgs {
  top: number
  seed?: string[]
  context: number
}

export const summaryCommand: CommandModule<object, SummaryArgs> = {
  command: 'summary',
  describe: 'Print the universal share per seed and layer, and the top universal neurons with their top-activating tokens',
  builder: (yargs) =>
    withConfigOptions(yargs)
      .option('top', { type: 'number', default: 5, describe: 'universal neurons listed per seed' })
      .option('seed', { type: 'string', array: true, describe: 'only these seeds (default: all)' })
      .option('context', { type: 'number', default: 12, describe: 'tokens of context shown before each activating token' }),
  handler: async (args) => {
    const { config } = configFromArgs(args)
    const { summarizeRun } = await import('../report/summary.js')
    process.stdout.write(`${await summarizeRun(config, { top: args.top, seeds: args.seed, contextTokens: args.context })}\n`)
  },
}
