// What a stage declares to the runner (STYLE.md §1), and what the runner hands a stage for one unit. The runner
// sees stages only through this declaration; a stage sees the world only through its StageContext.
import { join } from 'node:path'
import type { ExecutionConfig, PipelineConfig } from '../config.js'

/** `<output_dir>/.cache`: files that only make later runs faster; deleting it loses nothing. */
export const cacheDirOf = (outputDir: string) => join(outputDir, '.cache')

/** One piece of a stage's work: the thing a kill can lose and a resume skips. `id` is unique within the stage. */
export interface Unit {
  readonly id: string // e.g. 'alpha/shard-0003', 'alpha--beta'; shown in status and kept in the manifest
}

/** A unit of another stage, named by stage and unit id. */
export interface UnitRef {
  readonly stage: string
  readonly unit: string
}

/** What a unit reads. Both kinds enter its key through their content hashes. */
export interface UnitInputs {
  /** Upstream units whose outputs this unit reads; default: every unit of every stage in `needs`. */
  readonly units?: readonly UnitRef[]
  /** Absolute paths of files outside output_dir (checkpoints, corpus files); content-hashed, cached by size and mtime. */
  readonly files?: readonly string[]
}

export interface Stage<U extends Unit = Unit, P = unknown> {
  readonly name: string // one word, the same in the CLI, src/stages/ and output_dir
  readonly version: number // bump when the outputs change meaning: every unit becomes stale
  readonly needs: readonly string[] // stages whose outputs this one reads; they run first
  /**
   * The config this stage's results depend on, and nothing else: only this enters the unit key. Return a
   * sub-tree of the config with its section names, e.g. `({ extract: cfg.extract, tokenize: { ctx } })`, so
   * status can name a changed key by its config path (`params changed: extract.dtype`).
   */
  params(cfg: PipelineConfig): P
  /** The units, in the order they run. May read upstream results (finished units of `needs` stages). */
  units(cfg: PipelineConfig, upstream: UpstreamView): readonly U[] | Promise<readonly U[]>
  /** A unit's output files, relative to output_dir and under `<name>/`; all must exist when run() resolves. */
  outputs(unit: U): readonly string[]
  /** What a unit reads; default: all outputs of all `needs` stages, no external files. */
  inputs?(unit: U, cfg: PipelineConfig): UnitInputs | Promise<UnitInputs>
  /** Compute one unit and write its outputs through ctx. Never prints; may be cancelled through ctx.signal. */
  run(unit: U, ctx: StageContext<P>): Promise<void>
  /** Whether units may run at once (up to execution.concurrency); default false: one at a time. */
  readonly parallelUnits?: boolean
  /**
   * Units in flight per execution.concurrency (with parallelUnits; default 1). A stage whose units alternate
   * between a phase that uses every core and one that mostly waits (extract: forward passes, then a shard write)
   * asks for 2 and limits the first phase itself.
   */
  readonly pipelineDepth?: number
  /** What progress.advance() counts, for throughput (e.g. 'tok' gives `5,210 tok/s`). */
  readonly work?: string
  /** Estimates for `seedscope plan`, for the whole stage; absent numbers are shown as unknown. */
  plan?(cfg: PipelineConfig, env: PlanEnvironment): PlanEstimate | Promise<PlanEstimate>
}

export interface StageContext<P = unknown> {
  readonly stage: string
  readonly unit: string // the unit id
  readonly params: P // exactly what params(cfg) returned: the hashed slice
  readonly execution: ExecutionConfig // threads, concurrency, provider: speed only, not hashed
  readonly signal: AbortSignal // aborted when the run is cancelled (second Ctrl-C, or the caller's signal)
  readonly progress: UnitProgress
  readonly upstream: UpstreamView
  /** Absolute path of one of this unit's declared outputs. */
  outputPath(relative: string): string
  /** Write a declared output atomically (temporary sibling, fsync, rename). */
  writeFile(relative: string, data: Uint8Array | string | readonly Uint8Array[]): Promise<void>
  /**
   * For writers that need a path (e.g. a Parquet writer): returns a temporary path next to the declared output;
   * `commit()` fsyncs it and renames it into place. An uncommitted temporary is removed before the unit reruns.
   */
  temporaryOutput(relative: string): TemporaryOutput
  /**
   * A file for this unit's resumable state (e.g. streamed accumulators). It survives a kill and is offered again
   * only to a unit with the same key (same params and inputs); it is deleted once the unit is complete.
   */
  partialPath(name: string): string
  /** `<output_dir>/.cache`: files that only make later runs faster (e.g. model weights); deleting them loses nothing. */
  readonly cacheDir: string
  log(message: string): void
  warn(message: string): void
}

export interface TemporaryOutput {
  readonly path: string
  commit(): void
}

export interface UnitProgress {
  /** Total work of this unit, in the stage's `work` units; makes the ETA finer than whole units. */
  setTotal(total: number): void
  /** Add done work (e.g. tokens processed). */
  advance(amount: number): void
}

/** Read access to the results of earlier stages. */
export interface UpstreamView {
  /** Done units of a `needs` stage (ids, outputs relative to output_dir), in unit order; in a run, all of them. */
  units(stage: string): readonly FinishedUnit[]
  /** Absolute path of a file relative to output_dir. */
  path(relative: string): string
}

export interface FinishedUnit {
  readonly id: string
  readonly outputs: readonly string[]
}

/** What the machine offers, for a stage's plan(). */
export interface PlanEnvironment {
  readonly cores: number
  readonly threads: number
  readonly provider: ExecutionConfig['provider']
  readonly totalMemoryBytes: number
  readonly freeMemoryBytes: number
  readonly freeDiskBytes: number | undefined // under output_dir; undefined when it cannot be read
}

/** A stage's estimate for all its units; the plan scales it by the share still to run. */
export interface PlanEstimate {
  readonly tokens?: number // tokens the stage processes
  readonly flops?: number
  readonly diskBytes?: number // written under output_dir
  readonly memoryBytes?: number // peak resident memory
  readonly seconds?: number // wall time on this machine
  readonly notes?: readonly string[] // e.g. which extract mode the config implies, and why
}

// A Stage<U, P> is used by the runner as a Stage<Unit, unknown>; its run() and outputs() only ever get its own units.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyStage = Stage<any, any>
