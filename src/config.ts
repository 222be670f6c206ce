// The pipeline configuration: one zod schema is the single source of keys, types, defaults and their reasons.
// pipeline.config.yaml, `--set` overrides and `run --help` all go through it (SPEC §2, §3, §7).
// Loading (YAML, line numbers, relative paths) lives in config-load.ts.
import { availableParallelism } from 'node:os'
import * as z from 'zod'

// Seed names become file names and pair names (`alpha--beta`), so they stay filesystem-safe and free of `--`.
const SEED_NAME = /^(?!.*--)[A-Za-z0-9][A-Za-z0-9._-]*$/

const seed = z
  .object({
    name: z
      .string()
      .regex(SEED_NAME, { message: 'letters, digits, ".", "_" or "-", without "--" (it separates pair names)' })
      .describe('required; names the seed in outputs and reports (e.g. "alpha"); unique'),
    checkpoint: z
      .string()
      .min(1)
      .describe(
        'required; directory with config.json and model.safetensors or pytorch_model.bin; relative to this file',
      ),
  })
  .strict()

const corpus = z
  .object({
    paths: z
      .array(z.string().min(1))
      .min(1)
      .describe('required; files, directories or globs of documents; relative to this file'),
    format: z
      .enum(['auto', 'jsonl', 'text', 'parquet'])
      .default('auto')
      .describe('default auto: chosen from each file name (.jsonl[.gz], .txt, .parquet); name it when names lie'),
    text_field: z
      .string()
      .min(1)
      .default('text')
      .describe('default "text": the field of a JSONL/Parquet record holding the document (the Pile and C4 use it)'),
    split_field: z
      .string()
      .min(1)
      .optional()
      .describe("default none: a record field naming the document's split; without it heldout_share decides"),
    strict: z
      .boolean()
      .default(false)
      .describe('default false: malformed records are skipped and counted; true makes the first one an error'),
  })
  .strict()

const tokenize = z
  .object({
    ctx: z
      .number()
      .int()
      .min(2)
      .default(512)
      .describe('default 512: tokens per row, BOS included (SPEC §2; the study used 512)'),
    max_tokens: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('default: the whole corpus; token budget over all rows, so a run has a known cost'),
    shuffle_seed: z
      .number()
      .int()
      .min(0)
      .default(0)
      .describe('default 0: documents are shuffled with this fixed, recorded seed so runs are reproducible'),
    heldout_share: z
      .number()
      .min(0)
      .lt(1)
      .default(0.05)
      .describe('default 0.05: share of documents kept out of extraction, for evaluating interventions later'),
  })
  .strict()

const extract = z
  .object({
    site: z
      .enum(['blocks.{l}.mlp.hook_post', 'blocks.{l}.mlp.hook_pre'])
      .default('blocks.{l}.mlp.hook_post')
      .describe('default blocks.{l}.mlp.hook_post: the site correlated (SPEC §1); hook_pre moments are kept too'),
    dtype: z
      .enum(['float16', 'float32'])
      .default('float32')
      .describe('default float32: stored activations stay exact; float16 halves the disk at ~1e-3 relative error'),
    rows_per_shard: z
      .number()
      .int()
      .positive()
      .default(64)
      .describe('default 64: a shard is the unit a kill can lose; keep it minutes, not hours'),
    batch_rows: z
      .number()
      .int()
      .positive()
      .default(8)
      .describe('default 8: rows per forward pass; more amortises call overhead and costs memory'),
    skip_tokens: z
      .array(z.string())
      .default(['\n'])
      .describe('default ["\\n"]: token strings left out of correlation (SPEC §2); BOS is always left out'),
    top_k: z
      .number()
      .int()
      .positive()
      .default(50)
      .describe('default 50: top-activating (row, position, value) kept per neuron, as the study\'s dataset examples'),
    mode: z
      .enum(['stored', 'streamed'])
      .default('stored')
      .describe('default stored: activations go to Parquet (small runs, re-analysis); streamed beyond ~1e6 tokens'),
  })
  .strict()

const correlate = z
  .object({
    threshold: z
      .number()
      .default(0.5)
      .describe('default 0.5: excess_corr above which a neuron is universal (the study\'s value, SPEC §3)'),
    baseline: z
      .object({
        kind: z
          .enum(['gaussian_rows', 'orthogonal'])
          .default('gaussian_rows')
          .describe('default gaussian_rows: the study\'s random rotation, for comparability; orthogonal is exact'),
        seed: z
          .number()
          .int()
          .min(0)
          .default(0)
          .describe('default 0: fixed so the baseline is reproducible'),
      })
      .strict()
      .prefault({})
      .describe('the random-direction baseline of SPEC §3'),
    max_memory_gib: z
      .number()
      .positive()
      .default(8)
      .describe('default 8: budget for the float64 cross sums (a GPT-2-small pair needs 10.1 GiB); above it, block over layers: stored mode per pair, one more pass over the shards per block; streamed mode for all pairs at once, one more pass of every model per block. A block\'s sums also stay within 4 GiB, the largest array a checkpoint can be written from in Node 20'),
    checkpoint_every: z
      .number()
      .int()
      .positive()
      .default(5_000_000)
      .describe('default 5000000 tokens: how often the correlate sums (streamed, full and screened modes alike) are saved; about the most a kill loses'),
    checkpoint_minutes: z
      .number()
      .positive()
      .default(10)
      .describe('default 10: streamed/correlate sums are also saved after this many minutes, whichever comes first'),
    operand_bits: z
      .literal([24, 16])
      .default(24)
      .describe('default 24: significant bits of the shifted activations in the pair sums\' chunk products on CPUs with AMX tiles: 24 is float32; 16 is ~1.5× faster, each value off by at most 2^-17 of itself and each product by 2^-15 (r by ~2^-16/√tokens). float16-stored activations (11 bits) always use 16'),
    mode: z
      .enum(['full', 'screened'])
      .default('full')
      .describe('default full: every pair\'s whole correlation matrix. screened (stored extraction only): the same maxima, argmaxes and flags, proven by bounds from a shared low-rank basis, with far fewer FLOPs where the activations are low-rank; baselines are exact only where a flag needs them (bench/research/README.md)'),
    screen: z
      .object({
        directions: z
          .number()
          .int()
          .positive()
          .default(16)
          .describe('default 16: principal directions per seed and layer that seed the shared basis'),
        basis: z
          .number()
          .int()
          .positive()
          .default(128)
          .describe('default 128: rows of the shared basis; more gives tighter bounds and costs more projections'),
      })
      .strict()
      .prefault({})
      .describe('the screened mode\'s basis (correlate.mode: screened)'),
  })
  .strict()

const reextract = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe('default false: a second forward pass only for chosen neurons, once universality is known (SPEC §7)'),
    neurons: z
      .union([z.literal('universal'), z.array(z.string().regex(/^\d+\.\d+$/, { message: 'a neuron "L.N", e.g. "3.117"' }))])
      .default('universal')
      .describe('default "universal": each seed\'s universal neurons; or a list of "L.N" for every seed'),
    random_per_neuron: z
      .number()
      .int()
      .min(0)
      .default(1)
      .describe('default 1: per chosen neuron, this many random others of the same layer, as a matched comparison set'),
    sample_seed: z.number().int().min(0).default(0).describe('default 0: fixed, so the random comparison set is reproducible'),
    max_tokens: z
      .number()
      .int()
      .positive()
      .default(1_000_000)
      .describe('default 1000000: token budget per seed (the study cached its universal neurons over 1e7)'),
    split: z
      .enum(['main', 'heldout'])
      .default('main')
      .describe('default main: which token rows; heldout rows were never used to find the neurons'),
  })
  .strict()

// Execution settings change speed, never results; stages keep them out of their params (and so out of hashes).
const execution = z
  .object({
    threads: z
      .number()
      .int()
      .positive()
      .default(() => availableParallelism())
      .describe('default: all cores; threads per inference session'),
    concurrency: z
      .number()
      .int()
      .positive()
      .default(1)
      .describe('default 1: units computing at once (extract: models running at once; each shard is written while the next runs); each already uses `threads`, so raise it only with cores to spare'),
    provider: z
      .enum(['cpu', 'cuda'])
      .default('cpu')
      .describe('default cpu: onnxruntime execution provider; cuda needs onnxruntime-node with CUDA libraries'),
  })
  .strict()

export const pipelineConfigSchema = z
  .object({
    output_dir: z
      .string()
      .min(1)
      .describe('required; every result, manifest and the lock live under it; relative to this file'),
    seeds: z
      .array(seed)
      .min(2)
      .superRefine(uniqueSeedNames)
      .describe('required, at least 2; the models to compare, identical except for the training seed'),
    tokenizer: z
      .string()
      .min(1)
      .optional()
      .describe("default: the first seed's checkpoint directory; tokenizer.json (or its directory) shared by all seeds"),
    corpus: corpus.describe('required; the documents activations are computed on'),
    tokenize: tokenize.prefault({}).describe('how documents become rows of tokens (SPEC §2)'),
    extract: extract.prefault({}).describe('which activations are computed and how they are kept (SPEC §1, §7)'),
    correlate: correlate.prefault({}).describe('all-pairs correlation and the universality test (SPEC §3)'),
    reextract: reextract.prefault({}).describe('activations of chosen neurons only, stored for later stages (SPEC §7)'),
    execution: execution.prefault({}).describe('how the work is spread over cores; never changes results'),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    if (cfg.correlate.mode === 'screened' && cfg.extract.mode === 'streamed') {
      ctx.addIssue({ code: 'custom', path: ['correlate', 'mode'], message: 'screened needs the stored activations (extract.mode: stored): it reads them four times' })
    }
  })
  .transform(({ tokenizer, ...rest }) => ({ ...rest, tokenizer: tokenizer ?? rest.seeds[0].checkpoint }))

function uniqueSeedNames(seeds: { name: string }[], ctx: z.RefinementCtx): void {
  const seen = new Set<string>()
  seeds.forEach(({ name }, i) => {
    if (seen.has(name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate seed name "${name}"` })
    seen.add(name)
  })
}

/** The validated configuration, with defaults applied and paths absolute (see config-load.ts). */
export type PipelineConfig = z.infer<typeof pipelineConfigSchema>
export type SeedConfig = PipelineConfig['seeds'][number]
export type CorpusConfig = PipelineConfig['corpus']
export type TokenizeConfig = PipelineConfig['tokenize']
export type ExtractConfig = PipelineConfig['extract']
export type CorrelateConfig = PipelineConfig['correlate']
export type ExecutionConfig = PipelineConfig['execution']
