// The message of the UserError `run` throws (failing the test when it throws anything else, or nothing).
import { expect } from 'vitest'
import { UserError } from '../../src/errors.js'

export function userErrorMessage(run: () => unknown): string {
  try {
    run()
  } catch (error) {
    expect(error).toBeInstanceOf(UserError)
    return (error as Error).message
  }
  throw new Error('expected an error')
}
