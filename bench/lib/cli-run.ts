// Runs `seedscope run --stages …` the way a user does (dist/cli.js through its #! line, which tunes glibc's
// allocator, in the project's directory) and measures the whole process: wall seconds, CPU seconds (all threads:
// the model workers, onnxruntime's pools, OpenBLAS), and its peak resident memory (the RSS high-water mark). GNU
// time reports the last two when it is installed; otherwise /proc/<pid> is polled, which can miss the last 50 ms
// before the process exits.
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO = fileURLToPath(new URL('../..', import.meta.url))
export const CLI = join(REPO, 'dist', 'cli.js')
const GNU_TIME = '/usr/bin/time'

export interface CliRun {
  wall: number // seconds, spawn to exit (Node start-up and planning included: it is what a user waits for)
  cpu: number // user + system seconds of the CLI process
  maxRssMiB: number // VmHWM
  output: string // stdout + stderr (progress lines, the summary line)
}

/** `seedscope run --stages <stages> [--force]` in `project` (its pipeline.config.yaml unless `config` names another). Throws on a non-zero exit. */
export async function runStages(project: string, stages: string, options: { force?: boolean; config?: string } = {}): Promise<CliRun> {
  const args = ['run', '--stages', stages, ...(options.force ? ['--force'] : []), ...(options.config ? ['--config', options.config] : [])]
  const timeFile = join(project, '.gnu-time.txt')
  const viaTime = existsSync(GNU_TIME)
  chmodSync(CLI, 0o755) // `make build` does this; a bare `npx tsc` does not
  const [command, argv] = viaTime ? [GNU_TIME, ['-v', '-o', timeFile, CLI, ...args]] : [CLI, args]
  const start = performance.now()
  const child = spawn(command, argv, { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d) => (output += d))
  child.stderr.on('data', (d) => (output += d))
  const polled = viaTime ? undefined : pollProc(child.pid!)
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  const wall = (performance.now() - start) / 1000
  polled?.stop()
  if (code !== 0) throw new Error(`seedscope run --stages ${stages} in ${project} exited with ${code}:\n${output.slice(-3000)}`)
  if (!viaTime) return { wall, cpu: polled!.cpu(), maxRssMiB: polled!.hwmKiB() / 1024, output }
  const report = readFileSync(timeFile, 'utf8')
  rmSync(timeFile, { force: true })
  const field = (label: string) => {
    const match = report.match(new RegExp(`${label}: ([0-9.]+)`))
    if (!match) throw new Error(`${GNU_TIME} -v printed no "${label}":\n${report}`)
    return Number(match[1])
  }
  return {
    wall,
    cpu: field('User time \\(seconds\\)') + field('System time \\(seconds\\)'),
    maxRssMiB: field('Maximum resident set size \\(kbytes\\)') / 1024,
    output,
  }
}

/** Poll VmHWM and CPU ticks of a live process every 50 ms; the last reading stands when it exits. */
function pollProc(pid: number) {
  let hwm = 0
  let ticks = 0
  const read = () => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      hwm = Math.max(hwm, Number(status.match(/VmHWM:\s+(\d+)/)?.[1] ?? 0))
      // Fields 14 and 15 of /proc/<pid>/stat (utime, stime), counted after the parenthesised command name.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
      ticks = Number(fields[11]) + Number(fields[12])
    } catch {
      // the process has exited between two polls
    }
  }
  const timer = setInterval(read, 50)
  return {
    stop: () => clearInterval(timer),
    hwmKiB: () => hwm,
    cpu: () => ticks / 100, // USER_HZ is 100 on Linux
  }
}

/**
 * dist/ is what the CLI runs; benchmarks that also call the library run src/ through tsx. Say so when dist/ is
 * older than a source file (someone edited src/ since the last `make build`).
 */
export function checkBuild(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`make build\` first (make bench does)`)
  const built = statSync(CLI).mtimeMs
  const newest = newestMtime(join(REPO, 'src'))
  if (newest.mtime > built) {
    console.log(`note: ${relative(REPO, newest.path)} is newer than dist/ (run make build); the CLI runs the older build`)
  }
}

function newestMtime(dir: string): { path: string; mtime: number } {
  let best = { path: '', mtime: 0 }
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    const candidate = entry.isDirectory() ? newestMtime(path) : entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? { path, mtime: statSync(path).mtimeMs } : best
    if (candidate.mtime > best.mtime) best = candidate
  }
  return best
}
