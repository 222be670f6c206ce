// Streamed-mode benchmark (SPEC §7): tokens/s of `extract.mode: streamed` (all seeds on the same rows, pair sums
// in memory, no activation files: `--stages extract` then `--stages correlate`, which only finishes the sums)
// against stored mode on the same tokens (`--stages extract` writing Parquet, then `--stages correlate` reading
// it back), on the bundled GPT-2 seeds present now (at least two: a copy of gpt2-s0 stands in for a missing
// second). Measured in the same run, interleaved: streamed, stored, streamed, … Streamed must not be slower
// (ratio ≥ 1). Both modes' pair tables are compared byte for byte, so the two timings are of the same results.
// Tokenizing is done first and never timed. Run with `npx tsx bench/streamed.ts` (make build first). Environment:
//   BENCH_STREAMED_TOKENS   token budget (default 150,000 / (seeds + pairs): the work grows with both)
//   BENCH_ROUNDS=1          timed stored runs (streamed runs once more)
//   BENCH_THREADS=<cores>   execution.threads
import { readdirSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { checkBuild, type CliRun, runStages } from './lib/cli-run.js'
import { envNumber, loadAverage, median, medianTiming, printHeader, printTable, ratioLine, thousands, type Timing } from './lib/measure.js'
import { bundledGpt2Seeds, mainTokens, modelCopy, removeOtherProjects, type Seed, writeProject } from './lib/project.js'

const ROUNDS = envNumber('BENCH_ROUNDS', 1)
const THREADS = envNumber('BENCH_THREADS', availableParallelism())
const CTX = 256
const ROWS_PER_SHARD = 32 // small enough that even the smallest default budget makes several shards

async function main(): Promise<void> {
  const seeds: Seed[] = bundledGpt2Seeds()
  let note = ''
  if (seeds.length < 2) {
    seeds.push(modelCopy('gpt2-s0', 'gpt2-s0-copy'))
    note = ` (only gpt2-s0 is trained so far: a copy of it is the second seed)`
  }
  const pairs = (seeds.length * (seeds.length - 1)) / 2
  const budget = envNumber('BENCH_STREAMED_TOKENS', Math.round(150_000 / (seeds.length + pairs) / 1000) * 1000)
  printHeader(
    'streamed: streamed mode vs stored mode (extract + correlate)',
    `seedscope run --stages extract, then correlate, with extract.mode streamed vs stored, on the same tokens; ` +
      `${seeds.length} GPT-2 seeds (${seeds.map((s) => s.name).join(', ')})${note}, ${pairs} pair(s), ` +
      `ctx ${CTX}, rows_per_shard ${ROWS_PER_SHARD}, ${THREADS} thread(s)`,
  )
  checkBuild()
  const project = (mode: 'stored' | 'streamed') =>
    writeProject(`streamed-${budget / 1000}k-${seeds.map((s) => s.name).join('-')}-${mode}`, {
      seeds, tokens: budget, ctx: CTX, rowsPerShard: ROWS_PER_SHARD, batchRows: 8, mode, threads: THREADS,
    })
  const stored = project('stored')
  const streamed = project('streamed')
  removeOtherProjects('streamed-', [stored, streamed])
  for (const dir of [stored, streamed]) await runStages(dir, 'tokenize') // untimed; skipped when up to date
  const { rows, tokens } = mainTokens(stored)
  console.log(`token budget ${thousands(budget)}: ${rows} main rows × ${CTX} = ${thousands(tokens)} tokens, each through ${seeds.length} models`)

  const runs: Record<'stored' | 'streamed', Run[]> = { stored: [], streamed: [] }
  const measure = async (mode: 'stored' | 'streamed') => {
    const dir = mode === 'stored' ? stored : streamed
    const extract = await runStages(dir, 'extract', { force: true })
    const correlate = await runStages(dir, 'stats,correlate', { force: true }) // stats: the within-layer moments both modes need
    const run = { extract, correlate, wall: extract.wall + correlate.wall, cpu: extract.cpu + correlate.cpu }
    runs[mode].push(run)
    console.log(
      `  ${`${mode} ${runs[mode].length}`.padEnd(11)} extract ${extract.wall.toFixed(1).padStart(6)} s + stats+correlate ${correlate.wall.toFixed(1).padStart(5)} s` +
        ` = ${run.wall.toFixed(1).padStart(6)} s wall ${run.cpu.toFixed(1).padStart(6)} s cpu  ${thousands(tokens / run.wall).padStart(6)} tok/s  (load ${loadAverage()})`,
    )
  }
  for (let round = 0; round < ROUNDS; round++) {
    await measure('streamed')
    await measure('stored')
  }
  await measure('streamed')

  const s = medianTiming(runs.streamed)
  const d = medianTiming(runs.stored)
  const peak = (mode: 'stored' | 'streamed') => median(runs[mode].map((r) => Math.max(r.extract.maxRssMiB, r.correlate.maxRssMiB))).toFixed(0)
  const part = (mode: 'stored' | 'streamed', stage: 'extract' | 'correlate') => median(runs[mode].map((r) => r[stage].wall)).toFixed(1)
  console.log(`\nstreamed vs stored, medians of ${runs.streamed.length} and ${runs.stored.length} run(s), load average now ${loadAverage()}:`)
  printTable(
    ['', 'tokens/s (wall)', 'tokens/s per CPU s', 'extract s', 'correlate s', 'wall s', 'CPU s', 'peak RSS MiB'],
    [
      ['streamed', thousands(tokens / s.wall), thousands(tokens / s.cpu), part('streamed', 'extract'), part('streamed', 'correlate'), s.wall.toFixed(1), s.cpu.toFixed(1), peak('streamed')],
      ['stored (extract + correlate)', thousands(tokens / d.wall), thousands(tokens / d.cpu), part('stored', 'extract'), part('stored', 'correlate'), d.wall.toFixed(1), d.cpu.toFixed(1), peak('stored')],
    ],
  )
  console.log(ratioLine('streamed / stored (wall)', d.wall / s.wall, { min: 1 }))
  console.log(ratioLine('streamed / stored (per CPU second)', d.cpu / s.cpu))
  console.log(samePairTables(stored, streamed))
}

interface Run extends Timing {
  extract: CliRun
  correlate: CliRun
}

/** Both modes must give byte-identical pair tables (test/e2e/pipeline.test.ts checks it); say whether they did here. */
function samePairTables(stored: string, streamed: string): string {
  const files = readdirSync(join(stored, 'out/correlate')).filter((f) => f.endsWith('.parquet'))
  const differ = files.filter((f) => !readFileSync(join(stored, 'out/correlate', f)).equals(readFileSync(join(streamed, 'out/correlate', f))))
  return differ.length === 0
    ? `pair tables byte-identical between the modes: yes (${files.length} file(s))`
    : `pair tables DIFFER between the modes: ${differ.join(', ')} (the timings compare different results)`
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
