// The config's face on the command line: --config and --set for every command that reads a config, and the
// key table for --help, derived from the schema's .describe() texts so a new key cannot be left out.
import type { Argv } from 'yargs'
import { configKeys } from './config-issues.js'
import { loadConfig, type LoadedConfig } from './config-load.js'

export interface ConfigArgs {
  config: string
  set: string[]
}

export function withConfigOptions<T>(yargs: Argv<T>): Argv<T & ConfigArgs> {
  return yargs
    .option('config', {
      type: 'string',
      default: 'pipeline.config.yaml',
      describe: 'the pipeline config (relative paths inside it start at its directory)',
    })
    .option('set', {
      type: 'string',
      array: true,
      default: [] as string[],
      describe: 'override a config key, KEY=VALUE (repeatable; e.g. --set extract.dtype=float16; keys: run --help)',
    }) as unknown as Argv<T & ConfigArgs>
}

export function configFromArgs(args: ConfigArgs): LoadedConfig {
  return loadConfig(args.config, { overrides: args.set })
}

/** `Config keys (for --set):` then each key, and under it its default and reason. */
export function configKeysHelp(): string {
  return ['Config keys (for --set):', ...configKeys().map((k) => `  ${k.key}\n      ${k.description}`)].join('\n')
}
