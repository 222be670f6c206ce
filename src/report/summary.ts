// A readable summary of a finished run, for the terminal (`seedscope summary`, the end of `make demo`): per seed
// the universal share overall and per layer, then the top universal neurons with their correlation with each
// other seed, the baseline, and the tokens that activate them most, in context.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { PipelineConfig } from '../config.js'
import { UserError } from '../errors.js'
import { readTable } from '../io/tables.js'
import { loadTokenizer, type Tokenizer } from '../model/tokenizer.js'
import { universalPath } from '../stages/universal.js'
import { readTokenRows } from '../stages/tokenize/stage.js'

export interface SummaryOptions {
  top: number // universal neurons listed per seed
  seeds?: string[] // default all
  contextTokens: number // tokens shown before the activating one
}

type Row = Record<string, unknown>

export async function summarizeRun(cfg: PipelineConfig, options: SummaryOptions): Promise<string> {
  const out = (relative: string) => join(cfg.output_dir, relative)
  const seeds = cfg.seeds.map((s) => s.name).filter((s) => !options.seeds || options.seeds.includes(s))
  const missing = seeds.filter((s) => !existsSync(out(universalPath(s))))
  if (missing.length) {
    throw new UserError(`${cfg.output_dir}: no universal table for ${missing.join(', ')} yet; run \`seedscope run\` first (\`seedscope status\` shows what is done)`)
  }
  const tokenizer = await loadTokenizer(cfg.tokenizer)
  const lines: string[] = []
  const tables = new Map<string, Row[]>()
  for (const seed of seeds) tables.set(seed, await readTable(out(universalPath(seed))))
  const others = cfg.seeds.length - 1
  lines.push(`Universal neurons: excess_corr = mean over the ${others} other seeds of max_corr, minus the same for random rotations, > ${cfg.correlate.threshold}`)
  lines.push('')
  lines.push(shareTable(tables))
  for (const seed of seeds) {
    const rows = tables.get(seed)!
    const ranked = rows.filter((r) => Number.isFinite(excessOf(r))).sort((x, y) => excessOf(y) - excessOf(x))
    const universal = ranked.filter((r) => r.is_universal)
    const shown = universal.length ? universal : ranked
    lines.push(
      '',
      universal.length
        ? `Top universal neurons of ${seed} (of ${universal.length}), by excess_corr:`
        : `No neuron of ${seed} passes; the closest, by excess_corr (median baseline ${medianBaseline(rows)}):`,
    )
    const top = await readTable(out(`stats/${seed}.top.parquet`)).catch(() => [] as Row[])
    const otherNames = cfg.seeds.map((s) => s.name).filter((s) => s !== seed)
    lines.push(`  neuron     mean_corr  baseline  excess   max_corr with ${otherNames.join(', ')}`)
    for (const r of shown.slice(0, options.top)) {
      const name = `${r.layer}.${r.neuron}`.padEnd(10)
      const perSeed = otherNames.map((o) => `${fmt(r[`max_corr_${o}`])} (${r[`max_layer_${o}`]}.${r[`max_neuron_${o}`]})`).join('  ')
      lines.push(`  ${name} ${fmt(r.mean_corr)}      ${bounded(r, 'mean_baseline', '≤')}     ${bounded(r, 'excess_corr', '≥')}    ${perSeed}`)
      const examples = top.filter((t) => t.layer === r.layer && t.neuron === r.neuron).slice(0, 3)
      for (const e of examples) {
        lines.push(`      ${fmt(e.value)}  ${await inContext(cfg, tokenizer, e.row as number, e.position as number, options.contextTokens)}`)
      }
    }
  }
  return lines.join('\n')
}

/**
 * excess_corr, or where the screened mode only bounded it, its lower bound (the conservative ranking). Bounded
 * values print as "≥ lo" (excess) and "≤ hi" (baseline).
 */
function excessOf(r: Row): number {
  return Number.isFinite(r.excess_corr) ? (r.excess_corr as number) : ((r.excess_corr_lo as number | null | undefined) ?? NaN)
}

function bounded(r: Row, column: 'mean_baseline' | 'excess_corr', side: '≤' | '≥'): string {
  if (Number.isFinite(r[column])) return fmt(r[column])
  const bound = r[`${column}_${side === '≥' ? 'lo' : 'hi'}`]
  return Number.isFinite(bound) ? `${side}${fmt(bound)}` : fmt(r[column])
}

function shareTable(tables: Map<string, Row[]>): string {
  const nLayers = Math.max(...[...tables.values()].flatMap((rows) => rows.map((r) => r.layer as number))) + 1
  const header = `  ${'seed'.padEnd(10)} ${'universal'.padEnd(18)} ${Array.from({ length: nLayers }, (_, l) => `L${l}`.padStart(6)).join('')}`
  const lines = [header]
  for (const [seed, rows] of tables) {
    const count = rows.filter((r) => r.is_universal).length
    const dead = rows.filter((r) => !Number.isFinite(r.mean_corr)).length
    const perLayer = Array.from({ length: nLayers }, (_, l) => {
      const layer = rows.filter((r) => r.layer === l)
      return `${((100 * layer.filter((r) => r.is_universal).length) / layer.length).toFixed(1)}%`.padStart(6)
    })
    const share = `${count}/${rows.length} (${((100 * count) / rows.length).toFixed(2)}%)`
    lines.push(`  ${seed.padEnd(10)} ${share.padEnd(18)} ${perLayer.join('')}${dead ? `   ${dead} dead` : ''}`)
  }
  return lines.join('\n')
}

const rowCache = new Map<number, Int32Array>()

async function inContext(cfg: PipelineConfig, tokenizer: Tokenizer, row: number, position: number, before: number): Promise<string> {
  let tokens = rowCache.get(row)
  if (!tokens) {
    tokens = (await readTokenRows(join(cfg.output_dir, 'tokenize'), { rowStart: row, rowEnd: row + 1 }))[0].tokens
    rowCache.set(row, tokens)
  }
  // Byte-level BPE splits multi-byte characters across tokens: decode growing spans together, so a token that
  // completes a character shows the character rather than a replacement mark.
  const start = Math.max(1, position - before)
  const end = Math.min(tokens.length, position + 4)
  const left = await tokenizer.decode(tokens.subarray(start, position))
  let span = 1 // the activating token, plus the tokens that complete its last character
  let through = await tokenizer.decode(tokens.subarray(start, position + 1))
  while (through.endsWith('\ufffd') && span < 4 && position + span < tokens.length) {
    span++
    through = await tokenizer.decode(tokens.subarray(start, position + span))
  }
  const all = await tokenizer.decode(tokens.subarray(start, Math.max(end, position + span)))
  let common = 0
  while (common < left.length && left[common] === through[common] && left[common] !== '\ufffd') common++
  const right = all.startsWith(through) ? all.slice(through.length) : await tokenizer.decode(tokens.subarray(position + span, end))
  return `…${oneLine(through.slice(0, common))}[${oneLine(through.slice(common))}]${oneLine(right)}…`
}

function oneLine(text: string): string {
  return JSON.stringify(text).slice(1, -1)
}

/**
 * The median of mean_baseline over the neurons. Where the screened mode only bounded some baselines, the
 * median of the lower bounds and that of the upper bounds enclose it (each neuron's lo ≤ baseline ≤ hi, equal
 * where it is exact, and the median is monotone), so the text gives that interval rather than the median of the
 * exact ones alone.
 */
export function medianBaseline(rows: Row[]): string {
  const bounded = rows.some((r) => !Number.isFinite(r.mean_baseline) && Number.isFinite(r.mean_baseline_lo))
  if (!bounded) return fmt(median(rows.map((r) => r.mean_baseline as number)))
  return `${fmt(median(rows.map((r) => r.mean_baseline_lo as number)))}–${fmt(median(rows.map((r) => r.mean_baseline_hi as number)))}`
}

function median(values: number[]): number {
  const finite = values.filter(Number.isFinite).sort((a, b) => a - b)
  return finite.length ? finite[Math.floor(finite.length / 2)] : NaN
}

function fmt(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(3) : ' nan '
}
