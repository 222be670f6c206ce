// Dump a seed's activation shards as one raw float32 matrix [neurons, valid tokens] (neuron-major, shards in
// order) for research scripts that run outside the pipeline (bench/research/screen_bounds.py), which cannot read
// Parquet here: Debian's python3 has numpy but no pyarrow.
//   npx tsx bench/research/dump-activations.ts <output_dir> <seed> <shards> <out.f32>
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { readActivationBlock, readActivationShardInfo } from '../../src/io/activation-store.js'

const [outputDir, seed, shardCount, outPath] = process.argv.slice(2)
if (!outPath) throw new Error('usage: dump-activations.ts <output_dir> <seed> <shards> <out.f32>')
const files = readdirSync(join(outputDir, 'extract', seed)).filter((f) => /^shard-\d+\.parquet$/.test(f)).sort().slice(0, Number(shardCount))
const blocks: Float32Array[] = []
let neurons = 0
for (const file of files) {
  const path = join(outputDir, 'extract', seed, file)
  const info = await readActivationShardInfo(path)
  neurons = info.nLayers * info.dMlp
  blocks.push(await readActivationBlock(path, info, 0, neurons))
}
const tokens = blocks.reduce((sum, b) => sum + b.length / neurons, 0)
const out = new Float32Array(neurons * tokens)
let offset = 0
for (const block of blocks) {
  const t = block.length / neurons
  for (let n = 0; n < neurons; n++) out.set(block.subarray(n * t, (n + 1) * t), n * tokens + offset)
  offset += t
}
writeFileSync(outPath, Buffer.from(out.buffer, out.byteOffset, out.byteLength))
console.log(`${seed}: ${neurons} neurons × ${tokens} tokens from ${files.length} shards → ${outPath}`)
