// `vtv report RUN_DIR`: writes RUN_DIR/report/index.html (self-contained, figures beside it) from
// whatever the run has so far, and prints its path.
import { resolve } from 'node:path';
import { Command } from 'commander';
import { writeReport } from '../report/report.js';

export interface ReportCliOptions {
  out?: string;
}

/** Writes the report; the page's path goes to `print` (stdout: scripts can use it), remarks to `warn`. */
export function reportCommand(
  runDir: string,
  o: ReportCliOptions = {},
  print: (m: string) => void = (m) => console.log(m),
  warn: (m: string) => void = (m) => console.error(m),
): string {
  const res = writeReport(resolve(runDir), { outDir: o.out ? resolve(o.out) : undefined });
  const missing = res.notes.filter((n) => n.level !== 'info').length;
  if (missing) warn(`report: ${missing} file(s) missing or unreadable; the page says what each means`);
  print(res.html);
  return res.html;
}

export function reportProgram(): Command {
  return new Command('report')
    .description('write an HTML report of a run (examples, selected heads, probabilities, curves, taskness, eval table)')
    .argument('<run-dir>', 'the run directory (e.g. runs/default)')
    .option('--out <dir>', 'where to write index.html and its figures (default: <run-dir>/report)')
    .action((runDir: string, opts: ReportCliOptions) => {
      reportCommand(runDir, opts);
    });
}

/** Adds `vtv report` to the vtv program. */
export function registerReport(program: Command): void {
  program.addCommand(reportProgram());
}
