// Reading a project's output directory the way tests compare runs: its result files (without the bookkeeping)
// and each stage's manifest entries.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

/**
 * Every result file under `outputDir`, by path relative to it, except the bookkeeping: manifests (they hold
 * finish times) and dot-names (.lock, .cache/ with its mtimes, .partial/ and temporaries).
 */
export function outputFiles(outputDir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>()
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name)
      if (name === 'manifest.json' || name.startsWith('.')) continue
      if (statSync(path).isDirectory()) walk(path)
      else files.set(relative(outputDir, path), readFileSync(path))
    }
  }
  walk(outputDir)
  return files
}

/** Temporaries of atomic writes (`.<name>.<pid>.tmp`) anywhere under `outputDir`: a killed run's leftovers. */
export function strayTemporaries(outputDir: string): string[] {
  return (readdirSync(outputDir, { recursive: true }) as string[]).filter((p) => /(^|\/)\.[^/]+\.\d+\.tmp$/.test(p)).sort()
}

/** Unit id → finish time of each unit a stage's manifest records; empty while the manifest is not written. */
export function finishedUnits(outputDir: string, stage: string): Map<string, string> {
  let text: string
  try {
    text = readFileSync(join(outputDir, stage, 'manifest.json'), 'utf8')
  } catch {
    return new Map()
  }
  const units = (JSON.parse(text) as { units: Record<string, { finished: string }> }).units
  return new Map(Object.entries(units).map(([id, entry]) => [id, entry.finished]))
}

/** The paths of `a` whose bytes differ from `b`'s, and the paths only one of them has; empty when identical. */
export function differingFiles(a: Map<string, Buffer>, b: Map<string, Buffer>): string[] {
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort()
  return paths.filter((p) => !a.has(p) || !b.has(p) || !a.get(p)!.equals(b.get(p)!))
}
