// Screened-correlate benchmark (issue 5, item 8): `correlate.mode: screened` against the full all-pairs
// computation on the same stored activations of the bundled GPT-2 seeds (what `make demo` correlates: the
// demo's token budget, float16, threshold 0.25). Both run `--stages correlate --force`, then `universal`, in one
// project (two configs, one output directory), interleaved: screened, full, screened, … The screened mode must
// give the same universal flags and argmaxes with ≥ 10× fewer FLOPs (as counted in correlate/screened.json), and
// should not be slower. Tokenize, extract and stats run first and are never timed.
// Run with `npx tsx bench/screened.ts` (make build first). Environment:
//   BENCH_SCREENED_TOKENS=196608  token budget (tokenize.max_tokens; the demo's)
//   BENCH_ROUNDS=1                timed full runs (screened runs once more)
//   BENCH_THREADS=<cores>         execution.threads
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { readTable } from '../src/io/tables.js'
import { checkBuild, type CliRun, runStages } from './lib/cli-run.js'
import { envNumber, loadAverage, medianTiming, printHeader, printTable, ratioLine, thousands } from './lib/measure.js'
import { bundledGpt2Seeds, mainTokens, type ProjectOptions, removeOtherProjects, writeProject } from './lib/project.js'

const TOKENS = envNumber('BENCH_SCREENED_TOKENS', 196_608)
const ROUNDS = envNumber('BENCH_ROUNDS', 1)
const THREADS = envNumber('BENCH_THREADS', availableParallelism())
const THRESHOLD = 0.25 // the demo's (pipeline.config.yaml says why)
const SCREENED_CONFIG = 'screened.config.yaml'

type Mode = 'full' | 'screened'

async function main(): Promise<void> {
  const seeds = bundledGpt2Seeds()
  printHeader(
    'screened: correlate.mode screened vs full',
    `seedscope run --stages correlate --force, then universal, on the same stored activations; ${seeds.length} bundled GPT-2 seeds ` +
      `(${seeds.map((s) => s.name).join(', ')}), threshold ${THRESHOLD}, ${THREADS} thread(s)`,
  )
  if (seeds.length < 2) {
    console.log('skipped: screening needs at least two trained seeds (data/models/gpt2-s<n>); copies of one seed correlate trivially')
    return
  }
  checkBuild()
  const options = (mode: Mode): ProjectOptions => ({
    seeds, tokens: TOKENS, ctx: 256, rowsPerShard: 64, batchRows: 16, mode: 'stored', dtype: 'float16', threads: THREADS,
    correlate: `{ threshold: ${THRESHOLD}${mode === 'screened' ? ', mode: screened' : ''} }`,
  })
  const name = `screened-${TOKENS / 1000}k-${seeds.map((s) => s.name).join('-')}`
  const project = writeProject(name, options('full'))
  writeProject(name, options('screened'), SCREENED_CONFIG)
  removeOtherProjects('screened-', [project])
  await runStages(project, 'tokenize,extract,stats') // untimed; skipped when up to date
  const { rows, tokens } = mainTokens(project)
  console.log(`token budget ${thousands(TOKENS)}: ${rows} main rows × 256 = ${thousands(tokens)} tokens per seed`)

  const runs: Record<Mode, CliRun[]> = { full: [], screened: [] }
  const flags: Partial<Record<Mode, string>> = {}
  const measure = async (mode: Mode) => {
    const config = mode === 'screened' ? SCREENED_CONFIG : undefined
    const run = await runStages(project, 'correlate', { force: true, config })
    await runStages(project, 'universal', { config }) // untimed: reads the pair tables, writes one table per seed
    runs[mode].push(run)
    flags[mode] = await universalFingerprint(project, seeds.map((s) => s.name))
    console.log(`  ${`${mode} ${runs[mode].length}`.padEnd(11)} ${run.wall.toFixed(1).padStart(6)} s wall ${run.cpu.toFixed(1).padStart(6)} s cpu  peak ${run.maxRssMiB.toFixed(0)} MiB  (load ${loadAverage()})`)
  }
  for (let round = 0; round < ROUNDS; round++) {
    await measure('screened')
    await measure('full')
  }
  await measure('screened')

  const report = JSON.parse(readFileSync(join(project, 'out/correlate/screened.json'), 'utf8'))
  const f = medianTiming(runs.full)
  const s = medianTiming(runs.screened)
  console.log(`\nscreened vs full, medians of ${runs.screened.length} and ${runs.full.length} run(s), load average now ${loadAverage()}:`)
  printTable(
    ['', 'wall s', 'CPU s', 'TFLOP (counted)'],
    [
      ['full', f.wall.toFixed(1), f.cpu.toFixed(1), (report.fullFlops / 1e12).toFixed(3)],
      ['screened', s.wall.toFixed(1), s.cpu.toFixed(1), (report.totalFlops / 1e12).toFixed(3)],
    ],
  )
  console.log(ratioLine('fewer FLOPs than full', report.fewerFlopsThanFull, { min: 10 }))
  console.log(ratioLine('screened / full (wall)', f.wall / s.wall, { min: 1 }))
  console.log(ratioLine('screened / full (per CPU second)', f.cpu / s.cpu))
  console.log(`candidates per neuron per pair ${report.candidatesPerNeuron.toFixed(1)}; ${report.undecided} flags refined exactly in ${report.rounds} round(s)`)
  console.log(
    flags.full === flags.screened
      ? 'universal flags and argmaxes identical between the modes: yes'
      : 'universal flags or argmaxes DIFFER between the modes (the timings compare different results)',
  )
}

/** Every seed's universal flags and argmaxes, as one string: equal strings, equal answers. */
async function universalFingerprint(project: string, seeds: string[]): Promise<string> {
  const parts: string[] = []
  for (const seed of seeds) {
    for (const row of await readTable(join(project, 'out/universal', `${seed}.parquet`))) {
      parts.push(seeds.filter((other) => other !== seed).map((other) => `${row[`max_layer_${other}`]}.${row[`max_neuron_${other}`]}`).join(',') + (row.is_universal ? '!' : ''))
    }
  }
  return parts.join(';')
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
