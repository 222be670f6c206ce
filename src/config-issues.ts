// Reading the config schema back: zod issues as `expected …, got …` sentences, and the schema's keys with their
// `.describe()` text, for unknown-key hints and for `--help`. The schema in config.ts stays the only source.
import * as z from 'zod'
import { pipelineConfigSchema } from './config.js'

export type KeyPath = readonly (string | number)[]

/** The part after `file:line key: ` for one zod issue; `value` is what the user wrote at the issue's path. */
export function describeIssue(issue: z.core.$ZodIssue, value: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return `required key missing (expected ${typeWord(issue.expected)})`
      return `expected ${typeWord(issue.expected)}, got ${shown(value)}`
    case 'invalid_value':
      return `expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${shown(value)}`
    case 'too_small':
    case 'too_big':
      return `expected ${bound(issue)}, got ${issue.origin === 'array' ? `${(value as unknown[]).length}` : shown(value)}`
    case 'invalid_format':
      return `expected ${issue.message}, got ${shown(value)}`
    default:
      return issue.message
  }
}

function bound(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  const small = issue.code === 'too_small'
  const limit = Number(small ? issue.minimum : issue.maximum)
  if (issue.origin === 'array') return `${small ? 'at least' : 'at most'} ${limit} ${limit === 1 ? 'entry' : 'entries'}`
  if (issue.origin === 'string') return small && limit === 1 ? 'a non-empty string' : `${limit} characters`
  const sign = small ? (issue.inclusive ? '≥' : '>') : issue.inclusive ? '≤' : '<'
  return `a number ${sign} ${limit}`
}

function typeWord(expected: string): string {
  const words: Record<string, string> = {
    string: 'a string',
    number: 'a number',
    int: 'an integer',
    boolean: 'true or false',
    array: 'a list',
    object: 'a mapping of keys',
  }
  return words[expected] ?? expected
}

/** A value as the user would recognise it from their YAML. */
function shown(value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
  if (typeof value === 'string') return JSON.stringify(value)
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a mapping'
  return String(value)
}

/** The schema node a key path leads to, looking through defaults, optionals and transforms. */
function schemaAt(path: KeyPath): z.ZodType | undefined {
  let node: z.ZodType | undefined = pipelineConfigSchema
  for (const segment of path) {
    node = unwrapped(node)
    if (node instanceof z.ZodObject) node = (node.shape as Record<string, z.ZodType>)[segment]
    else if (node instanceof z.ZodArray) node = node.element as z.ZodType
    else return undefined
  }
  return node
}

function unwrapped(node: z.ZodType | undefined): z.ZodType | undefined {
  while (true) {
    if (node instanceof z.ZodDefault || node instanceof z.ZodPrefault || node instanceof z.ZodOptional) {
      node = node.unwrap() as z.ZodType
    } else if (node instanceof z.ZodPipe) node = node.in as z.ZodType
    else return node
  }
}

/** The keys the schema allows at a mapping path, in declaration order. */
export function keysAt(path: KeyPath): string[] {
  const node = unwrapped(schemaAt(path))
  return node instanceof z.ZodObject ? Object.keys(node.shape) : []
}

export interface ConfigKey {
  key: string // dotted path, `seeds.N.name` for list entries
  description: string // the schema's .describe() text: default and reason
}

/** Every leaf key with its description, in schema order: the table behind `--set` and `run --help`. */
export function configKeys(): ConfigKey[] {
  const out: ConfigKey[] = []
  const walk = (schema: z.ZodType, key: string): void => {
    const node = unwrapped(schema)
    if (node instanceof z.ZodObject) {
      for (const [name, child] of Object.entries(node.shape as Record<string, z.ZodType>)) {
        walk(child, key ? `${key}.${name}` : name)
      }
    } else if (node instanceof z.ZodArray && unwrapped(node.element as z.ZodType) instanceof z.ZodObject) {
      walk(node.element as z.ZodType, `${key}.N`)
    } else {
      out.push({ key, description: schema.description ?? '' })
    }
  }
  walk(pipelineConfigSchema, '')
  return out
}
