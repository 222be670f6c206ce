// Reading pipeline.config.yaml: YAML with a LineCounter, `--set key=value` overrides, validation through the one
// schema, and relative paths resolved against the config file's directory. Every problem the user can fix becomes
// a UserError whose lines read `pipeline.config.yaml:14 extract.dtype: expected "float16" | "float32", got "fp8"`.
import { readFileSync } from 'node:fs'
import { dirname, isAbsolute, normalize, resolve } from 'node:path'
import { LineCounter, parse as parseYaml, parseDocument, isMap, isScalar, isSeq, type Document } from 'yaml'
import type * as z from 'zod'
import { UserError } from './errors.js'
import { pipelineConfigSchema, type PipelineConfig } from './config.js'
import { describeIssue, keysAt, type KeyPath } from './config-issues.js'

export interface LoadedConfig {
  config: PipelineConfig // validated, defaults applied, paths absolute
  path: string // absolute path of the config file
}

export interface LoadOptions {
  overrides?: readonly string[] // `key=value` strings from `--set`, applied in order
  cwd?: string // where relative --config and --set paths start; default process.cwd()
}

/** Load, override, validate and resolve a config file. Throws UserError naming file:line and key. */
export function loadConfig(file: string, options: LoadOptions = {}): LoadedConfig {
  const cwd = options.cwd ?? process.cwd()
  const path = resolve(cwd, file)
  const shown = isAbsolute(file) ? file : normalize(file)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new UserError(`${shown}: no such config file (pass --config FILE)`)
    if (code === 'EISDIR') throw new UserError(`${shown}: is a directory, expected a YAML config file`)
    throw new UserError(`${shown}: cannot read (${(error as Error).message})`, { cause: error })
  }
  const config = parseConfig(text, { shown, dir: dirname(path), cwd, overrides: options.overrides ?? [] })
  return { config, path }
}

export interface ParseContext {
  shown: string // the file name as the user wrote it, for messages
  dir: string // relative paths in the file start here
  cwd: string // relative paths in overrides start here
  overrides: readonly string[]
}

/** Parse config text (exported for tests and for configs that do not come from a file). */
export function parseConfig(text: string, context: ParseContext): PipelineConfig {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const syntaxError = doc.errors[0]
  if (syntaxError) {
    const { line, col } = lineCounter.linePos(syntaxError.pos[0])
    throw new UserError(`${context.shown}:${line} YAML syntax error: ${syntaxError.message} (column ${col})`)
  }
  let raw: unknown
  try {
    raw = doc.toJS() ?? {}
  } catch (error) {
    throw new UserError(`${context.shown}: ${(error as Error).message}`, { cause: error })
  }
  const overridden = context.overrides.map(parseOverride)
  for (const { path, value } of overridden) raw = setAt(raw, path, value)

  const result = pipelineConfigSchema.safeParse(raw)
  if (!result.success) {
    const where = (path: KeyPath): Place => {
      // A key set by a flag, or a mapping a flag added a key to (`--set extract.dtyp=…` is reported at `extract`).
      const flag = overridden.find((o) => startsWith(path, o.path) || startsWith(o.path, path))
      if (flag) return { line: Number.MAX_SAFE_INTEGER, label: `--set ${flag.key}` }
      const line = lineOf(doc, lineCounter, path)
      return { line, label: `${context.shown}:${line} ${keyName(path)}` }
    }
    throw new UserError(formatIssues(result.error.issues, raw, where))
  }
  const fromFlag = (path: KeyPath) => overridden.some((o) => startsWith(path, o.path))
  return resolvePaths(result.data, raw, (path) => (fromFlag(path) ? context.cwd : context.dir))
}

interface Place {
  line: number // for ordering: the file's problems top to bottom, then the flags'
  label: string // `pipeline.config.yaml:14 extract.dtype` or `--set extract.dtype`
}

/** One line per problem, in file order. */
function formatIssues(issues: readonly z.core.$ZodIssue[], raw: unknown, where: (path: KeyPath) => Place): string {
  const lines: { line: number; text: string }[] = []
  const seen = new Set<string>()
  for (const issue of issues) {
    // Unknown keys come as one issue per object; report each key at its own line.
    const expanded =
      issue.code === 'unrecognized_keys'
        ? issue.keys.map((key) => ({ path: [...issue.path, key] as KeyPath, text: unknownKey(issue.path, key) }))
        : [{ path: issue.path as KeyPath, text: describeIssue(issue, valueAt(raw, issue.path as KeyPath)) }]
    for (const { path, text } of expanded) {
      // zod may report a second, derived issue at the same key (a wrong type, then a failed length check): keep one.
      const id = JSON.stringify(path)
      if (seen.has(id)) continue
      seen.add(id)
      const place = where(path)
      lines.push({ line: place.line, text: `${place.label}: ${text}` })
    }
  }
  return lines
    .sort((a, b) => a.line - b.line)
    .map((l) => l.text)
    .join('\n')
}

function unknownKey(parent: readonly PropertyKey[], key: string): string {
  const known = keysAt(parent as KeyPath)
  const near = known.find((k) => editDistance(k, key) <= 2)
  return `unknown key${near ? ` (did you mean ${near}?)` : ''}; expected one of ${known.join(', ')}`
}

function keyName(path: KeyPath): string {
  return path.length === 0 ? '(top level)' : path.join('.')
}

/** Line of the deepest YAML node on `path`: the key for mapping entries, the item for list entries. */
function lineOf(doc: Document, lineCounter: LineCounter, path: KeyPath): number {
  let node: unknown = doc.contents
  let line = 1 // a key missing at the top level has no better place
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment))
      if (!pair || !isScalar(pair.key) || !pair.key.range) break
      line = lineCounter.linePos(pair.key.range[0]).line
      node = pair.value
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as { range?: [number, number, number] } | undefined
      if (!item?.range) break
      line = lineCounter.linePos(item.range[0]).line
      node = item
    } else break
  }
  return line
}

interface Override {
  key: string
  path: KeyPath
  value: unknown
}

/** `extract.dtype=float16` → path and YAML-typed value (so `0.3` is a number and `[a, b]` a list). */
function parseOverride(text: string): Override {
  const eq = text.indexOf('=')
  const key = eq > 0 ? text.slice(0, eq).trim() : ''
  if (!key) throw new UserError(`--set ${text}: expected KEY=VALUE (for example --set extract.dtype=float16)`)
  let value: unknown
  try {
    value = parseYaml(text.slice(eq + 1))
  } catch (error) {
    throw new UserError(`--set ${key}: value is not valid YAML (${(error as Error).message.split('\n')[0]})`)
  }
  const path = key.split('.').map((segment) => (/^\d+$/.test(segment) ? Number(segment) : segment))
  return { key, path, value }
}

function setAt(root: unknown, path: KeyPath, value: unknown): unknown {
  if (path.length === 0) return value
  const [head, ...rest] = path
  const container: Record<PropertyKey, unknown> | unknown[] =
    typeof head === 'number' && Array.isArray(root)
      ? [...root]
      : root !== null && typeof root === 'object' && !Array.isArray(root)
        ? { ...(root as Record<string, unknown>) }
        : {}
  ;(container as Record<PropertyKey, unknown>)[head] = setAt((container as Record<PropertyKey, unknown>)[head], rest, value)
  return container
}

function valueAt(root: unknown, path: KeyPath): unknown {
  let node = root
  for (const segment of path) {
    if (node === null || typeof node !== 'object') return undefined
    node = (node as Record<PropertyKey, unknown>)[segment]
  }
  return node
}

function startsWith(path: KeyPath, prefix: KeyPath): boolean {
  return prefix.length <= path.length && prefix.every((segment, i) => String(segment) === String(path[i]))
}

/**
 * Make every path in the config absolute. `base(path)` says where a key's relative value starts: the config
 * file's directory, or the working directory for values given with --set. The default tokenizer follows the first
 * seed's checkpoint, wherever that came from.
 */
function resolvePaths(cfg: PipelineConfig, raw: unknown, base: (path: KeyPath) => string): PipelineConfig {
  const at = (path: KeyPath, value: string) => resolve(base(path), value)
  const seeds = cfg.seeds.map((seed, i) => ({ ...seed, checkpoint: at(['seeds', i, 'checkpoint'], seed.checkpoint) }))
  const tokenizerGiven = valueAt(raw, ['tokenizer']) !== undefined
  return {
    ...cfg,
    output_dir: at(['output_dir'], cfg.output_dir),
    seeds,
    tokenizer: tokenizerGiven ? at(['tokenizer'], cfg.tokenizer) : seeds[0].checkpoint,
    corpus: { ...cfg.corpus, paths: cfg.corpus.paths.map((p, i) => at(['corpus', 'paths', i], p)) },
  }
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}
