// The error classes of vtv. A VtvError is a failure a user can act on (bad input, a file that is
// missing or malformed, a lock held by another command, an interrupted search): the CLI prints its
// message on one line and exits with its exitCode. Anything else is a bug and keeps its stack.

export class VtvError extends Error {
  /** The process exit code when this error ends a CLI command. */
  readonly exitCode: number = 1;
}

/** A command-line option or argument that cannot be used as given; the CLI prints it as commander does. */
export class UsageError extends VtvError {}

/** A search stopped by Ctrl-C (SIGINT) after writing its state: exit code 130, as a shell expects. */
export class InterruptedError extends VtvError {
  override readonly exitCode = 130;
}
