// The vtv command tree (main.ts runs it; tests build it without running anything).
import { Command } from 'commander';
import { packageVersion } from '../version.js';
import { applyProgram, exportProgram } from './apply.js';
import { benchProgram } from './bench.js';
import { collectProgram } from './collect.js';
import { convertProgram } from './convert.js';
import { demoProgram } from './demo.js';
import { evalProgram } from './eval.js';
import { infoProgram } from './info.js';
import { registerReport } from './report.js';
import { searchProgram } from './search.js';
import { sweepProgram } from './sweep.js';
import { tuneProgram } from './tune.js';

export function program(): Command {
  const p = new Command('vtv')
    .description('Finding Visual Task Vectors on MAE-VQGAN: collect task vectors, search the heads to patch with REINFORCE, evaluate')
    .version(packageVersion(), '-V, --version', 'print the vtv version')
    .showHelpAfterError();
  for (const c of [
    demoProgram(),
    collectProgram(),
    searchProgram(),
    evalProgram(),
    applyProgram(),
    exportProgram(),
    convertProgram(),
    infoProgram(),
    benchProgram(),
    tuneProgram(),
  ])
    p.addCommand(c);
  registerReport(p);
  p.addCommand(sweepProgram());
  return p;
}
