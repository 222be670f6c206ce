// What one seed keeps while a shard of token rows goes through its model, batch by batch, in both modes: the
// site's activations at valid positions, neuron-major [neurons, valid tokens], where each valid token sits in the
// corpus, and the shard's float64 moments and histogram of hook_pre. The site's top-k are taken from the
// neuron-major rows afterwards (TopActivations.addRows), where each neuron's heap stays in cache.
import { site } from '../../model/sites.js'
import type { OutputTensor } from '../../model/runtime.js'
import { kernels } from '../../stats/kernels.js'
import { NeuronMoments } from '../../stats/moments.js'
import type { TokenPlaces } from '../../stats/top-activations.js'

export type Site = 'blocks.{l}.mlp.hook_post' | 'blocks.{l}.mlp.hook_pre'

export class ShardBuffer {
  readonly acts: Float32Array // [neurons, tokens]
  private readonly hookPreMoments?: NeuronMoments // absent without statistics: a neurons × 257 float64 histogram is 76 MB at GPT-2-small size
  readonly places: TokenPlaces // corpus row and position of each valid token (each column of acts)
  private column = 0 // valid tokens absorbed so far

  constructor(
    readonly layout: { nLayers: number; dMlp: number },
    readonly tokens: number, // valid tokens in the shard
    private readonly site: Site,
    storage?: Float32Array, // memory for acts to reuse (fresh memory costs a page fault per 4 KiB on first write)
    statistics = true, // false: activations only (a streamed pass after the first)
  ) {
    const neurons = layout.nLayers * layout.dMlp
    if (storage && storage.length < neurons * tokens) throw new Error(`shard buffer: storage of ${storage.length} values for ${neurons} neurons × ${tokens} tokens`)
    this.acts = storage ? storage.subarray(0, neurons * tokens) : new Float32Array(neurons * tokens)
    if (statistics) this.hookPreMoments = new NeuronMoments(neurons)
    this.places = { row: new Int32Array(tokens), pos: new Int32Array(tokens) }
  }

  /** The shard's moments and histogram of hook_pre; only a buffer built with statistics has them. */
  get moments(): NeuronMoments {
    if (!this.hookPreMoments) throw new Error('shard buffer: built without statistics, it has no moments')
    return this.hookPreMoments
  }

  /**
   * Take one batch's model outputs (hook_pre and the site per layer, [batch·pos, d_mlp] token-major).
   * `valid` masks the batch's positions; `firstRow` and `positions` place its tokens in the corpus.
   */
  absorb(outputs: Record<string, OutputTensor>, valid: Uint8Array, firstRow: number, positions: number): void {
    const { nLayers, dMlp } = this.layout
    const tokens = valid.length
    const hook = this.site === 'blocks.{l}.mlp.hook_pre' ? site.mlpPre : site.mlpPost
    for (let layer = 0; layer < nLayers; layer++) {
      const offset = layer * dMlp
      const act = outputs[hook(layer)].data
      this.hookPreMoments?.add(outputs[site.mlpPre(layer)].data, tokens, { valid, neuronOffset: offset })
      scatterNeuronMajor(act, valid, dMlp, offset, this.acts, this.tokens, this.column)
    }
    for (let t = 0; t < tokens; t++) {
      if (!valid[t]) continue
      this.places.row[this.column] = firstRow + Math.floor(t / positions)
      this.places.pos[this.column] = t % positions
      this.column++
    }
  }
}

/**
 * Copy the valid tokens of a token-major chunk [tokens, d_mlp] into the neuron-major buffer
 * [neurons, bufferTokens], neurons [neuronOffset, neuronOffset + d_mlp), starting at column `column`.
 */
export function scatterNeuronMajor(
  chunk: Float32Array,
  valid: Uint8Array,
  dMlp: number,
  neuronOffset: number,
  out: Float32Array,
  bufferTokens: number,
  column: number,
): void {
  kernels.scatterNeuronMajor(chunk, valid.length, dMlp, valid, out.subarray(neuronOffset * bufferTokens), bufferTokens, column)
}

/** Token ids of rows as one int64 batch [rows, positions]. */
export function idsOf(rows: readonly { tokens: Int32Array }[], positions: number): BigInt64Array {
  const ids = new BigInt64Array(rows.length * positions)
  rows.forEach((r, b) => r.tokens.forEach((id, p) => (ids[b * positions + p] = BigInt(id))))
  return ids
}
