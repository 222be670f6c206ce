// `seedscope inspect`: run one checkpoint on given token ids, optionally with neuron interventions, and write
// every hook site and head to a safetensors file. For debugging a checkpoint; also the golden tests' interface.
import { existsSync, readFileSync } from 'node:fs'
import type { CommandModule } from 'yargs'
import { atPath, UserError } from '../errors.js'
import type { TensorToWrite } from '../io/safetensors.js'
import type { Intervention } from '../model/interventions.js'
import { INSPECT_OUTPUTS, parseNeuron } from '../model/sites.js'

interface InspectArgs {
  model: string
  'input-ids': string
  out: string
  zero: string[]
  scale: string[]
  fix: string[]
  threads?: number
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect',
  describe: 'Run one checkpoint on token ids and write logits, loss, entropy, ln_final.hook_scale and every MLP hook to safetensors',
  builder: (y) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face checkpoint directory (config.json + weights)' })
      .option('input-ids', { type: 'string', demandOption: true, describe: 'JSON file: an array of equal-length arrays of token ids' })
      .option('out', { type: 'string', demandOption: true, describe: 'output .safetensors file (float32 tensors)' })
      .option('zero', { type: 'string', array: true, default: [], describe: 'zero-ablate neuron L.N (e.g. 11.3030) on hook_post; repeatable' })
      .option('scale', { type: 'string', array: true, default: [], describe: 'multiply neuron L.N by K, written L.N:K; repeatable' })
      .option('fix', { type: 'string', array: true, default: [], describe: 'fix neuron L.N to value V, written L.N:V; repeatable' })
      .option('threads', { type: 'number', describe: 'onnxruntime threads (default: all cores)' })
      .example('$0 inspect --model data/models/gpt2-s0 --input-ids ids.json --out acts.safetensors --zero 3.17', '')
      .example('$0 inspect --model m --input-ids ids.json --out o.safetensors --scale 0.5:3 --fix 1.2:0.5', ''),
  handler: async (args) => {
    const [{ writeSafetensors }, { loadInstrumentedModel, tokenBatch }] = await Promise.all([import('../io/safetensors.js'), import('../model/instrumented.js')])
    const rows = readInputIds(args['input-ids'])
    const tokens = (() => {
      try {
        return tokenBatch(rows)
      } catch (error) {
        throw atPath(args['input-ids'], error)
      }
    })()
    const overrides = parseOverrides(args.zero, args.scale, args.fix)
    const model = await loadInstrumentedModel(args.model, INSPECT_OUTPUTS, { threads: args.threads })
    const { nLayers, dMlp } = model.config.shape
    for (const o of overrides) {
      if (o.layer >= nLayers || o.neuron >= dMlp) {
        await model.release()
        throw new UserError(`neuron ${o.layer}.${o.neuron} does not exist in ${args.model} (${nLayers} layers × ${dMlp} neurons)`)
      }
    }
    const interventions: Intervention[] = []
    for (let row = 0; row < tokens.batch; row++) for (const o of overrides) interventions.push({ ...o, row })
    let outputs
    try {
      outputs = await model.run(tokens, interventions)
    } catch (error) {
      throw error instanceof UserError ? atPath(args['input-ids'], error) : error
    } finally {
      await model.release()
    }
    const tensors: Record<string, TensorToWrite> = {}
    for (const [name, t] of Object.entries(outputs)) tensors[name] = { dtype: 'F32', shape: t.dims, data: t.data }
    writeSafetensors(args.out, tensors)
    const what = overrides.length ? ` with ${overrides.length} intervention(s)` : ''
    process.stdout.write(`wrote ${Object.keys(tensors).length} tensors for ${tokens.batch}×${tokens.positions} tokens${what} to ${args.out}\n`)
  },
}

function readInputIds(path: string): number[][] {
  if (!existsSync(path)) throw new UserError(`${path}: not found (expected a JSON array of equal-length arrays of token ids)`)
  let json: unknown
  try {
    json = JSON.parse(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new UserError(`${path}: not valid JSON (${(error as Error).message})`)
  }
  if (!Array.isArray(json) || json.length === 0 || !json.every(Array.isArray)) {
    throw new UserError(`${path}: expected a non-empty JSON array of arrays of token ids, e.g. [[50256, 464, 3290]]`)
  }
  return json as number[][]
}

type Override = Omit<Intervention, 'row'>

function parseOverrides(zero: string[], scale: string[], fix: string[]): Override[] {
  const out: Override[] = []
  const seen = new Set<string>()
  const add = (flag: string, spec: string, withValue: boolean, make: (v: number) => { mul: number; add: number }) => {
    const [neuronText, valueText] = withValue ? spec.split(':') : [spec, undefined]
    const neuron = parseNeuron(neuronText ?? '')
    const value = valueText === undefined ? 0 : Number(valueText)
    if (!neuron || (withValue && (valueText === undefined || valueText.trim() === '' || !Number.isFinite(value)))) {
      throw new UserError(`--${flag} ${spec}: expected ${withValue ? 'L.N:VALUE, e.g. 3.17:2.5' : 'L.N, e.g. 3.17'}`)
    }
    const key = `${neuron.layer}.${neuron.neuron}`
    if (seen.has(key)) throw new UserError(`--${flag} ${spec}: neuron ${key} is given more than once`)
    seen.add(key)
    out.push({ ...neuron, ...make(value) })
  }
  for (const s of zero) add('zero', s, false, () => ({ mul: 0, add: 0 }))
  for (const s of scale) add('scale', s, true, (k) => ({ mul: k, add: 0 }))
  for (const s of fix) add('fix', s, true, (v) => ({ mul: 0, add: v }))
  return out
}
