// dist/cli.js run as a program (how `seedscope` and `make demo` start it): its #! line must work with the
// system's env and hand Node the allocator settings (src/cli.ts), after which a user's own settings still win.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { buildCli, cliPath } from '../helpers/cli.js'

let dir: string
beforeAll(() => {
  buildCli()
  dir = mkdtempSync(join(tmpdir(), 'seedscope-launcher-'))
  // Preloaded into the Node that the #! line starts: reports the environment it was given.
  writeFileSync(join(dir, 'report-env.cjs'), 'process.stderr.write(`GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES}\\n`)\n')
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function launch(env: NodeJS.ProcessEnv) {
  const { GLIBC_TUNABLES: _, ...rest } = process.env
  return spawnSync(cliPath, ['--version'], { encoding: 'utf8', env: { ...rest, NODE_OPTIONS: `--require=${join(dir, 'report-env.cjs')}`, ...env } })
}

test('the #! line starts the CLI with the allocator settings', () => {
  const result = launch({})
  expect(result.status).toBe(0)
  expect(result.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
  expect(result.stderr).toContain('GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=4294967296:\n')
})

test("a user's GLIBC_TUNABLES come after seedscope's, so they take precedence", () => {
  const result = launch({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' })
  expect(result.status).toBe(0)
  expect(result.stderr).toMatch(/GLIBC_TUNABLES=glibc\.malloc\.hugetlb=1:.*:glibc\.malloc\.hugetlb=0\n/)
})
