// tokenize → extract → stats → correlate → universal through the real CLI on real text and three small GPT-2
// checkpoints, every number checked against an independent computation: activations against `seedscope
// inspect`, moments against a direct float64 pass, correlations, argmaxes and the rotation baseline against
// brute-force float64 Pearson over the stored activations.
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, test } from 'vitest'
import { readActivationBlock, readActivationShardInfo, type ShardInfo } from '../../src/io/activation-store.js'
import { readSafetensors } from '../../src/io/safetensors.js'
import { readTable } from '../../src/io/tables.js'
import { rotationSeed } from '../../src/stages/correlate/pair-sums.js'
import { readTokenRows } from '../../src/stages/tokenize/stage.js'
import { amxGemm } from '../../src/stats/kernels.js'
import { rotationMatrix } from '../../src/stats/rotation.js'
import { buildCli, runCli } from '../helpers/cli.js'
import { TINY, writeTinyGpt2 } from '../helpers/tiny-models.js'

const SEEDS = ['s0', 's1', 's2']
const CTX = 64
const ROWS_PER_SHARD = 16
const N = TINY.nLayers * TINY.dMlp
let root: string
const out = (...parts: string[]) => join(root, 'out', ...parts)

function config(outputDir: string, mode: 'stored' | 'streamed'): string {
  return [
      `output_dir: ${outputDir}`,
      'seeds:',
      ...SEEDS.map((s) => `  - { name: ${s}, checkpoint: models/${s} }`),
      `corpus: { paths: [${join(process.cwd(), 'test/fixtures/corpus/sample.jsonl')}] }`,
      `tokenize: { ctx: ${CTX}, max_tokens: ${CTX * 50} }`,
      `extract: { rows_per_shard: ${ROWS_PER_SHARD}, batch_rows: 8, top_k: 5, mode: ${mode} }`,
      'execution: { threads: 1 }',
      '',
    ].join('\n')
}

beforeAll(() => {
  buildCli()
  root = mkdtempSync(join(tmpdir(), 'seedscope-pipeline-'))
  SEEDS.forEach((s, i) => writeTinyGpt2(join(root, 'models', s), i))
  writeFileSync(join(root, 'pipeline.config.yaml'), config('out', 'stored'))
  const run = runCli(['run'], root)
  expect(run.stdout + run.stderr, run.stderr).toMatch(/run: tokenize 1 run.*universal 3 run/)
  expect(run.status).toBe(0)
})

/** All stored activations of a seed, [neurons, tokens] over every shard in order, in float64. */
async function storedActivations(seed: string): Promise<{ x: Float64Array; tokens: number; infos: ShardInfo[] }> {
  const infos: ShardInfo[] = []
  const blocks: Float32Array[] = []
  for (let shard = 0; ; shard++) {
    const path = out('extract', seed, `shard-${String(shard).padStart(4, '0')}.parquet`)
    let info: ShardInfo
    try {
      info = await readActivationShardInfo(path)
    } catch {
      break
    }
    infos.push(info)
    blocks.push(await readActivationBlock(path, info, 0, N))
  }
  const tokens = infos.reduce((sum, i) => sum + i.tokens, 0)
  const x = new Float64Array(N * tokens)
  let offset = 0
  infos.forEach((info, k) => {
    for (let g = 0; g < N; g++) for (let t = 0; t < info.tokens; t++) x[g * tokens + offset + t] = blocks[k][g * info.tokens + t]
    offset += info.tokens
  })
  return { x, tokens, infos }
}

/** Rows standardised to zero mean and unit norm; NaN rows for zero variance. */
function standardise(x: Float64Array, rows: number, tokens: number): Float64Array {
  const z = new Float64Array(x.length)
  for (let i = 0; i < rows; i++) {
    let mean = 0
    for (let t = 0; t < tokens; t++) mean += x[i * tokens + t]
    mean /= tokens
    let norm = 0
    for (let t = 0; t < tokens; t++) norm += (x[i * tokens + t] - mean) ** 2
    norm = Math.sqrt(norm)
    for (let t = 0; t < tokens; t++) z[i * tokens + t] = norm > 0 ? (x[i * tokens + t] - mean) / norm : NaN
  }
  return z
}

function dot(z: Float64Array, i: number, w: Float64Array, j: number, tokens: number): number {
  let s = 0
  for (let t = 0; t < tokens; t++) s += z[i * tokens + t] * w[j * tokens + t]
  return s
}

describe('stored activations', () => {
  test('equal `seedscope inspect` hook_post at every valid position of a shard', async () => {
    const info = await readActivationShardInfo(out('extract', 's1', 'shard-0001.parquet'))
    const stored = await readActivationBlock(out('extract', 's1', 'shard-0001.parquet'), info, 0, N)
    const rows = await readTokenRows(out('tokenize'), { rowStart: ROWS_PER_SHARD, rowEnd: 2 * ROWS_PER_SHARD })
    expect(rows.map((r) => r.row)).toEqual(info.rows)
    writeFileSync(join(root, 'ids.json'), JSON.stringify(rows.map((r) => [...r.tokens])))
    const r = runCli(['inspect', '--model', 'models/s1', '--input-ids', 'ids.json', '--out', 'inspect.safetensors', '--threads', '1'], root)
    expect(r.status, r.stderr).toBe(0)
    const inspected = readSafetensors(join(root, 'inspect.safetensors'))
    let column = 0
    for (let p = 0; p < rows.length * CTX; p++) {
      if (!info.valid[p]) continue
      for (let g = 0; g < N; g++) {
        const layer = Math.floor(g / TINY.dMlp)
        const want = (inspected.get(`blocks.${layer}.mlp.hook_post`)!.data as Float32Array)[p * TINY.dMlp + (g % TINY.dMlp)]
        expect(Math.abs(stored[g * info.tokens + column] - want)).toBeLessThanOrEqual(1e-5 + 1e-5 * Math.abs(want))
      }
      column++
    }
    expect(column).toBe(info.tokens)
    // BOS and "\n" are never valid (SPEC §2)
    rows.forEach((row, i) => {
      expect(info.valid[i * CTX]).toBe(0)
      row.tokens.forEach((id, p) => id === 198 && expect(info.valid[i * CTX + p]).toBe(0))
    })
  })

  test('neuron statistics equal a direct float64 computation over the same tokens', async () => {
    const rows = await readTokenRows(out('tokenize'))
    const main = rows.filter((r) => r.split === 'main')
    writeFileSync(join(root, 'all.json'), JSON.stringify(main.map((r) => [...r.tokens])))
    const r = runCli(['inspect', '--model', 'models/s0', '--input-ids', 'all.json', '--out', 'all.safetensors', '--threads', '1'], root)
    expect(r.status, r.stderr).toBe(0)
    const inspected = readSafetensors(join(root, 'all.safetensors'))
    const { infos } = await storedActivations('s0')
    const valid = infos.flatMap((i) => [...i.valid])
    const stats = await readTable(out('stats', 's0.parquet'))
    for (const g of [0, 7, TINY.dMlp + 3, N - 1]) {
      const layer = Math.floor(g / TINY.dMlp)
      const pre = inspected.get(`blocks.${layer}.mlp.hook_pre`)!.data as Float32Array
      const values: number[] = []
      valid.forEach((v, p) => v && values.push(pre[p * TINY.dMlp + (g % TINY.dMlp)]))
      const n = values.length
      const mean = values.reduce((a, b) => a + b, 0) / n
      const m = (k: number) => values.reduce((a, x) => a + (x - mean) ** k, 0) / n
      const row = stats[g]
      expect(row.count).toBe(n)
      expect(row.mean as number).toBeCloseTo(mean, 5)
      expect(row.variance as number).toBeCloseTo(m(2), 5)
      expect(row.skew as number).toBeCloseTo(m(3) / m(2) ** 1.5, 4)
      expect(row.kurtosis as number).toBeCloseTo(m(4) / m(2) ** 2, 4)
      expect(row.frequency).toBe(values.filter((x) => x > 0).length / n)
    }
  })
})

describe('correlations', () => {
  test('pair maxima, argmaxes and the rotation baseline equal brute-force float64 Pearson', async () => {
    const a = await storedActivations('s0')
    const b = await storedActivations('s1')
    expect(a.tokens).toBe(b.tokens)
    const T = a.tokens
    const za = standardise(a.x, N, T)
    const zb = standardise(b.x, N, T)
    const table = await readTable(out('correlate', 's0--s1.parquet'))
    const rowsA = table.filter((r) => r.seed === 's0')
    const rowsB = table.filter((r) => r.seed === 's1')
    const r = new Float64Array(N * N)
    for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) r[i * N + j] = dot(za, i, zb, j, T)
    for (let i = 0; i < N; i++) {
      let best = -Infinity, arg = -1
      for (let j = 0; j < N; j++) if (r[i * N + j] > best) [best, arg] = [r[i * N + j], j]
      expect(rowsA[i].max_corr as number).toBeCloseTo(best, 6)
      expect((rowsA[i].max_layer as number) * TINY.dMlp + (rowsA[i].max_neuron as number)).toBe(arg)
    }
    for (let j = 0; j < N; j++) {
      let best = -Infinity, arg = -1
      for (let i = 0; i < N; i++) if (r[i * N + j] > best) [best, arg] = [r[i * N + j], i]
      expect(rowsB[j].max_corr as number).toBeCloseTo(best, 6)
      expect((rowsB[j].max_layer as number) * TINY.dMlp + (rowsB[j].max_neuron as number)).toBe(arg)
    }
    // Baseline of s0's neurons: correlate with R·b, token by token, for every layer of s1 (SPEC §3).
    const d = TINY.dMlp
    const rotatedSeed = rotationSeed(0, 's1')
    const baseline = new Float64Array(N).fill(-Infinity)
    for (let layer = 0; layer < TINY.nLayers; layer++) {
      const R = rotationMatrix(d, 'gaussian-unit-rows', rotatedSeed, layer)
      const rotated = new Float64Array(d * T)
      for (let k = 0; k < d; k++) {
        for (let j = 0; j < d; j++) {
          const w = R[k * d + j]
          for (let t = 0; t < T; t++) rotated[k * T + t] += w * b.x[(layer * d + j) * T + t]
        }
      }
      const zr = standardise(rotated, d, T)
      for (let i = 0; i < N; i++) for (let k = 0; k < d; k++) baseline[i] = Math.max(baseline[i], dot(za, i, zr, k, T))
    }
    for (let i = 0; i < N; i++) expect(rowsA[i].baseline as number).toBeCloseTo(baseline[i], 6)
  })

  test('universal tables aggregate every pair of each seed (SPEC §3)', async () => {
    for (const seed of SEEDS) {
      const rows = await readTable(out('universal', `${seed}.parquet`))
      expect(rows).toHaveLength(N)
      const others = SEEDS.filter((s) => s !== seed)
      for (const row of rows) {
        const corr = others.map((o) => row[`max_corr_${o}`] as number)
        const base = others.map((o) => row[`baseline_${o}`] as number)
        const mean = (v: number[]) => v.reduce((x, y) => x + y, 0) / v.length
        expect(row.max_corr).toBe(Math.max(...corr))
        expect(row.min_corr).toBe(Math.min(...corr))
        expect(row.mean_corr as number).toBeCloseTo(mean(corr), 12)
        expect(row.mean_baseline as number).toBeCloseTo(mean(base), 12)
        expect(row.excess_corr as number).toBeCloseTo(mean(corr) - mean(base), 12)
        expect(row.is_universal).toBe(mean(corr) - mean(base) > 0.5)
      }
    }
  })

  test('a second run computes nothing', () => {
    const again = runCli(['run'], root)
    expect(again.status).toBe(0)
    expect(again.stdout + again.stderr).toMatch(/run: tokenize 0 run, 1 skipped; extract 0 run, \d+ skipped; stats 0 run, 3 skipped; correlate 0 run, 3 skipped; universal 0 run, 3 skipped/)
  })
})

describe('streamed mode', () => {
  test('gives the same statistics, pair tables and universal tables as stored mode, bit for bit (SPEC §7)', async () => {
    writeFileSync(join(root, 'streamed.yaml'), config('out-streamed', 'streamed'))
    const run = runCli(['run', '--config', 'streamed.yaml'], root)
    expect(run.status, run.stderr).toBe(0)
    expect(existsSync(join(root, 'out-streamed', 'extract', 's0', 'shard-0000.parquet'))).toBe(false) // no activations
    const files = [
      ...SEEDS.flatMap((s) => [`stats/${s}.parquet`, `stats/${s}.top.parquet`, `universal/${s}.parquet`]),
      'correlate/s0--s1.parquet', 'correlate/s0--s2.parquet', 'correlate/s1--s2.parquet',
    ]
    for (const file of files) {
      const stored = await readTable(out(file))
      const streamed = await readTable(join(root, 'out-streamed', file))
      expect(streamed, file).toEqual(stored)
      expect(readFileSync(join(root, 'out-streamed', file)).equals(readFileSync(out(file))), file).toBe(true)
    }
  })
})

describe('correlate.operand_bits: 16', () => {
  test('stored and streamed modes still agree bit for bit, and each correlation stays within 1e-5 of float32 operands', async () => {
    cpSync(out(), join(root, 'out-bits16'), { recursive: true })
    const bits16 = 'correlate: { operand_bits: 16 }\n'
    writeFileSync(join(root, 'bits16.yaml'), config('out-bits16', 'stored') + bits16)
    writeFileSync(join(root, 'bits16-streamed.yaml'), config('out-bits16-streamed', 'streamed') + bits16)
    const stored = runCli(['run', '--config', 'bits16.yaml'], root)
    expect(stored.status, stored.stderr).toBe(0)
    expect(stored.stdout + stored.stderr).toMatch(/extract 0 run, \d+ skipped; stats 0 run, 3 skipped; correlate 3 run/)   // only the pair sums change
    const streamed = runCli(['run', '--config', 'bits16-streamed.yaml'], root)
    expect(streamed.status, streamed.stderr).toBe(0)
    for (const file of [...SEEDS.map((s) => `universal/${s}.parquet`), 'correlate/s0--s1.parquet', 'correlate/s0--s2.parquet', 'correlate/s1--s2.parquet']) {
      expect(readFileSync(join(root, 'out-bits16-streamed', file)).equals(readFileSync(join(root, 'out-bits16', file))), file).toBe(true)
    }
    let differ = 0
    for (const seed of SEEDS) {
      const [exact, rounded] = await Promise.all([readTable(out('universal', `${seed}.parquet`)), readTable(join(root, 'out-bits16', 'universal', `${seed}.parquet`))])
      exact.forEach((row, i) => {
        for (const column of ['max_corr', 'mean_corr', 'min_corr', 'excess_corr']) {
          expect(Math.abs((rounded[i][column] as number) - (row[column] as number)), `${seed} ${column} ${i}`).toBeLessThan(1e-5)
          if (rounded[i][column] !== row[column]) differ++
        }
      })
    }
    if (amxGemm.problem === null) expect(differ).toBeGreaterThan(0)   // the setting reached the tiles (elsewhere it changes nothing)
  })
})

describe('streamed mode split into layer blocks', () => {
  test('runs one pass per block of A\'s layers when the pairs\' sums do not fit max_memory_gib, with the same tables', async () => {
    // 3 pairs × one layer of A (64 × 128 neurons) × 16 bytes ≈ 0.4 MB: a budget of 0.0005 GiB fits one layer at a time
    const yaml = config('out-blocked', 'streamed') + 'correlate: { max_memory_gib: 0.0005 }\n'
    writeFileSync(join(root, 'blocked.yaml'), yaml)
    const run = runCli(['run', '--config', 'blocked.yaml'], root)
    expect(run.status, run.stderr).toBe(0)
    expect(run.stdout + run.stderr).toMatch(/extract 2 run/)
    expect(existsSync(join(root, 'out-blocked', 'extract', 'pairs', 's0--s1.cross.layers-1-1.safetensors'))).toBe(true)
    const files = [...SEEDS.map((s) => `universal/${s}.parquet`), 'correlate/s0--s1.parquet', 'correlate/s0--s2.parquet', 'correlate/s1--s2.parquet']
    for (const file of files) {
      expect(readFileSync(join(root, 'out-blocked', file)).equals(readFileSync(out(file))), file).toBe(true)
    }
    const again = runCli(['run', '--config', 'blocked.yaml'], root)
    expect(again.stdout + again.stderr).toMatch(/extract 0 run, 2 skipped; stats 0 run, 3 skipped; correlate 0 run, 3 skipped/)
  })
})

describe('screened correlate', () => {
  test('proves the full computation\'s maxima, argmaxes and flags; baselines exact or bounded around the exact one', async () => {
    const full = await Promise.all(SEEDS.map((s) => readTable(out('universal', `${s}.parquet`))))
    // A threshold in the middle of the excess values, so that flags sit on both sides of it and near it.
    const excess = full.flat().map((r) => r.excess_corr as number).filter(Number.isFinite).sort((x, y) => x - y)
    const threshold = excess[Math.floor(excess.length / 2)]
    cpSync(out(), join(root, 'out-screened'), { recursive: true })
    // A small basis: these random models' activations are far from low-rank, so it prunes little, but it runs.
    const screen = `correlate: { mode: screened, threshold: ${threshold}, screen: { directions: 4, basis: 24 } }\n`
    writeFileSync(join(root, 'screened.yaml'), config('out-screened', 'stored') + screen)
    const run = runCli(['run', '--config', 'screened.yaml'], root)
    expect(run.status, run.stderr).toBe(0)
    expect(run.stdout + run.stderr).toMatch(/extract 0 run, \d+ skipped; stats 0 run, 3 skipped; correlate 1 run.*universal 3 run/)
    expect(run.stdout + run.stderr).toMatch(/screened: [\d.]+ TFLOP, [\d.]+× fewer than the full computation/)
    const report = JSON.parse(readFileSync(join(root, 'out-screened', 'correlate', 'screened.json'), 'utf8'))
    expect(report.undecided).toBeGreaterThan(0)
    for (const [k, seed] of SEEDS.entries()) {
      const rows = await readTable(join(root, 'out-screened', 'universal', `${seed}.parquet`))
      for (const [i, row] of rows.entries()) {
        const exact = full[k][i]
        expect(row.is_universal, `${seed} ${i}`).toBe((exact.excess_corr as number) > threshold)
        for (const other of SEEDS.filter((s) => s !== seed)) {
          expect(row[`max_corr_${other}`] as number).toBeCloseTo(exact[`max_corr_${other}`] as number, 6)
          expect([row[`max_layer_${other}`], row[`max_neuron_${other}`]]).toEqual([exact[`max_layer_${other}`], exact[`max_neuron_${other}`]])
        }
        const base = exact.mean_baseline as number
        if (Number.isFinite(row.mean_baseline)) expect(row.mean_baseline as number).toBeCloseTo(base, 6)
        else expect(base).toBeGreaterThanOrEqual((row.mean_baseline_lo as number) - 1e-9)
        if (!Number.isFinite(row.mean_baseline)) expect(base).toBeLessThanOrEqual((row.mean_baseline_hi as number) + 1e-9)
      }
    }
  })

  test('falls back to the full computation when the basis would cost more than it saves, with the full mode\'s tables', async () => {
    cpSync(out(), join(root, 'out-fallback'), { recursive: true })
    writeFileSync(join(root, 'fallback.yaml'), config('out-fallback', 'stored') + 'correlate: { mode: screened, screen: { directions: 24, basis: 96 } }\n')
    const run = runCli(['run', '--config', 'fallback.yaml'], root)
    expect(run.status, run.stderr).toBe(0)
    expect(run.stdout + run.stderr).toMatch(/screening would cost [\d.]+× the full computation before pruning anything .*computing every pair in full instead/)
    expect(JSON.parse(readFileSync(join(root, 'out-fallback', 'correlate', 'screened.json'), 'utf8')).fallback).toBe('full')
    const files = [...SEEDS.map((s) => `universal/${s}.parquet`), 'correlate/s0--s1.parquet', 'correlate/s0--s2.parquet', 'correlate/s1--s2.parquet']
    for (const file of files) expect(readFileSync(join(root, 'out-fallback', file)).equals(readFileSync(out(file))), file).toBe(true)
  })
})

describe('reextract', () => {
  test('stores only the chosen neurons and a matched random sample of their layers, equal to the full extraction', async () => {
    const budget = CTX * ROWS_PER_SHARD * 2
    const yaml = config('out', 'stored') + `reextract: { enabled: true, neurons: ["0.3", "1.10"], random_per_neuron: 2, max_tokens: ${budget} }\n`
    writeFileSync(join(root, 'reextract.yaml'), yaml)
    const run = runCli(['run', '--config', 'reextract.yaml', '--stages', 'reextract'], root)
    expect(run.status, run.stderr).toBe(0)
    for (const shard of [0, 1]) {
      const path = out('reextract', 's2', `shard-000${shard}.parquet`)
      const info = await readActivationShardInfo(path)
      const chosen = [3, TINY.dMlp + 10]
      expect(info.neurons).toHaveLength(6)
      for (const g of chosen) expect(info.neurons).toContain(g)
      const layers = info.neurons!.map((g) => Math.floor(g / TINY.dMlp))
      expect(layers.filter((l) => l === 0)).toHaveLength(3) // the chosen one and its two random companions
      const got = await readActivationBlock(path, info, 0, 6)
      const full = await readActivationShardInfo(out('extract', 's2', `shard-000${shard}.parquet`))
      expect(full.rows).toEqual(info.rows)
      const all = await readActivationBlock(out('extract', 's2', `shard-000${shard}.parquet`), full, 0, N)
      info.neurons!.forEach((g, row) => {
        expect(got.subarray(row * info.tokens, (row + 1) * info.tokens)).toEqual(all.subarray(g * full.tokens, (g + 1) * full.tokens))
      })
    }
    expect(existsSync(out('reextract', 's2', 'shard-0002.parquet'))).toBe(false) // the token budget: two shards
  })
})

describe('execution providers', () => {
  test('cuda, which this onnxruntime-node build lacks: plan warns and run refuses, one line naming the fix', () => {
    const cuda = ['--set', 'execution.provider=cuda']
    const plan = runCli(['plan', ...cuda], root)
    expect(plan.status, plan.stderr).toBe(0)
    expect(plan.stdout + plan.stderr).toMatch(/execution provider "cuda" is not available in this onnxruntime-node build.*ONNXRUNTIME_NODE_INSTALL=cuda12/)
    writeFileSync(join(root, 'cuda.yaml'), config('out-cuda', 'stored'))
    const run = runCli(['run', '--config', 'cuda.yaml', ...cuda], root)
    expect(run.status).toBe(1)
    const errors = run.stderr.split('\n').filter((line) => line.startsWith('seedscope:'))
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatch(/execution provider "cuda" is not available.*or set execution\.provider: cpu$/)
    expect(run.stderr).not.toMatch(/\n\s+at /)
  })
})
