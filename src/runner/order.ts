// Which stages a command touches: the registry's order, `--stages` selections, and the upstream stages a
// selection reads but does not run (those must already be up to date).
import { UserError } from '../errors.js'
import type { AnyStage } from './stage.js'

export interface Selection {
  selected: AnyStage[] // run these, in registry order
  required: AnyStage[] // read by the selected ones but not selected: checked, never run
}

/** Check the registry: unique names, and every need names an earlier stage. A failure here is a bug. */
export function checkRegistry(stages: readonly AnyStage[]): void {
  const seen = new Set<string>()
  for (const stage of stages) {
    if (seen.has(stage.name)) throw new Error(`stage ${stage.name} is registered twice`)
    for (const need of stage.needs) {
      if (!seen.has(need)) throw new Error(`stage ${stage.name} needs ${need}, which is not registered before it`)
    }
    seen.add(stage.name)
  }
}

export function selectStages(stages: readonly AnyStage[], names?: readonly string[]): Selection {
  checkRegistry(stages)
  if (!names) return { selected: [...stages], required: [] }
  const known = stages.map((s) => s.name)
  for (const name of names) {
    if (!known.includes(name)) {
      throw new UserError(`--stages: unknown stage "${name}" (stages: ${known.join(', ') || 'none registered'})`)
    }
  }
  const selected = stages.filter((s) => names.includes(s.name))
  const needed = new Set(selected.flatMap((s) => [...transitiveNeeds(stages, s.name)]))
  const required = stages.filter((s) => needed.has(s.name) && !names.includes(s.name))
  return { selected, required }
}

/** Every stage `name` reads, directly or through others. Needs come earlier in the registry, so one backward
 *  pass collects needs of needs too. */
function transitiveNeeds(stages: readonly AnyStage[], name: string): Set<string> {
  const needed = new Set<string>()
  for (const stage of [...stages].reverse()) {
    if (stage.name === name || needed.has(stage.name)) for (const need of stage.needs) needed.add(need)
  }
  return needed
}

/** The first selected stage that reads `stage`, directly or through others (for error messages). */
export function firstReader(selection: Selection, stage: string, stages: readonly AnyStage[]): AnyStage | undefined {
  return selection.selected.find((s) => transitiveNeeds(stages, s.name).has(stage))
}
