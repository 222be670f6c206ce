// Config problems through the real CLI: each bad config gives exactly one line per problem, naming file, line and
// key, and a non-zero exit. Plus what a good config becomes: defaults, absolute paths, typed overrides.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { loadConfig } from '../../src/config-load.js'
import { UserError } from '../../src/errors.js'
import { buildCli, repo, runCli } from '../helpers/cli.js'

const GOOD = `# a comment first, so line numbers are not trivially 1
output_dir: out
seeds:
  - { name: alpha, checkpoint: models/a }
  - { name: beta, checkpoint: models/b }
corpus:
  paths: [corpus.jsonl]
`

// [case, file text, the exact stderr line(s) after "seedscope: ", extra CLI args]
const CASES: [string, string | undefined, string, string[]?][] = [
  ['no config file', undefined, 'pipeline.config.yaml: no such config file (pass --config FILE)'],
  [
    'YAML syntax error',
    GOOD + 'extract:\n  dtype: "float16\n',
    'pipeline.config.yaml:10 YAML syntax error: Missing closing "quote (column 1)',
  ],
  [
    'duplicate key is a syntax error',
    GOOD + 'output_dir: again\n',
    'pipeline.config.yaml:8 YAML syntax error: Map keys must be unique (column 1)',
  ],
  [
    'unknown key, with its line and a suggestion',
    GOOD + 'extract:\n  rows_per_shard: 32\n  dtyp: float16\n',
    'pipeline.config.yaml:10 extract.dtyp: unknown key (did you mean dtype?); ' +
      'expected one of site, dtype, rows_per_shard, batch_rows, skip_tokens, top_k, mode',
  ],
  [
    'unknown top-level key',
    GOOD + 'report:\n  title: x\n',
    'pipeline.config.yaml:8 report: unknown key; ' +
      'expected one of output_dir, seeds, tokenizer, corpus, tokenize, extract, correlate, reextract, execution',
  ],
  [
    'wrong enum value',
    GOOD + 'extract:\n  dtype: fp8\n',
    'pipeline.config.yaml:9 extract.dtype: expected "float16" | "float32", got "fp8"',
  ],
  [
    'nested enum',
    GOOD + 'correlate:\n  baseline: { kind: rotation }\n',
    'pipeline.config.yaml:9 correlate.baseline.kind: expected "gaussian_rows" | "orthogonal", got "rotation"',
  ],
  [
    'operand bits other than 24 or 16',
    GOOD + 'correlate:\n  operand_bits: 20\n',
    'pipeline.config.yaml:9 correlate.operand_bits: expected 24 | 16, got 20',
  ],
  [
    'missing required top-level key',
    GOOD.replace('output_dir: out\n', ''),
    'pipeline.config.yaml:1 output_dir: required key missing (expected a string)',
  ],
  [
    'missing required nested key',
    GOOD.replace('  paths: [corpus.jsonl]\n', '  format: jsonl\n'),
    'pipeline.config.yaml:6 corpus.paths: required key missing (expected a list)',
  ],
  [
    'wrong type',
    GOOD + 'tokenize:\n  ctx: "512"\n',
    'pipeline.config.yaml:9 tokenize.ctx: expected a number, got "512"',
  ],
  [
    'not an integer',
    GOOD + 'execution: { threads: 1.5 }\n',
    'pipeline.config.yaml:8 execution.threads: expected an integer, got 1.5',
  ],
  [
    'out of range',
    GOOD + 'tokenize:\n  heldout_share: 1\n',
    'pipeline.config.yaml:9 tokenize.heldout_share: expected a number < 1, got 1',
  ],
  [
    'one seed is not a comparison',
    GOOD.replace('  - { name: beta, checkpoint: models/b }\n', ''),
    'pipeline.config.yaml:3 seeds: expected at least 2 entries, got 1',
  ],
  [
    'duplicate seed names',
    GOOD.replace('name: beta', 'name: alpha'),
    'pipeline.config.yaml:5 seeds.1.name: duplicate seed name "alpha"',
  ],
  [
    'seed name that would break pair names',
    GOOD.replace('name: beta', 'name: be--ta'),
    'pipeline.config.yaml:5 seeds.1.name: expected letters, digits, ".", "_" or "-", without "--" ' +
      '(it separates pair names), got "be--ta"',
  ],
  [
    'several problems, one line each, in file order',
    GOOD + 'extract:\n  mode: lazy\n  dtype: fp8\n',
    'pipeline.config.yaml:9 extract.mode: expected "stored" | "streamed", got "lazy"\n' +
      'pipeline.config.yaml:10 extract.dtype: expected "float16" | "float32", got "fp8"',
  ],
  [
    'screened correlation without stored activations',
    GOOD + 'extract:\n  mode: streamed\ncorrelate:\n  mode: screened\n',
    'pipeline.config.yaml:11 correlate.mode: screened needs the stored activations (extract.mode: stored): it reads them four times',
  ],
  [
    'empty file',
    '# nothing yet\n',
    'pipeline.config.yaml:1 output_dir: required key missing (expected a string)\n' +
      'pipeline.config.yaml:1 seeds: required key missing (expected a list)\n' +
      'pipeline.config.yaml:1 corpus: required key missing (expected a mapping of keys)',
  ],
  [
    'a bad --set value names the flag',
    GOOD,
    '--set extract.dtype: expected "float16" | "float32", got "fp16"',
    ['--set', 'extract.dtype=fp16'],
  ],
  [
    'an unknown --set key',
    GOOD,
    '--set extract.dtyp: unknown key (did you mean dtype?); ' +
      'expected one of site, dtype, rows_per_shard, batch_rows, skip_tokens, top_k, mode',
    ['--set', 'extract.dtyp=float16'],
  ],
  ['a --set without a value', GOOD, '--set extract.dtype: expected KEY=VALUE (for example --set extract.dtype=float16)', ['--set', 'extract.dtype']],
]

let dir: string

beforeAll(() => {
  buildCli()
  dir = mkdtempSync(join(tmpdir(), 'seedscope-config-'))
})

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('a bad config through the CLI: the exact lines, exit code 1', () => {
  test.each(CASES)('%s', (name, text, expected, extra = []) => {
    const cwd = join(dir, name.replace(/\W+/g, '-'))
    mkdirSync(cwd)
    if (text !== undefined) writeFileSync(join(cwd, 'pipeline.config.yaml'), text)
    const result = runCli(['status', ...extra], cwd)
    expect(result.stderr).toBe(`seedscope: ${expected}\n`)
    expect(result.status).toBe(1)
  })
})

describe('a good config', () => {
  test('gets the schema defaults and absolute paths, relative to the config file', () => {
    const sub = join(dir, 'good', 'configs')
    mkdirSync(sub, { recursive: true })
    writeFileSync(join(sub, 'p.yaml'), GOOD)
    const { config } = loadConfig('configs/p.yaml', { cwd: join(dir, 'good') })
    expect(config.output_dir).toBe(join(sub, 'out'))
    expect(config.seeds).toEqual([
      { name: 'alpha', checkpoint: join(sub, 'models/a') },
      { name: 'beta', checkpoint: join(sub, 'models/b') },
    ])
    expect(config.tokenizer).toBe(join(sub, 'models/a')) // the first seed's directory
    expect(config.corpus).toEqual({ paths: [join(sub, 'corpus.jsonl')], format: 'auto', text_field: 'text', strict: false })
    expect(config.tokenize).toEqual({ ctx: 512, shuffle_seed: 0, heldout_share: 0.05 })
    expect(config.extract).toEqual({
      site: 'blocks.{l}.mlp.hook_post',
      dtype: 'float32',
      rows_per_shard: 64,
      batch_rows: 8,
      skip_tokens: ['\n'],
      top_k: 50,
      mode: 'stored',
    })
    expect(config.correlate).toEqual({
      threshold: 0.5,
      baseline: { kind: 'gaussian_rows', seed: 0 },
      max_memory_gib: 8,
      checkpoint_every: 5_000_000,
      checkpoint_minutes: 10,
      operand_bits: 24,
      mode: 'full',
      screen: { directions: 16, basis: 128 },
    })
    expect(config.execution.concurrency).toBe(1)
    expect(config.execution.threads).toBeGreaterThan(0)
  })

  test('--set values are typed by YAML, and their relative paths start at the working directory', () => {
    const cwd = join(dir, 'overrides')
    mkdirSync(join(cwd, 'configs'), { recursive: true })
    writeFileSync(join(cwd, 'configs', 'p.yaml'), GOOD)
    const { config } = loadConfig('configs/p.yaml', {
      cwd,
      overrides: ['tokenize.max_tokens=20000', 'extract.skip_tokens=[]', 'output_dir=runs/x', 'seeds.1.checkpoint=m/b2'],
    })
    expect(config.tokenize.max_tokens).toBe(20000)
    expect(config.extract.skip_tokens).toEqual([])
    expect(config.output_dir).toBe(join(cwd, 'runs/x'))
    expect(config.seeds[1].checkpoint).toBe(join(cwd, 'm/b2'))
    expect(config.seeds[0].checkpoint).toBe(join(cwd, 'configs', 'models/a'))
  })

  test.each(['pipeline.config.yaml', 'pipeline.pythia.yaml'])('the example %s validates', (file) => {
    const { config } = loadConfig(join(repo, file))
    expect(config.seeds.length).toBeGreaterThanOrEqual(2)
  })

  test('errors are UserErrors (one line, no stack, through cli.ts)', () => {
    expect(() => loadConfig(join(dir, 'missing.yaml'))).toThrow(UserError)
  })
})
