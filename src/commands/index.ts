// The list of CLI commands; each lives in its own file and turns flags into one library call.
import type { CommandModule } from 'yargs'
import { inspectCommand } from './inspect.js'
import { planCommand } from './plan.js'
import { runCommand } from './run.js'
import { statusCommand } from './status.js'
import { summaryCommand } from './summary.js'
import { tokenizeTextCommand } from './tokenize-text.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const commands: CommandModule<any, any>[] = [runCommand, statusCommand, planCommand, summaryCommand, inspectCommand, tokenizeTextCommand]
