// Drive the real CLI the way a user does: build it once with tsc into dist/, then spawn `node dist/cli.js`.
// Test files build under a lock and skip the build when the sources have not changed since the last one, so two
// test files never rewrite dist/ under a CLI the other is running.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const repo = fileURLToPath(new URL('../..', import.meta.url))
export const cliPath = join(repo, 'dist', 'cli.js')

// Checked again inside the lock: a test file that waited for another's build then finds it current.
const BUILD = `
  if [ -f dist/cli.js ] && [ "$(cat dist/.build-stamp 2>/dev/null)" = "$SOURCES" ]; then exit 0; fi
  npx tsc -p tsconfig.json; status=$?
  chmod +x dist/cli.js
  printf %s "$SOURCES" > dist/.build-stamp
  exit $status`

/** Build dist/ unless it was built from exactly these sources. */
export function buildCli(): void {
  const sources = sourceHash(join(repo, 'src'))
  const build = spawnSync('flock', ['/tmp/seedscope-build.lock', 'sh', '-c', BUILD], {
    cwd: repo,
    encoding: 'utf8',
    env: { ...process.env, SOURCES: sources },
  })
  // tsc still emits when another file of the project has type errors (someone's work in progress); say so loudly.
  if (build.status !== 0) console.warn(`tsc reported errors; testing what it emitted:\n${build.stdout}${build.stderr}`)
  if (!existsSync(cliPath)) throw new Error(`build produced no ${cliPath}:\n${build.stdout}${build.stderr}`)
}

function sourceHash(dir: string): string {
  const hash = createHash('sha256')
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const path = join(d, name)
      if (statSync(path).isDirectory()) walk(path)
      else if (name.endsWith('.ts')) hash.update(path).update(readFileSync(path))
    }
  }
  walk(dir)
  return hash.digest('hex')
}

export interface CliResult {
  status: number | null
  stdout: string
  stderr: string
}

/** Run the CLI to completion in `cwd`. */
export function runCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): CliResult {
  const result = spawnSync(process.execPath, [cliPath, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
  })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** Start the CLI and leave it running. */
export function startCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [cliPath, ...args], { cwd, env: { ...process.env, ...env }, stdio: 'pipe' })
}
