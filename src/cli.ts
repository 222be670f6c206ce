#!/usr/bin/env node
// seedscope's command line: each command maps its flags onto one library call. Errors are caught once, here:
// a UserError prints as one line (exit 1); anything else is a bug and keeps its stack (exit 2).
import yargs from 'yargs'
import { hideBin } from 'yargs/helpers'
import { UserError } from './errors.js'
import { commands } from './commands/index.js'

async function main(argv: string[]): Promise<void> {
  let cli = yargs(argv)
    .scriptName('seedscope')
    .usage('$0 <command> [options]\n\nFind universal neurons across language models trained with different seeds.')
    .strict()
    .demandCommand(1, 'name a command (see --help)')
    .recommendCommands()
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((message, error) => {
      throw error ?? new UserError(message)
    })
    .help()
    .version()
  for (const command of commands) cli = cli.command(command)
  await cli.parseAsync()
}

main(hideBin(process.argv)).catch((error: unknown) => {
  if (error instanceof UserError) {
    process.stderr.write(`seedscope: ${error.message}\n`)
    process.exit(1)
  }
  process.stderr.write(`seedscope: internal error (a bug; please report it with the command you ran)\n`)
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
  process.exit(2)
})
