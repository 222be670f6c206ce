// The reextract stage (SPEC §7): once universality is known, store activations again, but only for chosen neurons
// (default: each seed's universal neurons plus a matched random sample of the same layers, for comparison) over
// a token budget, in the stored format later stages read. At the study's scale this is how activations are kept:
// streamed mode finds the 1–5% worth keeping, this stage keeps them.
import type { PipelineConfig } from '../config.js'
import { UserError } from '../errors.js'
import { writeActivationShard } from '../io/activation-store.js'
import { checkpointFiles } from '../io/checkpoint.js'
import { readTable } from '../io/tables.js'
import { readModelConfig } from '../model/hf-config.js'
import { parseNeuron } from '../model/sites.js'
import type { Stage, StageContext, Unit, UpstreamView } from '../runner/stage.js'
import { seededRandom } from '../stats/random.js'
import { shardName } from './extract/index.js'
import { forwardShard } from './extract/shard.js'
import { skipTokenIds } from './extract/valid-positions.js'
import { TOKENIZE_OUTPUTS, tokenizeSummary } from './tokenize/stage.js'
import { universalPath } from './universal.js'

interface ReextractUnit extends Unit {
  seed: string
  checkpoint: string
  shard: number
  rowStart: number
  rowEnd: number
  skipIds: number[]
  chosen: number[] // global indices l·d_mlp + n asked for (universal, or listed)
  comparison: number[] // the matched random sample
}

function reextractParams(cfg: PipelineConfig) {
  const { neurons, random_per_neuron, sample_seed, max_tokens, split } = cfg.reextract
  const { site, dtype, rows_per_shard, batch_rows, skip_tokens } = cfg.extract
  return { reextract: { neurons, random_per_neuron, sample_seed, max_tokens, split }, extract: { site, dtype, rows_per_shard, batch_rows, skip_tokens } }
}

type ReextractParams = ReturnType<typeof reextractParams>

export const reextractPath = (seed: string, shard: number) => `reextract/${seed}/${shardName(shard)}.parquet`

export const reextract: Stage<ReextractUnit, ReextractParams> = {
  name: 'reextract',
  version: 1,
  needs: ['tokenize', 'universal'],
  work: 'tok',
  parallelUnits: true,
  pipelineDepth: 2, // as extract: forwardShard takes a forward slot, so one unit writes while the next runs its model
  params: reextractParams,
  units: (cfg, upstream) => (cfg.reextract.enabled ? reextractUnits(cfg, upstream) : []),
  outputs: (u) => [reextractPath(u.seed, u.shard)],
  inputs: (u, cfg) => ({
    units: [{ stage: 'tokenize', unit: 'corpus' }, ...(cfg.reextract.neurons === 'universal' ? [{ stage: 'universal', unit: u.seed }] : [])],
    files: checkpointFiles(u.checkpoint),
  }),
  run: (u, ctx) => reextractShard(u, ctx),
}

async function reextractUnits(cfg: PipelineConfig, upstream: UpstreamView): Promise<ReextractUnit[]> {
  if (upstream.units('tokenize').length === 0) return []
  const summary = tokenizeSummary(upstream.path(TOKENIZE_OUTPUTS.summary))
  const skipIds = await skipTokenIds(cfg, summary)
  const { max_tokens, split } = cfg.reextract
  const first = split === 'main' ? 0 : summary.rows.main
  const available = split === 'main' ? summary.rows.main : summary.rows.heldout
  const rows = Math.min(available, Math.ceil(max_tokens / summary.params.ctx))
  const perShard = cfg.extract.rows_per_shard
  const universal = new Set(upstream.units('universal').map((u) => u.id))
  const units: ReextractUnit[] = []
  for (const seed of cfg.seeds) {
    if (cfg.reextract.neurons === 'universal' && !universal.has(seed.name)) continue
    const { nLayers, dMlp } = readModelConfig(seed.checkpoint).shape
    const chosen = await chosenNeurons(cfg, upstream, seed.name, nLayers, dMlp)
    if (chosen.length === 0) continue
    const comparison = matchedSample(chosen, dMlp, cfg.reextract.random_per_neuron, cfg.reextract.sample_seed, seed.name)
    for (let shard = 0; shard * perShard < rows; shard++) {
      const rowStart = first + shard * perShard
      units.push({
        id: `${seed.name}/${shardName(shard)}`,
        seed: seed.name,
        checkpoint: seed.checkpoint,
        shard,
        rowStart,
        rowEnd: Math.min(first + rows, rowStart + perShard),
        skipIds,
        chosen,
        comparison,
      })
    }
  }
  return units
}

async function chosenNeurons(cfg: PipelineConfig, upstream: UpstreamView, seed: string, nLayers: number, dMlp: number): Promise<number[]> {
  const spec = cfg.reextract.neurons
  if (spec === 'universal') {
    const rows = await readTable(upstream.path(universalPath(seed)), { columns: ['layer', 'neuron', 'is_universal'] })
    return rows.filter((r) => r.is_universal).map((r) => (r.layer as number) * dMlp + (r.neuron as number))
  }
  return spec
    .map((text) => {
      const n = parseNeuron(text)!
      if (n.layer >= nLayers || n.neuron >= dMlp) {
        throw new UserError(`reextract.neurons: ${text} does not exist in seed ${seed} (${nLayers} layers × ${dMlp} neurons)`)
      }
      return n.layer * dMlp + n.neuron
    })
    .sort((a, b) => a - b)
}

/** Per layer, `perNeuron` random other neurons of that layer for each chosen one (fewer if the layer runs out). */
export function matchedSample(chosen: readonly number[], dMlp: number, perNeuron: number, sampleSeed: number, seed: string): number[] {
  const taken = new Set(chosen)
  const byLayer = new Map<number, number>()
  for (const g of chosen) byLayer.set(Math.floor(g / dMlp), (byLayer.get(Math.floor(g / dMlp)) ?? 0) + 1)
  const sample: number[] = []
  for (const [layer, count] of [...byLayer].sort((a, b) => a[0] - b[0])) {
    const pool = Array.from({ length: dMlp }, (_, n) => layer * dMlp + n).filter((g) => !taken.has(g))
    const random = seededRandom(sampleSeed, hashName(seed) ^ layer)
    for (let i = pool.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1))
      ;[pool[i], pool[j]] = [pool[j], pool[i]]
    }
    sample.push(...pool.slice(0, count * perNeuron))
  }
  return sample.sort((a, b) => a - b)
}

function hashName(name: string): number {
  let h = 0x811c9dc5
  for (const byte of Buffer.from(name)) h = Math.imul(h ^ byte, 0x01000193) >>> 0
  return h
}

async function reextractShard(u: ReextractUnit, ctx: StageContext<ReextractParams>): Promise<void> {
  const { extract: params } = ctx.params
  const { buffer, rows, positions, valid, layout } = await forwardShard(u, ctx, { site: params.site, batchRows: params.batch_rows })
  const neurons = [...new Set([...u.chosen, ...u.comparison])].sort((a, b) => a - b)
  const tokens = buffer.tokens
  const selected = new Float32Array(neurons.length * tokens)
  neurons.forEach((g, row) => selected.set(buffer.acts.subarray(g * tokens, (g + 1) * tokens), row * tokens))
  await writeActivationShard(ctx.outputPath(reextractPath(u.seed, u.shard)), {
    ...layout, rows: rows.map((r) => r.row), positions, valid, dtype: params.dtype, site: params.site, neurons,
    metadata: { 'seedscope.chosen': JSON.stringify(u.chosen), 'seedscope.comparison': JSON.stringify(u.comparison) },
  }, selected)
}
