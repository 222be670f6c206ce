// `seedscope plan` through the real CLI on a small project (three tiny GPT-2 seeds, the sample corpus): a table
// and a mode recommendation; calibration measured once and then read from the cache (counted by its entries,
// not timed); a disk warning for a token count no disk holds; the study's projection; and a config whose models
// do not exist yet, answered with notes instead of an error.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, test } from 'vitest'
import { buildCli, runCli } from '../helpers/cli.js'
import { writeTinyGpt2 } from '../helpers/tiny-models.js'

const SEEDS = ['s0', 's1', 's2']
let root: string

function writeConfig(dir: string, seeds: string[], extra: string[] = []): void {
  writeFileSync(
    join(dir, 'pipeline.config.yaml'),
    [
      'output_dir: out',
      'seeds:',
      ...seeds.map((s) => `  - { name: ${s}, checkpoint: models/${s} }`),
      `corpus: { paths: [${join(process.cwd(), 'test/fixtures/corpus/sample.jsonl')}] }`,
      'tokenize: { ctx: 64 }',
      'extract: { rows_per_shard: 16, batch_rows: 8, top_k: 5 }',
      'execution: { threads: 1 }',
      ...extra,
      '',
    ].join('\n'),
  )
}

const calibrations = () => JSON.parse(readFileSync(join(root, 'out', '.cache', 'calibration.json'), 'utf8')).entries as { key: { what: string }; measuredAt: string }[]

beforeAll(() => {
  buildCli()
  root = mkdtempSync(join(tmpdir(), 'seedscope-plan-'))
  SEEDS.forEach((s, i) => writeTinyGpt2(join(root, 'models', s), i))
  writeConfig(root, SEEDS)
})

describe('seedscope plan', () => {
  test('prints a table per stage, the calibration and a mode recommendation; a second plan measures nothing', () => {
    const first = runCli(['plan'], root)
    expect(first.status, first.stderr).toBe(0)
    const lines = first.stdout.split('\n')
    expect(lines[0]).toMatch(/^machine: \d+ cores, .* memory .* free under out, provider cpu$/)
    expect(lines[1]).toMatch(/^stage +units +to run +tokens +FLOPs +disk +memory +time$/)
    expect(lines[3]).toMatch(/^extract +\? +\? +[\d.]+k +[\d.]+e\+\d+ +[\d.]+ [KM]iB +[\d.]+ MiB +\d+ (s|min)$/)
    expect(lines[5]).toMatch(/^correlate +\? +\? .* \d+ (s|min)$/)
    expect(first.stdout).toMatch(/^tokenize: ≈ 89\.7 KB of corpus in 1 file at [\d.]+ bytes\/token \(measured on its first \d+ documents\)/m)
    expect(first.stdout).toMatch(/^extract: mode: stored in the config; recommended stored: .* fit easily/m)
    expect(first.stdout).toMatch(/^extract: calibrated forward of s0's extraction graph \(2 layers × 64 neurons, d_model 32, 2 rows × 64 tokens, 1 threads\): [\d,]+ tok\/s .* measured now/m)
    expect(first.stdout).toMatch(/^correlate: calibrated correlate pair sums: \w+ [\d.]+ GFLOP\/s on float(16|32) chunks of (2048×2048 neurons × 4096|512×512 neurons × 1024) tokens .* measured now/m)
    expect(first.stdout).toMatch(/^correlate: the float64 cross sums \(128\.0 KiB per pair\) fit max_memory_gib 8: one pass per pair$/m)
    const measured = calibrations()
    expect(measured.map((e) => e.key.what).sort()).toEqual(['bytes-per-token', 'forward', 'gemm'])

    const second = runCli(['plan'], root)
    expect(second.status, second.stderr).toBe(0)
    expect(calibrations()).toEqual(measured) // nothing measured again: same entries, same times
    expect(second.stdout).not.toMatch(/measured now/)
    expect(second.stdout).toMatch(/^tokenize: .* \(measured on its first \d+ documents, cached\)/m)
    expect(second.stdout).toMatch(/^extract: calibrated forward .* cached, measured \d{4}-\d\d-\d\d \d\d:\d\d UTC/m)
    expect(second.stdout).toMatch(/^correlate: calibrated correlate pair sums: .* cached, measured \d{4}-\d\d-\d\d \d\d:\d\d UTC/m)
  })

  test('after tokenize, the estimate uses its summary; --tokens projects a run no disk holds, and warns', () => {
    expect(runCli(['run', '--stages', 'tokenize'], root).status).toBe(0)
    const planned = runCli(['plan'], root)
    expect(planned.stdout).toMatch(/^tokenize: \d+ main rows from tokenize\/summary\.json$/m)
    expect(planned.stdout).toMatch(/^extract +\d+ +\d+ /m) // units known now

    const huge = runCli(['plan', '--tokens', '1e15'], root)
    expect(huge.status, huge.stderr).toBe(0)
    expect(huge.stdout).toMatch(/^tokenize: --tokens 1e\+15: tokenize\.max_tokens assumed/m)
    expect(huge.stdout).toMatch(/^tokenize: the corpus holds only ≈ [\d.]+e\+4 tokens; a real run would stop there$/m)
    expect(huge.stdout).toMatch(/^extract: mode: stored in the config; recommended streamed: .* of activations would take \d+× the .* free$/m)
    expect(huge.stderr).toMatch(/^warning: .*out needs about .* more, but its file system has .* free$/m)
  })

  test("--study projects the study's scale: 2.7e17 FLOPs per pair, ~37 TB stored, blocking under max_memory_gib", () => {
    const study = runCli(['plan', '--study'], root)
    expect(study.status, study.stderr).toBe(0)
    expect(study.stdout).toMatch(/^projection at the study's scale \(SPEC §7\): GPT-2 small \(12 layers, d_model 768, d_mlp 3072; N = 36,864\), 5 seeds × 1e8 tokens, ctx 512, float16, streamed mode/)
    expect(study.stdout).toMatch(/^extract: forward 0\.19 GFLOP\/token/m)
    expect(study.stdout).toMatch(/stored would write 36\.9 TB: 73\.7 KB per valid token per seed at float16/)
    expect(study.stdout).toMatch(/^correlate: 10 pairs × 2·N²·T = 2\.72e\+17 FLOPs \(N = 36,864, T = 1\.0e8 valid tokens\)/m)
    expect(study.stdout).toMatch(/^correlate: accumulators per pair: N² = 5\.1 GiB float32, 10\.1 GiB float64/m)
    expect(study.stdout).toMatch(/^correlate: blocking needed: .* max_memory_gib 8; stored mode would split A's layers in 3 blocks of ≤ 4 layers/m)
    // 10 pairs' sums for one layer of A (10 × 3072 × 36,864 × 8 bytes, plus margin) exceed 8 GiB: a pass per layer
    expect(study.stdout).toMatch(/^extract: time: 12 × \(forward [\d.]+ d \+ loading models .*\) \+ statistics .* \+ pair sums [\d.]+ d$/m)
    expect(study.stdout).toMatch(/^extract: streamed: all 10 pairs' float64 sums \(101\.\d GiB\) do not fit max_memory_gib 8: 12 passes over the data, each with ≤ 1 of A's layers/m)
    expect(study.stdout).toMatch(/^plan: \d+ units to run, about [\d.]+ d/m)
  })

  test('a config whose models do not exist yet is planned with notes, not an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seedscope-plan-nomodels-'))
    writeConfig(dir, ['a', 'b'])
    const r = runCli(['plan'], dir)
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^extract: no seed's shape is readable \(.*models\/a\/config\.json: not found/m)
    expect(r.stdout).toMatch(/^tokenize +1 +1 +[\d.]+k /m) // the tokens are still estimated
  })
})
