// The results under output_dir as the runner sees them: each stage's manifest, and each unit's state, decided as
// DVC decides `changed()`: first the definition (stage version, params), then the inputs, then the outputs.
// A unit's key is sha256(stage name, version, params, unit id, content hashes of its inputs), so changing a key
// that only one stage reads makes only that stage's units stale, and downstream units follow only when their
// inputs' bytes actually change.
import { stat } from 'node:fs/promises'
import { isAbsolute, join, normalize } from 'node:path'
import type { PipelineConfig } from '../config.js'
import { UserError } from '../errors.js'
import { FileHashCache, canonicalJson, hashJson } from './hash.js'
import { readManifest, type InputRecord, type ManifestEntry, type StageManifest } from './manifest.js'
import type { AnyStage, FinishedUnit, Unit, UnitInputs, UpstreamView } from './stage.js'

export type UnitStateName = 'done' | 'pending' | 'stale'

export interface UnitState {
  readonly unit: Unit
  readonly state: UnitStateName
  readonly reasons: readonly string[] // why it is pending or stale, e.g. 'params changed: extract.dtype'
  readonly corrupt: readonly string[] // outputs whose size or content hash disagrees with the manifest
  readonly key?: string // undefined while an input is unavailable
  readonly params: unknown
  readonly inputs?: readonly InputRecord[]
}

/** How hard `assess` looks: 'run' treats a missing input file as an error, 'status' reports it as a reason. */
export type AssessMode = 'run' | 'status'

export class Results {
  private readonly manifests = new Map<string, StageManifest>()
  private readonly states = new Map<string, Map<string, UnitState>>()

  constructor(
    readonly cfg: PipelineConfig,
    readonly stages: readonly AnyStage[],
    readonly fileHashes: FileHashCache,
  ) {}

  get outputDir(): string {
    return this.cfg.output_dir
  }

  manifest(stage: string): StageManifest {
    let manifest = this.manifests.get(stage)
    if (!manifest) this.manifests.set(stage, (manifest = readManifest(this.outputDir, stage)))
    return manifest
  }

  /** The stage's units, checked: ids unique, outputs relative, under `<stage>/` and not shared. */
  async expandUnits(stage: AnyStage): Promise<Unit[]> {
    const units = [...(await stage.units(this.cfg, this.upstreamFor(stage)))]
    const ids = new Set<string>()
    const owners = new Map<string, string>()
    for (const unit of units) {
      if (!unit.id || ids.has(unit.id)) throw new Error(`stage ${stage.name}: unit id "${unit.id}" is empty or repeated`)
      ids.add(unit.id)
      for (const output of stage.outputs(unit)) {
        const clean = normalize(output)
        if (isAbsolute(output) || clean !== output || !output.startsWith(`${stage.name}/`) || output.includes('/../')) {
          throw new Error(`stage ${stage.name} unit ${unit.id}: output "${output}" must be a clean path under ${stage.name}/`)
        }
        if (output === `${stage.name}/manifest.json`) throw new Error(`stage ${stage.name}: an output may not be its manifest`)
        const owner = owners.get(output)
        if (owner) throw new Error(`stage ${stage.name}: units ${owner} and ${unit.id} both declare ${output}`)
        owners.set(output, unit.id)
      }
    }
    this.states.set(stage.name, new Map())
    return units
  }

  /** The unit states of a stage assessed so far, in unit order. */
  statesOf(stage: string): UnitState[] {
    return [...(this.states.get(stage)?.values() ?? [])]
  }

  setState(stage: string, state: UnitState): void {
    this.states.get(stage)?.set(state.unit.id, state)
  }

  /**
   * Upstream results a stage may read: only stages it `needs`, only units that are done (outputs present and
   * matching the manifest). In a run every upstream unit is done by then; in status, units of a stale upstream
   * are left out, so a stage whose units come from upstream results shows none until that upstream is current.
   */
  upstreamFor(stage: AnyStage): UpstreamView {
    return {
      units: (name: string): FinishedUnit[] => {
        if (!stage.needs.includes(name)) throw new Error(`stage ${stage.name} reads ${name}, which is not in its needs`)
        const entries = this.manifest(name).units
        return this.statesOf(name)
          .filter(({ unit, state }) => state === 'done' && entries[unit.id])
          .map(({ unit }) => ({ id: unit.id, outputs: entries[unit.id].outputs.map((o) => o.path) }))
      },
      path: (relative: string) => join(this.outputDir, relative),
    }
  }

  /** Decide whether a unit is done, pending or stale, and why. */
  async assess(stage: AnyStage, unit: Unit, mode: AssessMode): Promise<UnitState> {
    const params = stage.params(this.cfg)
    const entry: ManifestEntry | undefined = this.manifest(stage.name).units[unit.id]
    const gathered = await this.gatherInputs(stage, unit, mode)
    const base = { unit, params, corrupt: [] as string[] }
    if ('unavailable' in gathered) {
      return { ...base, state: entry ? 'stale' : 'pending', reasons: [gathered.unavailable] }
    }
    const inputs = gathered.inputs
    const key = unitKey(stage, params, unit, inputs)
    const withKey = { ...base, key, inputs }
    if (!entry) {
      const older = this.manifest(stage.name).olderFormat
      const reason = older ? `its manifest is from an older seedscope (format ${older}, sha256 hashes)` : 'not run yet'
      return { ...withKey, state: 'pending', reasons: [reason] }
    }
    if (entry.key !== key) return { ...withKey, state: 'stale', reasons: [definitionChange(stage, params, inputs, entry)] }

    const reasons: string[] = []
    const corrupt: string[] = []
    const recorded = new Map(entry.outputs.map((o) => [o.path, o]))
    for (const output of stage.outputs(unit)) {
      const record = recorded.get(output)
      const size = await fileSize(join(this.outputDir, output))
      if (!record || size === undefined) reasons.push(`output missing: ${output}`)
      else if (size !== record.size) {
        reasons.push(`output corrupt: ${output} (${size} bytes, manifest says ${record.size})`)
        corrupt.push(output)
      } else if ((await this.fileHashes.hash(join(this.outputDir, output), { quiet: true })) !== record.hash) {
        reasons.push(`output corrupt: ${output} (content hash differs from the manifest)`)
        corrupt.push(output)
      }
    }
    return { ...withKey, corrupt, state: reasons.length ? 'stale' : 'done', reasons }
  }

  /** Content hashes of a unit's inputs, or why they are not available yet. */
  private async gatherInputs(
    stage: AnyStage,
    unit: Unit,
    mode: AssessMode,
  ): Promise<{ inputs: InputRecord[] } | { unavailable: string }> {
    let declared: UnitInputs
    try {
      declared = (await stage.inputs?.(unit, this.cfg)) ?? {}
    } catch (error) {
      // A missing checkpoint or corpus is something status reports; run stops on it.
      if (mode === 'run' || !(error instanceof UserError)) throw error
      return { unavailable: `inputs unavailable: ${error.message}` }
    }
    const everything = () => stage.needs.flatMap((need) => this.statesOf(need).map((s) => ({ stage: need, unit: s.unit.id })))
    const refs = declared.units ?? everything()
    const inputs: InputRecord[] = []
    const notReady: string[] = []
    for (const ref of refs) {
      if (!stage.needs.includes(ref.stage)) throw new Error(`stage ${stage.name} reads ${ref.stage}, which is not in its needs`)
      const upstream = this.states.get(ref.stage)?.get(ref.unit)
      // Before its upstream ran, a stage may name units that do not exist yet; after, that is a bug in the stage.
      if (!upstream && mode === 'run') {
        throw new Error(`stage ${stage.name} unit ${unit.id} reads ${ref.stage} ${ref.unit}, which does not exist`)
      }
      const entry = this.manifest(ref.stage).units[ref.unit]
      if (upstream?.state !== 'done' || !entry) notReady.push(`${ref.stage} ${ref.unit}`)
      else for (const output of entry.outputs) inputs.push({ name: output.path, hash: output.hash })
    }
    if (notReady.length) return { unavailable: `upstream not up to date: ${listSome(notReady)}` }
    for (const file of declared.files ?? []) {
      try {
        inputs.push({ name: file, hash: await this.fileHashes.hash(file) })
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
        const message = `${file}: not found (an input of ${stage.name} ${unit.id})`
        if (mode === 'run') throw new UserError(message)
        return { unavailable: `input missing: ${file}` }
      }
    }
    return { inputs }
  }
}

/** The unit key. Input names are left out on purpose: moving a checkpoint directory does not change a result. */
export function unitKey(stage: AnyStage, params: unknown, unit: Unit, inputs: readonly InputRecord[]): string {
  return hashJson({
    stage: stage.name,
    version: stage.version,
    params,
    unit: unit.id,
    inputs: inputs.map((i) => i.hash),
  })
}

/** Why a recorded key no longer matches, in DVC's order: definition, then params, then inputs. */
function definitionChange(stage: AnyStage, params: unknown, inputs: readonly InputRecord[], entry: ManifestEntry): string {
  if (entry.version !== stage.version) return `stage version changed: ${entry.version} → ${stage.version}`
  const changed = changedKeys(entry.params, params, '')
  if (changed.length) return `params changed: ${listSome(changed)}`
  const before = new Map(entry.inputs.map((i) => [i.name, i.hash]))
  const names = inputs.filter((i) => before.get(i.name) !== i.hash).map((i) => i.name)
  const gone = entry.inputs.filter((i) => !inputs.some((j) => j.name === i.name)).map((i) => `${i.name} (gone)`)
  if (names.length || gone.length) return `inputs changed: ${listSome([...names, ...gone])}`
  return 'inputs changed: reordered or renamed'
}

/** Dotted paths at which two JSON values differ; lists compare whole. */
export function changedKeys(before: unknown, after: unknown, prefix: string): string[] {
  const isMapping = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
  if (isMapping(before) && isMapping(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])]
    return keys.flatMap((k) => changedKeys(before[k], after[k], prefix ? `${prefix}.${k}` : k))
  }
  return canonicalJson(before) === canonicalJson(after) ? [] : [prefix || '(all params)']
}

function listSome(items: readonly string[], shown = 3): string {
  return items.length <= shown ? items.join(', ') : `${items.slice(0, shown).join(', ')} and ${items.length - shown} more`
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}
