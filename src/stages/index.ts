// The pipeline's stages, in the order they run (STYLE.md §1): tokenize → extract → correlate → analyze → causal →
// report. A stage's needs must come before it. The runner sees the stages only through these declarations.
import type { AnyStage } from '../runner/stage.js'
import { correlate } from './correlate/index.js'
import { extract } from './extract/index.js'
import { reextract } from './reextract.js'
import { stats } from './stats.js'
import { tokenize } from './tokenize/stage.js'
import { universal } from './universal.js'

export const stages: readonly AnyStage[] = [tokenize, extract, stats, correlate, universal, reextract]

/**
 * The stages a command works on. With SEEDSCOPE_TOY_STAGES=1 in `env`, the runner's toy stages replace them:
 * the end-to-end tests drive the real CLI with stages that need no model. Not a user option, so not in --help.
 */
export async function registeredStages(env: NodeJS.ProcessEnv): Promise<readonly AnyStage[]> {
  if (env.SEEDSCOPE_TOY_STAGES === '1') return (await import('../runner/toy-stages.js')).toyStages
  return stages
}
