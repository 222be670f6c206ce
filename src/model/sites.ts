// Activation-site names, built in one place. Users see TransformerLens hook names (SPEC §1).

export const site = {
  mlpPre: (layer: number) => `blocks.${layer}.mlp.hook_pre`,
  mlpPost: (layer: number) => `blocks.${layer}.mlp.hook_post`,
  /** Attention probability each query puts on key 0, per head: TransformerLens `hook_pattern[..., 0]`. */
  attnToBos: (layer: number) => `blocks.${layer}.attn.hook_pattern_bos`,
  lnFinalScale: 'ln_final.hook_scale',
  logits: 'logits',
  loss: 'loss',
  entropy: 'entropy',
} as const

/** Whether an output name is an MLP hook site (blocks.{l}.mlp.hook_pre or hook_post, [batch, pos, d_mlp]). */
export const isMlpHook = (name: string): boolean => /^blocks\.\d+\.mlp\.hook_(pre|post)$/.test(name)

/** The MLP hook outputs a graph built for `request` has, in its order (src/model/graph.ts). */
export function mlpHookNames(request: OutputRequest, nLayers: number): string[] {
  const names: string[] = []
  for (let layer = 0; layer < nLayers; layer++) {
    if (request.mlpPre) names.push(site.mlpPre(layer))
    if (request.mlpPost) names.push(site.mlpPost(layer))
  }
  return names
}

/** The outputs a graph can be asked for. */
export interface OutputRequest {
  mlpPre?: boolean // blocks.{l}.mlp.hook_pre, [batch, pos, d_mlp]
  mlpPost?: boolean // blocks.{l}.mlp.hook_post, [batch, pos, d_mlp]
  logits?: boolean // [batch, pos, d_vocab]
  loss?: boolean // next-token cross-entropy (nats), [batch, pos − 1]
  entropy?: boolean // of the next-token distribution (nats), [batch, pos]
  lnFinalScale?: boolean // ln_final.hook_scale, [batch, pos]
  attnToBos?: boolean // blocks.{l}.attn.hook_pattern_bos, [batch, head, pos]
  interventions?: boolean // accept per-neuron affine overrides on hook_post (see interventions.ts)
}

/** The extraction variant: only hook_post, no unembedding. */
export const EXTRACTION_OUTPUTS: OutputRequest = { mlpPost: true }

/** Everything `seedscope inspect` writes. */
export const INSPECT_OUTPUTS: OutputRequest = {
  mlpPre: true,
  mlpPost: true,
  logits: true,
  loss: true,
  entropy: true,
  lnFinalScale: true,
  interventions: true,
}

/** Parse `L.N` (the study's neuron notation) into layer and index. */
export function parseNeuron(text: string): { layer: number; neuron: number } | undefined {
  const m = /^(\d+)\.(\d+)$/.exec(text.trim())
  return m ? { layer: Number(m[1]), neuron: Number(m[2]) } : undefined
}
