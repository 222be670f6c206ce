// `seedscope plan` as a library call: per stage the units (all, and still to run) and the stage's own estimates
// of tokens, FLOPs, disk, memory and time (SPEC §7), scaled to the units still to run; then warnings when the
// free disk under output_dir or the machine's memory will not suffice. With `tokens`, a projection: every unit
// counts as to run, and stages estimate that many tokens instead of reading the corpus or tokenize's outputs.
import { statfsSync } from 'node:fs'
import { availableParallelism, freemem, totalmem } from 'node:os'
import { dirname } from 'node:path'
import type { PipelineConfig } from '../config.js'
import { providerProblem } from '../model/runtime.js'
import { UserError } from '../errors.js'
import { displayPath } from './lock.js'
import type { AnyStage, PlanEnvironment, PlanEstimate } from './stage.js'
import { pipelineStatus } from './status.js'

export interface StagePlan {
  stage: string
  units: number
  toRun: number
  waitingFor: string[] // units are not all known until these have run
  problem?: string // why the units could not be listed
  estimate: PlanEstimate // for the units still to run; empty when the stage makes no estimate
}

export interface PipelinePlan {
  stages: StagePlan[]
  env: PlanEnvironment
  warnings: string[]
}

export interface PlanOptions {
  /** Plan a run of this many tokens (tokenize.max_tokens) from scratch, whatever the corpus and outputs hold. */
  tokens?: number
}

/**
 * The environment a projection hands to stages. PlanEnvironment (stage.ts) does not declare `tokens` yet, so
 * stages read it through {@link assumedTokens} rather than a cast of their own.
 */
interface ProjectedEnvironment extends PlanEnvironment {
  readonly tokens?: number
}

/** The token count `plan --tokens` assumes, or undefined for a plan of the config as it stands. */
export function assumedTokens(env: PlanEnvironment): number | undefined {
  return (env as ProjectedEnvironment).tokens
}

export async function planPipeline(cfg: PipelineConfig, stages: readonly AnyStage[], options: PlanOptions = {}): Promise<PipelinePlan> {
  const env: ProjectedEnvironment = { ...planEnvironment(cfg), ...(options.tokens !== undefined && { tokens: options.tokens }) }
  const status = await pipelineStatus(cfg, stages)
  const plans: StagePlan[] = []
  for (const [i, stage] of stages.entries()) {
    const { units, waitingFor, problem } = status[i]
    const toRun = units.filter((u) => u.state !== 'done').length
    // Units not yet known (upstream has not run) count as all to run; a projection runs everything.
    const share = options.tokens !== undefined || problem ? 1 : units.length ? toRun / units.length : waitingFor.length ? 1 : 0
    const estimate = scaled(await stageEstimate(stage, cfg, env), share)
    plans.push({ stage: stage.name, units: units.length, toRun, waitingFor, estimate, ...(problem && { problem }) })
  }
  const provider = providerProblem(cfg.execution.provider)
  return { stages: plans, env, warnings: [...(provider ? [provider] : []), ...resourceWarnings(cfg.output_dir, plans, env)] }
}

/** A stage's own estimate; one it cannot make for a reason the user can fix (a missing model) becomes a note. */
async function stageEstimate(stage: AnyStage, cfg: PipelineConfig, env: PlanEnvironment): Promise<PlanEstimate> {
  try {
    return (await stage.plan?.(cfg, env)) ?? {}
  } catch (error) {
    if (!(error instanceof UserError)) throw error
    return { notes: [`no estimate: ${error.message}`] }
  }
}

/** Work still to do; memory is a peak, so it does not shrink with the share. */
function scaled(estimate: PlanEstimate, share: number): PlanEstimate {
  const part = (n: number | undefined) => (n === undefined ? undefined : n * share)
  return {
    tokens: part(estimate.tokens),
    flops: part(estimate.flops),
    diskBytes: part(estimate.diskBytes),
    memoryBytes: share > 0 ? estimate.memoryBytes : undefined,
    seconds: part(estimate.seconds),
    notes: estimate.notes,
  }
}

/** Where the estimates exceed the free disk under `outputDir`, or a stage's peak exceeds the memory. */
export function resourceWarnings(outputDir: string, plans: readonly StagePlan[], env: PlanEnvironment): string[] {
  const warnings: string[] = []
  const disk = plans.reduce((sum, p) => sum + (p.estimate.diskBytes ?? 0), 0)
  if (env.freeDiskBytes !== undefined && disk > env.freeDiskBytes) {
    warnings.push(
      `${displayPath(outputDir)} needs about ${bytes(disk)} more, but its file system has ${bytes(env.freeDiskBytes)} free`,
    )
  }
  for (const p of plans) {
    const need = p.estimate.memoryBytes
    if (need === undefined) continue
    if (need > env.totalMemoryBytes) {
      warnings.push(`${p.stage} needs about ${bytes(need)} of memory at its peak; this machine has ${bytes(env.totalMemoryBytes)}`)
    } else if (need > env.freeMemoryBytes) {
      warnings.push(
        `${p.stage} needs about ${bytes(need)} of memory at its peak; ` +
          `${bytes(env.freeMemoryBytes)} is free now (${bytes(env.totalMemoryBytes)} total)`,
      )
    }
  }
  return warnings
}

export function planEnvironment(cfg: PipelineConfig): PlanEnvironment {
  // A container's memory limit counts, not the host's (constrainedMemory is 0 or absurdly large when unlimited).
  const limit = process.constrainedMemory?.() ?? 0
  const total = limit > 0 && limit < totalmem() ? limit : totalmem()
  return {
    cores: availableParallelism(),
    threads: cfg.execution.threads,
    provider: cfg.execution.provider,
    totalMemoryBytes: total,
    freeMemoryBytes: Math.min(freemem(), total),
    freeDiskBytes: freeDisk(cfg.output_dir),
  }
}

/** Free bytes for an unprivileged writer under `dir`, or under its nearest existing parent. */
function freeDisk(dir: string): number | undefined {
  for (let at = dir; ; at = dirname(at)) {
    try {
      const fs = statfsSync(at)
      return fs.bavail * fs.bsize
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(at) === at) return undefined
    }
  }
}

/** `74.0 GB`-style sizes, binary units. */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) (n /= 1024), i++
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}
