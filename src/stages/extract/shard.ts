// One extract unit: a seed's forward passes over one shard of token rows, batch by batch, into a neuron-major
// activation buffer and streaming statistics; then the shard's Parquet file and its statistics state.
import { writeActivationShard, countValid } from '../../io/activation-store.js'
import { writeSafetensors } from '../../io/safetensors.js'
import { startModelRunner } from '../../model/model-worker.js'
import { site } from '../../model/sites.js'
import type { StageContext } from '../../runner/stage.js'
import { NeuronMoments } from '../../stats/moments.js'
import { TopActivations } from '../../stats/top-activations.js'
import { readTokenRows } from '../tokenize/stage.js'
import type { ExtractParams, ExtractUnit } from './index.js'
import { activationPath, shardStatsPath } from './index.js'
import { shardStatsTensors } from './shard-stats.js'
import { validPositions } from './valid-positions.js'

export async function extractShard(unit: ExtractUnit, ctx: StageContext<ExtractParams>): Promise<void> {
  const { extract: params } = ctx.params
  const rows = await readTokenRows(ctx.upstream.path('tokenize'), { rowStart: unit.rowStart, rowEnd: unit.rowEnd })
  const positions = rows[0].tokens.length
  const valid = validPositions(rows.map((r) => r.tokens), positions, unit.skipIds)
  const tokens = countValid(valid)
  ctx.progress.setTotal(rows.length * positions)

  const model = await startModelRunner(unit.checkpoint, { mlpPre: true, mlpPost: true }, {
    threads: ctx.execution.threads,
    provider: ctx.execution.provider,
  })
  try {
    const { nLayers, dMlp } = model.config.shape
    const neurons = nLayers * dMlp
    const acts = new Float32Array(neurons * tokens) // [neurons, valid tokens]
    const moments = new NeuronMoments(neurons)
    const top = new TopActivations(neurons, params.top_k)
    const hook = params.site === 'blocks.{l}.mlp.hook_pre' ? site.mlpPre : site.mlpPost
    let tokenOffset = 0 // valid tokens written so far
    for (let start = 0; start < rows.length; start += params.batch_rows) {
      if (ctx.signal.aborted) throw new Error('extract: cancelled')
      const batch = rows.slice(start, start + params.batch_rows)
      const ids = new BigInt64Array(batch.length * positions)
      batch.forEach((r, b) => r.tokens.forEach((id, p) => (ids[b * positions + p] = BigInt(id))))
      const out = await model.run({ data: ids, batch: batch.length, positions })
      const batchValid = valid.subarray(start * positions, (start + batch.length) * positions)
      const batchTokens = batch.length * positions
      for (let layer = 0; layer < nLayers; layer++) {
        const pre = out[site.mlpPre(layer)].data // [batch·pos, d_mlp]
        const act = out[hook(layer)].data
        moments.add(pre, batchTokens, { valid: batchValid, neuronOffset: layer * dMlp })
        top.add(act, batchTokens, { firstRow: batch[0].row, nPos: positions }, { valid: batchValid, neuronOffset: layer * dMlp })
        scatterNeuronMajor(act, batchValid, dMlp, layer * dMlp, acts, tokens, tokenOffset)
      }
      tokenOffset += countValid(batchValid)
      ctx.progress.advance(batchTokens)
    }
    const layout = { nLayers, dMlp, rows: rows.map((r) => r.row), positions, valid, dtype: params.dtype, site: params.site }
    writeActivationShard(ctx.outputPath(activationPath(unit.seed, unit.shard)), layout, acts)
    writeSafetensors(ctx.outputPath(shardStatsPath(unit.seed, unit.shard)), shardStatsTensors(moments, top))
  } finally {
    await model.close()
  }
}

/**
 * Copy the valid tokens of a token-major chunk [tokens, d_mlp] into the neuron-major shard buffer
 * [neurons, shardTokens], neurons [neuronOffset, neuronOffset + d_mlp), starting at column `tokenOffset`.
 */
export function scatterNeuronMajor(
  chunk: Float32Array,
  valid: Uint8Array,
  dMlp: number,
  neuronOffset: number,
  out: Float32Array,
  shardTokens: number,
  tokenOffset: number,
): void {
  let column = tokenOffset
  for (let t = 0; t < valid.length; t++) {
    if (!valid[t]) continue
    const from = t * dMlp
    for (let j = 0; j < dMlp; j++) out[(neuronOffset + j) * shardTokens + column] = chunk[from + j]
    column++
  }
}

