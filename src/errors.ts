// Two kinds of failure (STYLE.md): a UserError is something the user can fix (config, paths, checkpoints,
// corpora) and prints as one line without a stack; anything else is a bug and keeps its stack.

export class UserError extends Error {
  override name = 'UserError'
}

/** Prefix a low-level error with the path it concerns, keeping the original as `cause`. */
export function atPath(path: string, error: unknown): UserError {
  const message = error instanceof Error ? error.message : String(error)
  return new UserError(`${path}: ${message}`, { cause: error })
}
