// The error classes of vtv. A VtvError is a failure a user can act on: the CLI prints its message on
// one line ("vtv: <file>: <problem>") and exits with its exitCode. Anything else is a bug and keeps its
// stack. Every error the library throws for bad input, a bad file, the engine refusing a call or an
// interrupted search is one of the subclasses below (or a subclass of those: the readers' errors, the
// lock errors, the sweep-spec error).

export class VtvError extends Error {
  /** The process exit code when this error ends a CLI command. */
  readonly exitCode: number = 1;
  override get name(): string {
    return this.constructor.name;
  }
}

/** A command-line option or argument that cannot be used as given; the CLI prints it as commander prints its own. */
export class UsageError extends VtvError {}

/** A file or value given to vtv that is missing, malformed or inconsistent; the message names the file. */
export class InputError extends VtvError {}

/** The native engine could not be loaded, or refused or failed a call (its message says why). */
export class EngineError extends VtvError {}

/** Another command holds the run, search or sweep this one needs (the message names the lock file and its holder). */
export class ConflictError extends VtvError {}

/** A search or sweep stopped by Ctrl-C (SIGINT) after writing its state: exit code 130, as a shell expects. */
export class InterruptedError extends VtvError {
  override readonly exitCode = 130;
}
