#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=4294967296:${GLIBC_TUNABLES} node
// seedscope's command line: each command maps its flags onto one library call. Errors are caught once, here:
// a UserError prints as one line (exit 1); anything else is a bug and keeps its stack (exit 2).
//
// The #! line sets glibc's allocator before Node starts (it cannot be changed later): onnxruntime-node returns
// every output in a fresh buffer (~300 MB per GPT-2-small batch), and by default each came from fresh pages the
// kernel had to zero and fault in. Kept on the heap (buffers up to 256 MiB, no trimming below 4 GiB) and on
// transparent huge pages, extract on the GPT-2-small shape ran 14–25% faster (bench/README.md, session 7). A
// user's own GLIBC_TUNABLES come last, so they win. `env -S` needs GNU coreutils 8.30 or a BSD env; Node 20 needs
// glibc 2.28, and the distributions that ship it (RHEL 8, Debian 10, Ubuntu 20.04 and later) have that env.
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
