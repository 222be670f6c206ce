// `seedscope status`: per stage, done / pending / stale, and for each unit not done the reason (DVC's
// `status`): `extract alpha/shard-0003: stale (params changed: extract.dtype)`.
import type { CommandModule } from 'yargs'
import { configFromArgs, withConfigOptions, type ConfigArgs } from '../config-cli.js'
import type { StageStatus } from '../runner/status.js'

const SHOWN_PER_STAGE = 20

export const statusCommand: CommandModule<object, ConfigArgs> = {
  command: 'status',
  describe: 'Show which units are done, pending or stale, and why',
  builder: (yargs) => withConfigOptions(yargs),
  handler: async (args) => {
    const { config } = configFromArgs(args)
    const [{ pipelineStatus }, { registeredStages }] = await Promise.all([import('../runner/status.js'), import('../stages/index.js')])
    const report = await pipelineStatus(config, await registeredStages(process.env))
    process.stdout.write(formatStatus(report).join('\n') + '\n')
  },
}

export function formatStatus(report: readonly StageStatus[]): string[] {
  if (report.length === 0) return ['status: no stages registered yet']
  const lines: string[] = []
  let done = 0
  for (const { stage, units, waitingFor, problem } of report) {
    const open = units.filter((u) => u.state !== 'done')
    const waiting = waitingFor.length ? ` (waiting for ${waitingFor.join(', ')})` : ''
    if (problem) lines.push(`${stage}: units unknown (${problem})`)
    else if (units.length === 0) lines.push(`${stage}: no units yet${waiting}`)
    else if (open.length === 0) {
      done += 1
      lines.push(`${stage}: done (${count(units.length, 'unit')})`)
    } else {
      const stale = open.filter((u) => u.state === 'stale').length
      const pending = open.length - stale
      const kind = !pending ? 'stale' : !stale ? 'pending' : `to run (${stale} stale, ${pending} pending)`
      lines.push(`${stage}: ${open.length} of ${count(units.length, 'unit')} ${kind}${waiting}`)
      for (const u of open.slice(0, SHOWN_PER_STAGE)) lines.push(`  ${stage} ${u.unit.id}: ${u.state} (${u.reasons.join('; ')})`)
      if (open.length > SHOWN_PER_STAGE) lines.push(`  … and ${open.length - SHOWN_PER_STAGE} more`)
    }
  }
  lines.push(`status: ${done} of ${count(report.length, 'stage')} done`)
  return lines
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}
