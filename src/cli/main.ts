#!/usr/bin/env node
// The vtv command line: one file per command in this folder, assembled in program.ts.
//
// Exit codes: 0 success; 1 a usage error (printed as commander prints its own, "error: ...") or a
// failure the user can act on (a VtvError: one line, "vtv: ..."); 130 a search interrupted by Ctrl-C
// after writing its state. Anything else is a bug and is printed with its stack.
import { type Command, CommanderError } from 'commander';
import { UsageError, VtvError } from '../errors.js';
import { program } from './program.js';

async function main(argv: string[]): Promise<number> {
  const root = program().exitOverride();
  let running: Command = root;
  root.hook('preAction', (_root, action) => {
    running = action;
  });
  try {
    await root.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof UsageError) {
      // The same output as commander's own usage errors, from the command that was running.
      try {
        running.exitOverride().error(`error: ${e.message}`, { exitCode: e.exitCode, code: 'vtv.usageError' });
      } catch (shown) {
        if (shown instanceof CommanderError) return shown.exitCode;
        throw shown;
      }
    }
    if (e instanceof VtvError) {
      console.error(`vtv: ${e.message}`);
      return e.exitCode;
    }
    // Other errors with a message a user can act on (file system, engine) get one line too; a
    // programming error (TypeError, RangeError, ReferenceError) keeps its stack for a bug report.
    const known = e instanceof Error && !/^(TypeError|RangeError|ReferenceError)$/.test(e.name);
    console.error(`vtv: ${known ? (e as Error).message : (e as Error).stack}`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
