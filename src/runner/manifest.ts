// A stage's manifest, `<output_dir>/<stage>/manifest.json`: per finished unit, its key, the params and input
// hashes it was computed from, and each output's size and content hash (src/io/content-hash.ts). An entry is
// written only after the unit's files are complete, so "in the manifest with matching outputs" means "done".
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomic } from '../io/atomic-write.js'
import { UserError } from '../errors.js'

// Format 1 recorded sha256 content hashes; its entries are not comparable with today's, so its units run again.
export const MANIFEST_FORMAT = 2

export interface InputRecord {
  name: string // upstream output (relative to output_dir) or external file (absolute path)
  hash: string
}

export interface OutputRecord {
  path: string // relative to output_dir
  size: number
  hash: string
}

export interface ManifestEntry {
  key: string // sha256 of stage name, version, params, unit id and input hashes (see unit-key.ts)
  version: number // the stage's version when this unit ran
  params: unknown
  inputs: InputRecord[]
  outputs: OutputRecord[]
  finished: string // ISO time
}

export interface StageManifest {
  format: number
  stage: string
  units: Record<string, ManifestEntry>
  /** Read from a manifest of an older format, whose entries were dropped: every unit runs again. Never written. */
  olderFormat?: number
}

export function manifestPath(outputDir: string, stage: string): string {
  return join(outputDir, stage, 'manifest.json')
}

/** The stage's manifest, or an empty one when the stage never ran. A manifest that is not ours is an error. */
export function readManifest(outputDir: string, stage: string): StageManifest {
  const path = manifestPath(outputDir, stage)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { format: MANIFEST_FORMAT, stage, units: {} }
    throw error
  }
  let manifest: StageManifest
  try {
    manifest = JSON.parse(text) as StageManifest
  } catch (error) {
    throw new UserError(`${path}: not valid JSON (${(error as Error).message}); delete it to recompute ${stage}`)
  }
  if (manifest.format === 1 && manifest.stage === stage) return { format: MANIFEST_FORMAT, stage, units: {}, olderFormat: 1 }
  if (manifest.format !== MANIFEST_FORMAT || manifest.stage !== stage || typeof manifest.units !== 'object') {
    throw new UserError(
      `${path}: expected a seedscope manifest (format ${MANIFEST_FORMAT}) for stage ${stage}; delete it to recompute ${stage}`,
    )
  }
  return manifest
}

/** Write the manifest atomically, units in id order so the file diffs cleanly. */
export function writeManifest(outputDir: string, manifest: StageManifest): void {
  const units = Object.fromEntries(Object.entries(manifest.units).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  const { olderFormat: _, ...current } = manifest
  writeFileAtomic(manifestPath(outputDir, manifest.stage), JSON.stringify({ ...current, units }, null, 2) + '\n')
}
