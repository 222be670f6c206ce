// The calibration cache: count measurements, not time. A key seen before is answered from
// <output_dir>/.cache/calibration.json; a changed key, or a forgotten cache, measures again.
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, test } from 'vitest'
import { writeFileAtomic } from '../io/atomic-write.js'
import { cachedCalibration, calibrationPath, forgetCalibration, thisMachine } from './calibrate.js'

describe('cachedCalibration', () => {
  test('measures once per key and keeps every key it measured', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seedscope-calibration-'))
    let measured = 0
    const measure = async () => ({ gflops: 100 + measured++ })
    const key = { what: 'gemm', machine: thisMachine(), threads: 2 }

    const first = await cachedCalibration(dir, key, measure)
    const second = await cachedCalibration(dir, { ...key }, measure)
    expect(measured).toBe(1)
    expect(first).toMatchObject({ result: { gflops: 100 }, cached: false })
    expect(second).toEqual({ ...first, cached: true }) // the same number and the same measuredAt

    const other = await cachedCalibration(dir, { ...key, threads: 1 }, measure) // a different key: measured
    expect(measured).toBe(2)
    expect(other).toMatchObject({ result: { gflops: 101 }, cached: false })
    const file = JSON.parse(readFileSync(calibrationPath(dir), 'utf8'))
    expect(file.entries.map((e: { key: { threads: number } }) => e.key.threads)).toEqual([2, 1])

    forgetCalibration(dir) // plan --recalibrate
    await cachedCalibration(dir, key, measure)
    expect(measured).toBe(3)
  })

  test('an unreadable cache file is measured over, not an error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seedscope-calibration-'))
    writeFileAtomic(calibrationPath(dir), '{ not json')
    const result = await cachedCalibration(dir, { what: 'x' }, async () => 42)
    expect(result).toMatchObject({ result: 42, cached: false })
    expect((await cachedCalibration(dir, { what: 'x' }, async () => 43)).result).toBe(42)
  })
})
