// The demo (`make demo`): the repository's pipeline.config.yaml on the bundled GPT-2 seeds and corpus, cut to a
// few hundred rows so it fits CI, through plan, run and summary as a newcomer would call them.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, expect, test } from 'vitest'
import { readTable } from '../../src/io/tables.js'
import { buildCli, repo, runCli } from '../helpers/cli.js'

const outputDir = join(mkdtempSync(join(tmpdir(), 'seedscope-demo-')), 'out')
const small = ['--set', `output_dir=${outputDir}`, '--set', 'tokenize.max_tokens=32768']

beforeAll(() => buildCli())

test('the demo config passes plan validation and gets a recommendation', () => {
  const plan = runCli(['plan', ...small], repo)
  expect(plan.status, plan.stderr).toBe(0)
  expect(plan.stdout + plan.stderr).toMatch(/recommended stored/)
})

test('a short demo run: every seed gets a universal table, and summary prints the shares and neurons', async () => {
  const run = runCli(['run', ...small], repo)
  expect(run.status, run.stderr).toBe(0)
  for (const seed of ['s0', 's1', 's2', 's3']) {
    const rows = await readTable(join(outputDir, 'universal', `${seed}.parquet`))
    expect(rows).toHaveLength(4 * 512)
    expect(rows.every((r) => typeof r.max_corr === 'number' && (r.max_corr as number) <= 1 + 1e-9)).toBe(true)
  }
  const summary = runCli(['summary', ...small], repo)
  expect(summary.status, summary.stderr).toBe(0)
  expect(summary.stdout).toMatch(/s0 +\d+\/2048 \(\d+\.\d\d%\)/)
  expect(summary.stdout).toMatch(/neurons of s0/)
  expect(summary.stdout).toMatch(/…[^\n]*\[[^\n]*\][^\n]*…/) // a top-activating token, in context
})
