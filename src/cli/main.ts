#!/usr/bin/env node
// The vtv command line: one file per command in this folder, assembled in program.ts.
import { CommanderError } from 'commander';
import { UsageError } from './common.js';
import { program } from './program.js';

async function main(argv: string[]): Promise<number> {
  try {
    await program().exitOverride().parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    // Errors a user can fix get one clear line; anything else keeps its stack for a bug report.
    const known = e instanceof UsageError || (e instanceof Error && !/^(TypeError|RangeError|ReferenceError)$/.test(e.name));
    console.error(`vtv: ${known ? (e as Error).message : (e as Error).stack}`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
