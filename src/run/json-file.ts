// The one way vtv reads a JSON file (config.json, subset.json, state.json, prompts.json, eval results,
// target tokens, a --config file, JSON in safetensors metadata): every failure is a JsonFileError that
// names the file and says what is wrong with it (missing, empty, cut off, not JSON at line:column, not
// the expected format, a field of the wrong type), never a bare "Unexpected end of JSON input".
import { readFileSync, statSync } from 'node:fs';
import type { z } from 'zod';
import { InputError } from '../errors.js';

export class JsonFileError extends InputError {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}

/** JSON files vtv reads are small; anything larger is not one of ours (or is corrupt). */
export const MAX_JSON_BYTES = 512 * 2 ** 20;

/** Line and column (1-based) of a character offset. */
function lineColumn(text: string, offset: number): string {
  let line = 1;
  let col = 1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      col = 1;
    } else col++;
  }
  return `line ${line}, column ${col}`;
}

/**
 * Parses JSON text that came from `source` (a file name, or "file: metadata key"). A syntax error
 * says where, and says "cut off" when the text simply ends early (a write interrupted by a full disk
 * or a kill).
 */
export function parseJsonText(text: string, source: string): unknown {
  if (text.trim() === '') throw new JsonFileError(source, 'is empty (a write was interrupted?)');
  try {
    return JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const m = /position (\d+)/.exec(msg);
    const offset = m ? Number(m[1]) : /end of JSON input/.test(msg) ? text.length : undefined;
    const endsEarly = /end of JSON input/.test(msg) || (offset !== undefined && offset >= text.trimEnd().length);
    const where = offset !== undefined ? ` at ${lineColumn(text, offset)}` : '';
    if (endsEarly) throw new JsonFileError(source, `is cut off${where}: the JSON ends early (a write was interrupted?)`);
    throw new JsonFileError(
      source,
      `is not valid JSON${where}: ${msg
        .replace(/ in JSON at position \d+.*$/, '')
        .replace(/, ".*" is not valid JSON$/s, '')
        .slice(0, 200)}`,
    );
  }
}

/** Checks a parsed value against a zod schema; the error names the first failing field. */
export function checkJson<T>(value: unknown, schema: z.ZodType<T>, source: string, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const path = issue.path.length ? issue.path.map(String).join('.') : '(top level)';
  throw new JsonFileError(source, `is not a valid ${what}: ${path}: ${issue.message}`);
}

/**
 * Reads and parses a JSON file, optionally checking it against a schema. `what` names the kind of file
 * in messages ("vtv run config", "search state").
 */
export function readJsonFile<T = unknown>(path: string, what: string, schema?: z.ZodType<T>): T {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new JsonFileError(path, `is not a file (expected a ${what})`);
    size = st.size;
  } catch (e) {
    if (e instanceof JsonFileError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new JsonFileError(path, code === 'ENOENT' ? `does not exist (expected a ${what})` : `cannot be read: ${(e as Error).message}`);
  }
  if (size > MAX_JSON_BYTES) throw new JsonFileError(path, `is ${size} bytes, too large for a ${what} (at most ${MAX_JSON_BYTES})`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new JsonFileError(path, `cannot be read: ${(e as Error).message}`);
  }
  const value = parseJsonText(text, path);
  return schema ? checkJson(value, schema, path, what) : (value as T);
}
