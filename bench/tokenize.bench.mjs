// Tokenize-stage benchmark: tokens/s of the stage end to end (read JSONL, tokenize on worker threads, build rows,
// write Parquet) against the fastest tokenizer library measured alone on one thread with the texts in memory.
// Target: stage ≥ 0.8 × bare. Runs from dist/ (make build first):
//   node bench/tokenize.bench.mjs [corpus dir, default ../shared/corpus] [tokenizer, default gpt2 fixture]
// The machine is shared, so the load average is printed with the numbers; CPU seconds are printed too.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const corpusDir = process.argv[2] ?? process.env.SEEDSCOPE_BENCH_CORPUS ?? join(root, '../shared/corpus')
const tokenizerPath = process.argv[3] ?? join(root, 'test/fixtures/tokenizers/gpt2')
const { tokenizeCorpus } = await import(join(root, 'dist/stages/tokenize/index.js'))
const { findTokenizerFiles, readTokenizerDefinition } = await import(join(root, 'dist/model/tokenizer.js'))
const require = createRequire(import.meta.url)

const corpusPaths = readdirSync(corpusDir)
  .filter((name) => name.endsWith('.jsonl'))
  .sort()
  .map((name) => join(corpusDir, name))
if (corpusPaths.length === 0) throw new Error(`${corpusDir}: no .jsonl files (pass the corpus directory as the first argument)`)
const texts = corpusPaths.flatMap((path) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line).text),
)
const megabytes = texts.reduce((sum, text) => sum + Buffer.byteLength(text), 0) / 1e6
const definition = readTokenizerDefinition(findTokenizerFiles(tokenizerPath))
const encoderJson = JSON.stringify({ ...definition, added_tokens: definition.added_tokens.filter((t) => !t.special) })

/** Wall seconds and CPU seconds (all threads of this process) of `work`. */
async function measure(work) {
  const cpu = process.cpuUsage()
  const start = performance.now()
  const tokens = await work()
  const used = process.cpuUsage(cpu)
  return { tokens, wall: (performance.now() - start) / 1000, cpu: (used.user + used.system) / 1e6 }
}

const line = (name, { tokens, wall, cpu }) =>
  console.log(
    `${name.padEnd(44)} ${String(tokens).padStart(9)} tok  ${wall.toFixed(1).padStart(5)} s wall  ${cpu.toFixed(1).padStart(5)} s cpu  ` +
      `${Math.round(tokens / wall / 1000).toString().padStart(5)}k tok/s`,
  )

console.log(`corpus ${corpusDir}: ${texts.length} documents, ${megabytes.toFixed(1)} MB; tokenizer ${tokenizerPath}`)
console.log(`cores ${availableParallelism()}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)

const native = require('tokenizers').Tokenizer.fromString(encoderJson)
const bareEncode = await measure(async () => {
  let tokens = 0
  for (const text of texts) tokens += (await native.encode(text, null, { addSpecialTokens: false })).getIds().length
  return tokens
})
line('bare tokenizers (native), encode per document', bareEncode)
const bareBatch = await measure(async () => {
  let tokens = 0
  for (let i = 0; i < texts.length; i += 64) {
    for (const encoding of await native.encodeBatch(texts.slice(i, i + 64), { addSpecialTokens: false })) tokens += encoding.getIds().length
  }
  return tokens
})
line('bare tokenizers (native), encodeBatch of 64', bareBatch)
try {
  const { Tokenizer } = await import('@huggingface/tokenizers')
  const js = new Tokenizer(JSON.parse(encoderJson), {})
  const bareJs = await measure(async () => texts.reduce((sum, text) => sum + js.encode(text, { add_special_tokens: false }).ids.length, 0))
  line('bare @huggingface/tokenizers (pure JS)', bareJs)
} catch {
  console.log('@huggingface/tokenizers not installed (a devDependency): skipped')
}

const outDir = mkdtempSync(join(tmpdir(), 'seedscope-bench-'))
const params = { ctx: 512, seed: 0, heldOutFraction: 0.05, textField: 'text', strict: false }
const stage = await measure(async () => {
  const summary = await tokenizeCorpus(params, { corpusPaths, tokenizerPath, outDir })
  return summary.textTokens.main + summary.textTokens.heldout
})
rmSync(outDir, { recursive: true, force: true })
line(`stage end to end (${availableParallelism()} worker threads)`, stage)

const bare = Math.max(bareEncode.tokens / bareEncode.wall, bareBatch.tokens / bareBatch.wall)
const ratio = stage.tokens / stage.wall / bare
console.log(`stage / fastest bare tokenizer: ${ratio.toFixed(2)} (target ≥ 0.80)${ratio >= 0.8 ? '' : '  BELOW TARGET'}`)
console.log(`load average after: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`)
