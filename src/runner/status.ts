// `seedscope status` as a library call: every stage's units, done, pending or stale, with the reasons. Reads
// only; it takes no lock, so it can watch a run in progress.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { PipelineConfig } from '../config.js'
import { UserError } from '../errors.js'
import { FileHashCache } from './hash.js'
import { checkRegistry } from './order.js'
import { Results, type UnitState } from './results.js'
import { type AnyStage, cacheDirOf, type Unit } from './stage.js'

export interface StageStatus {
  stage: string
  units: UnitState[]
  waitingFor: string[] // needs that are not fully done: units may be missing until they are
  problem?: string // why the units could not be listed (a UserError from the stage, e.g. a missing corpus)
}

export async function pipelineStatus(cfg: PipelineConfig, stages: readonly AnyStage[]): Promise<StageStatus[]> {
  checkRegistry(stages)
  const fileHashes = new FileHashCache(join(cacheDirOf(cfg.output_dir), 'file-hashes.json'))
  const results = new Results(cfg, stages, fileHashes)
  const report: StageStatus[] = []
  for (const stage of stages) {
    let units: Unit[] = []
    let problem: string | undefined
    try {
      units = await results.expandUnits(stage)
    } catch (error) {
      if (!(error instanceof UserError)) throw error
      problem = error.message
    }
    for (const unit of units) results.setState(stage.name, await results.assess(stage, unit, 'status'))
    const waitingFor = stage.needs.filter((need) => {
      const states = results.statesOf(need)
      return states.length === 0 || states.some((s) => s.state !== 'done')
    })
    report.push({ stage: stage.name, units: results.statesOf(stage.name), waitingFor, ...(problem && { problem }) })
  }
  // Remember input hashes for next time, but do not create output_dir just for that.
  if (existsSync(cfg.output_dir)) fileHashes.save()
  return report
}
