// vitest globalSetup: every test run gets its own temporary root, removed when the run ends. Tests (and the CLI
// processes they start) make their scratch directories with os.tmpdir(), which reads TMPDIR, so none of them is
// left behind in /tmp: a test file that forgot to clean up used to leave ~0.5 GB per run.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'seedscope-test-run-'))
  process.env.TMPDIR = root
  return () => rmSync(root, { recursive: true, force: true })
}
