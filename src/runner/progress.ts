// How a run reports itself: a cli-progress bar per stage on a terminal; on anything else (an overnight log file)
// plain timestamped lines, every 30 s and at each unit's end:
//   [12:03:11] extract 14/40 units, 5,210 tok/s, ETA 00:41:10
// Stages never print; their ctx.log, ctx.warn and ctx.progress end up here.
import cliProgress from 'cli-progress'

export interface Reporter {
  info(message: string): void
  warn(message: string): void
  /** A stage starts running `units` units; `work` names what advance() counts (e.g. 'tok'). */
  stage(name: string, units: number, work?: string): StageMeter
  close(): void
}

export interface StageMeter {
  unit(id: string): UnitMeter
  finish(): void
}

export interface UnitMeter {
  setTotal(total: number): void
  advance(amount: number): void
  done(): void
}

export interface ReporterOptions {
  tty?: boolean // default: the stream's isTTY
  intervalMs?: number // plain mode: a line at least this often while a stage runs; default 30 s
  now?: () => number // milliseconds; tests pass a fake clock
}

type Stream = NodeJS.WritableStream & { isTTY?: boolean }

/** The reporter for a terminal or a log file, chosen by whether `stream` is a TTY. */
export function createReporter(stream: Stream, options: ReporterOptions = {}): Reporter {
  const now = options.now ?? Date.now
  return (options.tty ?? stream.isTTY === true)
    ? new BarReporter(stream, now)
    : new LineReporter(stream, now, options.intervalMs ?? 30_000)
}

/** A reporter that drops everything, for library callers and tests that do not look. */
export const silentReporter: Reporter = {
  info() {},
  warn() {},
  stage: () => ({ unit: () => ({ setTotal() {}, advance() {}, done() {} }), finish() {} }),
  close() {},
}

/** Units done, work done and the ETA of one stage; the running units' fractions make the ETA finer. */
class StageTally {
  private readonly started: number
  private finished = 0
  private work = 0
  private readonly running = new Map<object, { total?: number; done: number }>()

  constructor(
    readonly name: string,
    readonly units: number,
    readonly workLabel: string | undefined,
    private readonly now: () => number,
  ) {
    this.started = now()
  }

  unit(onChange: () => void, onDone: () => void): UnitMeter {
    const token = {}
    const share = { done: 0 } as { total?: number; done: number }
    this.running.set(token, share)
    return {
      setTotal: (total) => {
        share.total = total
      },
      advance: (amount) => {
        share.done += amount
        this.work += amount
        onChange()
      },
      done: () => {
        this.running.delete(token)
        this.finished += 1
        onDone()
      },
    }
  }

  get done(): number {
    return this.finished
  }

  /** `14/40 units, 5,210 tok/s, ETA 00:41:10` */
  summary(): string {
    const parts = [`${this.finished}/${this.units} units`]
    const seconds = (this.now() - this.started) / 1000
    if (this.workLabel && seconds > 0) parts.push(`${rate(this.work / seconds)} ${this.workLabel}/s`)
    parts.push(`ETA ${this.eta(seconds)}`)
    return parts.join(', ')
  }

  private eta(seconds: number): string {
    let effective = this.finished
    for (const { total, done } of this.running.values()) if (total) effective += Math.min(done / total, 1)
    if (effective <= 0 || seconds <= 0) return '--:--:--'
    return duration((seconds * (this.units - effective)) / effective)
  }
}

class LineReporter implements Reporter {
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly stream: Stream,
    private readonly now: () => number,
    private readonly intervalMs: number,
  ) {}

  info(message: string): void {
    this.stream.write(`[${clock(this.now())}] ${message}\n`)
  }

  warn(message: string): void {
    this.stream.write(`[${clock(this.now())}] warning: ${message}\n`)
  }

  stage(name: string, units: number, work?: string): StageMeter {
    const tally = new StageTally(name, units, work, this.now)
    const line = () => this.info(`${name} ${tally.summary()}`)
    clearInterval(this.timer)
    this.timer = setInterval(line, this.intervalMs).unref()
    return {
      unit: () => tally.unit(() => {}, line),
      finish: () => {
        clearInterval(this.timer)
        this.timer = undefined
      },
    }
  }

  close(): void {
    clearInterval(this.timer)
  }
}

class BarReporter implements Reporter {
  private readonly bars: cliProgress.MultiBar

  constructor(
    private readonly stream: Stream,
    private readonly now: () => number,
  ) {
    this.bars = new cliProgress.MultiBar({
      stream,
      format: '{stage} [{bar}] {summary}',
      barsize: 30,
      hideCursor: true,
      clearOnComplete: false,
      fps: 5,
    })
  }

  info(message: string): void {
    this.bars.log(`${message}\n`)
  }

  warn(message: string): void {
    this.bars.log(`warning: ${message}\n`)
  }

  stage(name: string, units: number, work?: string): StageMeter {
    const tally = new StageTally(name, units, work, this.now)
    const bar = this.bars.create(units, 0, { stage: name, summary: tally.summary() })
    const update = () => bar.update(tally.done, { summary: tally.summary() })
    return {
      unit: () => tally.unit(update, update),
      finish: () => {
        update()
        bar.stop()
      },
    }
  }

  close(): void {
    this.bars.stop()
  }
}

function rate(perSecond: number): string {
  return perSecond.toLocaleString('en-US', { maximumFractionDigits: perSecond < 10 ? 1 : 0 })
}

function duration(seconds: number): string {
  const s = Math.round(seconds)
  const pad = (n: number) => String(n).padStart(2, '0')
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`
}

function clock(ms: number): string {
  return new Date(ms).toTimeString().slice(0, 8)
}
