// Tokenizers (SPEC §2): load a Hugging Face `tokenizer.json`, or the older `vocab.json` + `merges.txt` pair the
// Stanford GPT-2 seeds ship; encode and decode; fingerprint the definition so that only seeds sharing a
// tokenizer are compared. The only importer of the native `tokenizers` package (Hugging Face's Rust library).
//
// Special tokens inside document text are encoded as text. Hugging Face's default matches the literal string
// "<|endoftext|>" in text as the special token (EOS), so a document that merely mentions it (code, or docs about
// GPT-2) would gain a fake document boundary, and the per-position document record would be wrong. seedscope
// inserts BOS/EOS itself (rows.ts) and encodes text like Hugging Face's `split_special_tokens=True` (and like
// OpenAI's gpt-2 encoder, which has no special tokens at all): the encoder is built from the definition with its
// special added tokens removed. Non-special added tokens (NeoX's runs of spaces, ids 50254–50276) still match.
// `encode(text, { specialTokens: 'match' })` gives Hugging Face's default, to reproduce ids made that way.
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { Tokenizer as NativeTokenizer } from 'tokenizers'
import { UserError, atPath } from '../errors.js'

/** The parts of a Hugging Face `tokenizer.json` seedscope reads; the rest passes through untouched. */
export interface TokenizerDefinition {
  added_tokens: AddedTokenDefinition[]
  normalizer: unknown
  pre_tokenizer: unknown
  post_processor: unknown
  decoder: unknown
  model: { type: string; vocab: Record<string, number>; merges?: (string | [string, string])[]; [key: string]: unknown }
  [key: string]: unknown
}

export interface AddedTokenDefinition {
  id: number
  content: string
  special: boolean
  [key: string]: unknown
}

/** Where a tokenizer came from: one `tokenizer.json`, or a GPT-2-style vocabulary and merges pair. */
export type TokenizerFiles = { kind: 'tokenizer.json'; path: string } | { kind: 'vocab+merges'; vocab: string; merges: string }

export interface Tokenizer {
  readonly name: string // 'gpt2', 'gpt-neox-20b', or 'sha256:<12 hex>' for a tokenizer seedscope does not know
  readonly fingerprint: string // sha256 of the normalised definition (see tokenizerFingerprint)
  readonly files: TokenizerFiles
  readonly vocabSize: number // one past the largest id the tokenizer can produce or decode
  readonly bos: number // SPEC §2: prepended to every row (GPT-2 50256, Pythia 0)
  readonly eos: number // SPEC §2: joins documents (the same token for both families)
  /** What another thread needs to build the same encoder: the native module's path and the JSON to load. */
  readonly portable: { module: string; json: string }
  /**
   * Token ids of `text`. Special-token strings are encoded as text (see the file comment); `specialTokens:
   * 'match'` matches them as Hugging Face does by default, to reproduce ids made that way.
   */
  encode(text: string, options?: EncodeOptions): Promise<Int32Array>
  decode(ids: ArrayLike<number>): Promise<string>
}

const require = createRequire(import.meta.url)
const NATIVE_MODULE = require.resolve('tokenizers')
/** The library that does the encoding, for manifests. */
export const TOKENIZER_LIBRARY = `tokenizers@${(require('tokenizers/package.json') as { version: string }).version}`

// Fingerprints of the tokenizers seedscope knows by name (test/fixtures/tokenizers/README.md has provenance).
// GPT-2's tokenizer.json and its vocab.json + merges.txt pair normalise to the same definition.
const KNOWN_TOKENIZERS: Record<string, string> = {
  'c5551a3faf64afea15e2ffa79749b5ce0e5a0b96d4dbcded56a89e8ec7e8f32e': 'gpt2',
  '0466e6d7ed7e19a2fb30e885440a6c0f84885f2f65e1b95f8bf183e50db74e56': 'gpt-neox-20b',
  // The bundled families' tokenizers (data/models/*/tokenizer.json): the first 4,096 ids of the above.
  '168b93efccd48d70f937cf31026e5a149c2c0ca037734b015def16f3450179ad': 'gpt2-4k (bundled)',
  'ffe6322dceadb18694f9c547815b8a0920a1087eab35ecdfc2acbb48bf53dd71': 'gpt-neox-4k (bundled)',
}

const END_OF_TEXT = '<|endoftext|>'

/**
 * Find the tokenizer of a model directory (tokenizer.json, else vocab.json + merges.txt; OpenAI's names
 * encoder.json + vocab.bpe are accepted too), or take `path` itself when it names a file.
 */
export function findTokenizerFiles(path: string): TokenizerFiles {
  if (!existsSync(path)) throw new UserError(`${path}: no such tokenizer file or model directory`)
  if (!statSync(path).isDirectory()) {
    if (path.endsWith('.json')) return { kind: 'tokenizer.json', path }
    throw new UserError(`${path}: not a tokenizer.json; name a tokenizer.json file or a model directory`)
  }
  const inDir = (name: string) => (existsSync(join(path, name)) ? join(path, name) : undefined)
  const tokenizerJson = inDir('tokenizer.json')
  if (tokenizerJson) return { kind: 'tokenizer.json', path: tokenizerJson }
  const vocab = inDir('vocab.json') ?? inDir('encoder.json')
  const merges = inDir('merges.txt') ?? inDir('vocab.bpe')
  if (vocab && merges) return { kind: 'vocab+merges', vocab, merges }
  throw new UserError(
    `${path}: no tokenizer found (expected tokenizer.json, or vocab.json + merges.txt); ` +
      `copy the model's tokenizer files there, or name a tokenizer explicitly`,
  )
}

/** Read the tokenizer definition from its files, as a Hugging Face `tokenizer.json` object. */
export function readTokenizerDefinition(files: TokenizerFiles): TokenizerDefinition {
  if (files.kind === 'tokenizer.json') {
    const definition = parseJsonFile(files.path) as TokenizerDefinition
    if (typeof definition?.model?.vocab !== 'object' || !Array.isArray(definition.added_tokens)) {
      throw new UserError(`${files.path}: not a Hugging Face tokenizer.json (no model.vocab or added_tokens); for vocab.json + merges.txt, name their directory`)
    }
    return definition
  }
  const vocab = parseJsonFile(files.vocab) as Record<string, number>
  const merges = readFileSync(files.merges, 'utf8')
    .split('\n')
    .filter((line, i) => line !== '' && !(i === 0 && line.startsWith('#version')))
  return gpt2Definition(vocab, merges)
}

/**
 * The `tokenizer.json` equivalent of a GPT-2 vocab.json + merges.txt pair, as transformers' GPT2Converter
 * builds it: byte-level pre-tokenizer without prefix space, BPE, byte-level decoder; "<|endoftext|>" special.
 */
export function gpt2Definition(vocab: Record<string, number>, merges: string[]): TokenizerDefinition {
  const endOfText = vocab[END_OF_TEXT]
  const byteLevel = (addPrefixSpace: boolean, trimOffsets: boolean) => ({
    type: 'ByteLevel',
    add_prefix_space: addPrefixSpace,
    trim_offsets: trimOffsets,
    use_regex: true,
  })
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens:
      endOfText === undefined
        ? []
        : [
            {
              id: endOfText,
              content: END_OF_TEXT,
              single_word: false,
              lstrip: false,
              rstrip: false,
              normalized: true,
              special: true,
            },
          ],
    normalizer: null,
    pre_tokenizer: byteLevel(false, true),
    post_processor: byteLevel(true, false),
    decoder: byteLevel(true, true),
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  }
}

/**
 * sha256 of the normalised tokenizer: vocabulary, merges, added tokens and the normalizer, pre-tokenizer,
 * model options and decoder, with the serialiser's defaults filled in and keys sorted, so JSON key order,
 * whitespace, merge spelling ("a b" or ["a","b"]) and the `tokenizers` version that wrote the file do not
 * matter. The post-processor is left out: it only adds template tokens, which seedscope never asks for.
 */
export function tokenizerFingerprint(definition: TokenizerDefinition): string {
  const { model } = definition
  const normalised = {
    added_tokens: [...definition.added_tokens]
      .sort((a, b) => a.id - b.id)
      .map((token) => ({ single_word: false, lstrip: false, rstrip: false, normalized: !token.special, ...token })),
    normalizer: withComponentDefaults(definition.normalizer ?? null),
    pre_tokenizer: withComponentDefaults(definition.pre_tokenizer ?? null),
    decoder: withComponentDefaults(definition.decoder ?? null),
    model: {
      dropout: null,
      unk_token: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      ...model,
      // "" and null both mean "no prefix/suffix"; serialisers differ.
      continuing_subword_prefix: model.continuing_subword_prefix || null,
      end_of_word_suffix: model.end_of_word_suffix || null,
      merges: (model.merges ?? []).map((merge) => (typeof merge === 'string' ? merge.split(' ') : merge)),
    },
  }
  return createHash('sha256').update(canonicalJson(normalised)).digest('hex')
}

/** The short name used in messages: a known tokenizer's name, else the fingerprint's first 12 hex digits. */
export function tokenizerName(fingerprint: string): string {
  return KNOWN_TOKENIZERS[fingerprint] ?? `sha256:${fingerprint.slice(0, 12)}`
}

/** Load the tokenizer of a model directory or tokenizer file. */
export async function loadTokenizer(path: string): Promise<Tokenizer> {
  const files = findTokenizerFiles(path)
  const where = files.kind === 'tokenizer.json' ? files.path : files.vocab
  const definition = readTokenizerDefinition(files)
  const fingerprint = tokenizerFingerprint(definition)
  const endOfText = endOfTextId(definition, where)
  const encoderJson = JSON.stringify({ ...definition, added_tokens: definition.added_tokens.filter((t) => !t.special) })
  let encoder: NativeTokenizer, decoder: NativeTokenizer
  try {
    encoder = NativeTokenizer.fromString(encoderJson)
    decoder = NativeTokenizer.fromString(JSON.stringify(definition))
  } catch (error) {
    throw atPath(where, `the tokenizers library cannot load this tokenizer: ${(error as Error).message}`)
  }
  return {
    name: tokenizerName(fingerprint),
    fingerprint,
    files,
    vocabSize: decoder.getVocabSize(true),
    bos: endOfText,
    eos: endOfText,
    portable: { module: NATIVE_MODULE, json: encoderJson },
    async encode(text, options = {}) {
      // The decoder's definition keeps the special added tokens, so it matches them in text.
      const matching = options.specialTokens === 'match' ? decoder : encoder
      const encoding = await matching.encode(text, null, { addSpecialTokens: false })
      return Int32Array.from(encoding.getIds())
    },
    async decode(ids) {
      return decoder.decode(Array.from(ids), false)
    },
  }
}

export interface EncodeOptions {
  specialTokens?: 'text' | 'match' // how "<|endoftext|>" and other special tokens in the text are encoded (default 'text')
}

export interface SeedTokenizer {
  seed: string
  tokenizer: Pick<Tokenizer, 'name' | 'fingerprint'>
}

/** SPEC §2: only seeds that share a tokenizer can be compared; name the first pair that differs. */
export function assertSameTokenizer(seeds: readonly SeedTokenizer[]): void {
  const [first, ...rest] = seeds
  for (const other of rest) {
    if (other.tokenizer.fingerprint !== first.tokenizer.fingerprint) {
      throw new UserError(
        `seeds ${first.seed} and ${other.seed} use different tokenizers ` +
          `(${first.tokenizer.name} vs ${other.tokenizer.name}); only seeds that share a tokenizer can be compared`,
      )
    }
  }
}

/**
 * Every seed that ships a tokenizer (tokenizer.json or vocab.json in its directory) must ship `corpus`'s, the one
 * the token rows were made with; seeds without one are taken to use it.
 */
export async function assertSeedsShareTokenizer(
  seeds: readonly { name: string; checkpoint: string }[],
  corpus: Pick<Tokenizer, 'name' | 'fingerprint'>,
): Promise<void> {
  const shipped: SeedTokenizer[] = []
  for (const seed of seeds) {
    const hasTokenizer = ['tokenizer.json', 'vocab.json'].some((f) => existsSync(join(seed.checkpoint, f)))
    if (hasTokenizer) shipped.push({ seed: seed.name, tokenizer: await loadTokenizer(seed.checkpoint) })
  }
  assertSameTokenizer([...shipped, { seed: 'the corpus tokens', tokenizer: corpus }])
}

function endOfTextId(definition: TokenizerDefinition, where: string): number {
  const added = definition.added_tokens.find((token) => token.content === END_OF_TEXT)
  const id = added?.id ?? definition.model.vocab[END_OF_TEXT]
  if (id === undefined) {
    throw new UserError(`${where}: no ${END_OF_TEXT} token; seedscope uses it as BOS and EOS (GPT-2 and Pythia both have it)`)
  }
  return id
}

// Defaults `tokenizers` assumes when a field is absent; files written by older versions omit some of them.
const COMPONENT_DEFAULTS: Record<string, Record<string, unknown>> = {
  ByteLevel: { add_prefix_space: true, trim_offsets: true, use_regex: true },
}

function withComponentDefaults(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withComponentDefaults)
  if (value === null || typeof value !== 'object') return value
  const entries = Object.entries(value).map(([key, inner]) => [key, withComponentDefaults(inner)])
  const object = Object.fromEntries(entries) as Record<string, unknown>
  return { ...COMPONENT_DEFAULTS[String(object.type)], ...object }
}

/** JSON with object keys sorted at every level and no whitespace. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const object = value as Record<string, unknown>
    const keys = Object.keys(object)
      .filter((key) => object[key] !== undefined)
      .sort()
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(object[key])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

function parseJsonFile(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw atPath(path, `cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
  }
  try {
    return JSON.parse(text)
  } catch (error) {
    throw atPath(path, `not valid JSON (${(error as Error).message}); the download may be truncated`)
  }
}
