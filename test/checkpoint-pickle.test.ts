// The safe unpickler against pickles written by CPython in every protocol, and hostile pickles that
// would run code if loaded by Python: they must be refused and nothing may run.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InertObject, PickleError, type PickleGlobal, unpickle } from '../src/checkpoint/pickle.js';
import { findInert, resolveTorchGlobal } from '../src/checkpoint/torch-globals.js';
import { PYTHON, tempDir } from './fixtures/torch-fixtures.js';

let dir = '';
let cleanup = () => {};
beforeAll(() => {
  ({ dir, cleanup } = tempDir('pickle'));
  execFileSync(PYTHON, [join(import.meta.dirname, 'fixtures', 'make_pickles.py'), dir], { stdio: 'pipe' });
});
afterAll(() => cleanup());

const load = (file: string) => unpickle(readFileSync(join(dir, file)), { source: file, resolveGlobal: (m, n) => resolveTorchGlobal(m, n, file) });

/** The fixture's JSON encoding of a value (see make_pickles.py). */
function toJson(v: unknown): unknown {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return { int: v.toString() };
  if (Buffer.isBuffer(v)) return { bytes: v.toString('hex') };
  if (Array.isArray(v)) return v.map(toJson);
  if (v instanceof Set) return { set: [...v].map(toJson).sort() };
  if (v instanceof Map) return { dict: [...v].map(([k, x]) => [toJson(k), toJson(x)]) };
  throw new Error(`unexpected value ${String(v)}`);
}

describe('unpickle', () => {
  for (const name of ['scalars', 'bigints', 'containers', 'bytes', 'memo', 'ordered', 'sets']) {
    for (const proto of [0, 1, 2, 3, 4, 5]) {
      it(`reads '${name}' in protocol ${proto}`, () => {
        const want = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8'));
        expect(toJson(load(`${name}.p${proto}.pkl`))).toEqual(want);
      });
    }
  }

  it('keeps shared references shared (memo)', () => {
    for (const proto of [2, 4]) {
      const v = load(`memo.p${proto}.pkl`) as Map<string, unknown>;
      expect(v.get('first')).toBe(v.get('second'));
    }
  });

  it('turns unknown classes into inert objects carrying their state, and reports where they are', () => {
    for (const proto of [2, 4]) {
      const v = load(`unknown.p${proto}.pkl`) as Map<string, unknown>;
      const obj = v.get('obj') as InertObject;
      expect(obj).toBeInstanceOf(InertObject);
      expect(obj.cls).toBe('__main__.Unknown');
      expect(obj.known).toBe(false);
      expect(toJson(obj.state)).toEqual({ dict: [['attr', [1, 2]]] });
      expect((v.get('cls') as PickleGlobal).qualifiedName).toBe('__main__.Unknown');
      expect(
        findInert(v, 'root')
          .map((x) => x.path)
          .sort(),
      ).toEqual(['root.cls', 'root.obj']);
    }
  });

  for (const name of ['os_system', 'subprocess', 'eval', 'exec', 'getattr', 'import']) {
    it(`refuses a pickle calling ${name} and runs nothing`, () => {
      for (const proto of [2, 4]) {
        expect(() => load(`hostile_${name}.p${proto}.pkl`)).toThrow(
          /refused: the pickle names the global '(posix\.system|subprocess\.call|builtins\.(eval|exec|getattr|__import__))'/,
        );
      }
      expect(existsSync(join(dir, 'PWNED'))).toBe(false);
    });
  }

  it('reports truncation and garbage instead of crashing', () => {
    const good = readFileSync(join(dir, 'containers.p2.pkl'));
    for (let cut = 0; cut < good.length; cut += 3) {
      expect(() => unpickle(good.subarray(0, cut), { resolveGlobal: () => null })).toThrow(PickleError);
    }
    expect(() => unpickle(Buffer.from([0x80, 0x02, 0xff]), { resolveGlobal: () => null })).toThrow(/unknown opcode 0xff/);
    expect(() => unpickle(Buffer.from([0x80, 0x02, 0x68, 0x07, 0x2e]), { resolveGlobal: () => null })).toThrow(/memo key 7 is not defined/);
    expect(() => unpickle(Buffer.from([0x80, 0x02, 0x52, 0x2e]), { resolveGlobal: () => null })).toThrow(/stack underflow/);
    expect(() => unpickle(Buffer.from([0x80, 0x02, 0x51, 0x2e]), { resolveGlobal: () => null })).toThrow(/stack underflow|persistent id/);
    // A BINUNICODE claiming 4 GB.
    expect(() => unpickle(Buffer.from([0x80, 0x02, 0x58, 0xff, 0xff, 0xff, 0xff, 0x2e]), { resolveGlobal: () => null })).toThrow(/truncated pickle/);
  });
});
