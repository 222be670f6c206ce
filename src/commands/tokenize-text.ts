// `seedscope tokenize-text --tokenizer PATH`: UTF-8 text on stdin → its token ids as one JSON array on stdout.
// Special-token strings in the text are encoded as text, as in the pipeline (see src/model/tokenizer.ts).
import type { CommandModule } from 'yargs'
import { UserError } from '../errors.js'

interface TokenizeTextArgs {
  tokenizer: string
  'special-tokens': 'text' | 'match'
}

export const tokenizeTextCommand: CommandModule<object, TokenizeTextArgs> = {
  command: 'tokenize-text',
  describe: 'Print the token ids of the UTF-8 text on stdin as a JSON array',
  builder: (yargs) =>
    yargs
      .option('tokenizer', {
        type: 'string',
        demandOption: true,
        describe: 'a tokenizer.json, or a model directory holding tokenizer.json or vocab.json + merges.txt',
      })
      .option('special-tokens', {
        choices: ['text', 'match'] as const,
        default: 'text' as const,
        describe: 'text: "<|endoftext|>" in the text is encoded as text, as the pipeline does; match: as the special token (Hugging Face\'s default)',
      }),
  handler: async ({ tokenizer: path, 'special-tokens': specialTokens }) => {
    const { loadTokenizer } = await import('../model/tokenizer.js')
    const tokenizer = await loadTokenizer(path)
    const ids = await tokenizer.encode(await readStdinText(), { specialTokens })
    process.stdout.write(`[${ids.join(',')}]\n`)
  },
}

async function readStdinText(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks))
  } catch {
    throw new UserError('stdin is not valid UTF-8 text')
  }
}
