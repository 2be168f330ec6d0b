// Reads whatever a run directory holds for the report, never failing on a missing or damaged file:
// each absence or problem becomes a note saying what it means (which command has not run or did not
// finish, and how to continue). Files are read with the method's own types (run/layout.ts and the
// files it names); only their "format"/"version" tags and the fields the report uses are checked.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { type ModelConfig, ModelConfigSchema, preset } from '../config.js';
import { InputError } from '../errors.js';
import type { EvalResults } from '../method/evaluate.js';
import type { SearchState, StepRecord } from '../method/reinforce.js';
import type { Taskness } from '../method/taskness.js';
import { JsonFileError, readJsonFile } from '../run/json-file.js';
import { MULTITASK, type RunConfig, type RunPaths, runPaths } from '../run/layout.js';
import { meansFileTasks } from '../run/means-file.js';
import type { SubsetFile } from '../run/subset-file.js';

export type NoteLevel = 'missing' | 'problem' | 'info';

export interface Note {
  level: NoteLevel;
  /** The file the note is about, relative to the run directory. */
  file: string;
  message: string;
}

/** taskness.json as `vtv collect` writes it: the Taskness scores with a format tag. */
export type TasknessFile = Taskness & { format: 'vtv-taskness'; version: number; formula?: string };

/** prompts.json as `vtv collect` writes it (the fields the report shows). */
export interface PromptsFile {
  format: 'vtv-prompts';
  version: number;
  scored?: number;
  tasks: Record<string, { fold: number; index: number; query: string; support: string; classId: number; metric: number }[]>;
}

export interface SearchFiles {
  /** A task id, or "multitask". */
  key: string;
  state?: SearchState;
  log: StepRecord[];
  subset?: SubsetFile;
  /** The model the search ran with (from its state fingerprint or subset), if known. */
  model?: ModelConfig;
}

/** The PNGs `vtv eval` saved for one episode, by what they show (query, target, one-shot, ...). */
export interface ExampleImages {
  fold: number;
  episode: string;
  files: Record<string, string>; // what -> absolute path
}

export interface RunFiles {
  root: string;
  paths: RunPaths;
  config?: RunConfig;
  model?: ModelConfig;
  meansTasks?: string[];
  prompts?: PromptsFile;
  taskness?: TasknessFile;
  searches: SearchFiles[];
  eval?: EvalResults;
  examples: Map<string, ExampleImages[]>;
  notes: Note[];
}

const EXAMPLE_NAME = /^fold(\d+)_([^_]+)_(.+)\.png$/;

function readJson<T>(path: string, rel: string, format: string, notes: Note[]): T | undefined {
  let value: unknown;
  try {
    value = readJsonFile(path, `${format} file`);
  } catch (e) {
    notes.push({
      level: 'problem',
      file: rel,
      message: `cannot be read as JSON (it ${e instanceof JsonFileError ? e.problem : (e as Error).message}). It is left out below.`,
    });
    return undefined;
  }
  const tag = (value as { format?: unknown } | null)?.format;
  if (tag !== format) {
    notes.push({ level: 'problem', file: rel, message: `is not a ${format} file (format ${JSON.stringify(tag)}); it is left out below.` });
    return undefined;
  }
  return value as T;
}

/** log.jsonl: one StepRecord per line; a damaged line (e.g. the last one of a killed run) is skipped and noted. */
function readLog(path: string, rel: string, notes: Note[]): StepRecord[] {
  const out: StepRecord[] = [];
  const lines = readFileSync(path, 'utf8').split('\n');
  let bad = 0;
  lines.forEach((line) => {
    if (!line.trim()) return;
    try {
      const rec = JSON.parse(line) as StepRecord;
      if (typeof rec.step !== 'number' || typeof rec.loss !== 'number') throw new Error('not a step record');
      out.push(rec);
    } catch {
      bad++;
    }
  });
  if (bad)
    notes.push({
      level: 'problem',
      file: rel,
      message: `${bad} line(s) could not be read and were skipped (a run killed while writing leaves a partial last line).`,
    });
  return out;
}

function modelFromState(s: SearchState | undefined): ModelConfig | undefined {
  const parsed = ModelConfigSchema.safeParse(s?.fingerprint?.model);
  return parsed.success ? parsed.data : undefined;
}

function presetOrUndefined(name: string | undefined): ModelConfig | undefined {
  if (!name) return undefined;
  try {
    return preset(name);
  } catch {
    return undefined;
  }
}

function listDirs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => statSync(join(dir, n)).isDirectory())
    .sort();
}

export function readRunFiles(root: string): RunFiles {
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new InputError(`run directory ${root} does not exist`);
  const paths = runPaths(root);
  const notes: Note[] = [];
  const rel = (p: string) => relative(root, p) || '.';
  const run: RunFiles = { root, paths, searches: [], examples: new Map(), notes };

  if (existsSync(paths.config)) {
    run.config = readJson<RunConfig>(paths.config, rel(paths.config), 'vtv-run', notes);
    run.model = presetOrUndefined(run.config?.model);
    if (run.config && !run.model)
      notes.push({ level: 'problem', file: rel(paths.config), message: `names model '${run.config.model}', which is not a known preset.` });
  } else {
    notes.push({
      level: 'missing',
      file: rel(paths.config),
      message:
        'no run config: this directory was not started by a vtv command (or config.json was removed). Model and dataset are taken from the other files where they say.',
    });
  }

  if (existsSync(paths.means)) {
    try {
      run.meansTasks = meansFileTasks(paths.means);
    } catch (e) {
      notes.push({ level: 'problem', file: rel(paths.means), message: (e as Error).message });
    }
  } else {
    notes.push({
      level: 'missing',
      file: rel(paths.means),
      message: '`vtv collect` has not run or did not finish: there are no task vectors yet, so no search or eval can run.',
    });
  }
  if (existsSync(paths.prompts)) run.prompts = readJson<PromptsFile>(paths.prompts, rel(paths.prompts), 'vtv-prompts', notes);
  else
    notes.push({
      level: 'missing',
      file: rel(paths.prompts),
      message: '`vtv collect` has not finished: the kept prompts and their one-shot scores are not recorded.',
    });
  if (existsSync(paths.taskness)) run.taskness = readJson<TasknessFile>(paths.taskness, rel(paths.taskness), 'vtv-taskness', notes);
  else
    notes.push({
      level: 'missing',
      file: rel(paths.taskness),
      message: '`vtv collect` has not finished: no taskness scores, so the taskness map is not shown.',
    });

  const searchRoot = join(root, 'search');
  const keys = listDirs(searchRoot);
  if (keys.length === 0)
    notes.push({
      level: 'missing',
      file: 'search/',
      message: 'no search has been started: run `vtv search --task <task>`. No selected heads or curves to show.',
    });
  for (const key of keys) {
    const s: SearchFiles = { key, log: [] };
    const taskFlag = key === MULTITASK ? '<task,task,...>' : key;
    const statePath = paths.searchState(key);
    const logPath = paths.searchLog(key);
    const subsetPath = paths.subset(key);
    if (existsSync(statePath)) s.state = readJson<SearchState>(statePath, rel(statePath), 'vtv-search-state', notes);
    if (existsSync(logPath)) s.log = readLog(logPath, rel(logPath), notes);
    else notes.push({ level: 'missing', file: rel(logPath), message: 'no search log: the search wrote no step yet, so there are no curves.' });
    if (existsSync(subsetPath)) s.subset = readJson<SubsetFile>(subsetPath, rel(subsetPath), 'vtv-subset', notes);
    else {
      const next = s.state
        ? ` It stopped after ${s.state.step} step(s) (the last checkpoint, state.json); continue it with \`vtv search --task ${taskFlag} --resume\`. The maps show the probabilities at that checkpoint instead.`
        : ` It logged ${s.log.length} step(s) but wrote no checkpoint (state.json) yet, so it cannot be resumed: start it again with \`vtv search --task ${taskFlag} --force\`.`;
      notes.push({ level: 'missing', file: rel(subsetPath), message: `the search for '${key}' has not finished, so no heads are selected yet.${next}` });
    }
    s.model = modelFromState(s.state) ?? presetOrUndefined(s.subset?.model) ?? run.model;
    run.searches.push(s);
  }

  if (existsSync(paths.evalJson)) run.eval = readJson<EvalResults>(paths.evalJson, rel(paths.evalJson), 'vtv-eval', notes);
  else
    notes.push({
      level: 'missing',
      file: rel(paths.evalJson),
      message: '`vtv eval` has not run or did not finish: no comparison of one-shot, zero-shot and task-vector prompting yet.',
    });

  const examplesRoot = join(paths.evalDir, 'examples');
  for (const task of listDirs(examplesRoot)) {
    const dir = paths.examples(task);
    const byEpisode = new Map<string, ExampleImages>();
    for (const name of readdirSync(dir).sort()) {
      const m = EXAMPLE_NAME.exec(name);
      if (!m) continue;
      const key = `${m[1]}_${m[2]}`;
      if (!byEpisode.has(key)) byEpisode.set(key, { fold: Number(m[1]), episode: m[2]!, files: {} });
      byEpisode.get(key)!.files[m[3]!] = join(dir, name);
    }
    if (byEpisode.size) run.examples.set(task, [...byEpisode.values()]);
  }
  if (run.eval && run.examples.size === 0) {
    notes.push({ level: 'missing', file: 'eval/examples/', message: 'no example images: `vtv eval` ran with --examples 0, or the images were removed.' });
  }
  return run;
}
