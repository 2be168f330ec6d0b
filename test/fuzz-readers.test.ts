// Seeded fuzzing of every reader of untrusted bytes: safetensors headers, zip archives, pickles,
// PNG/JPEG, and the run's JSON files (config.json, subset.json, state and log). Each valid input is
// mutated a few hundred to a few thousand times (bytes flipped, cut, inserted, repeated; JSON values
// swapped for others); every mutant must give a valid result or an Error that names the file (or the
// pickle's source), never a TypeError/RangeError, a crash, a hang or a large allocation. The seed is
// fixed (FUZZ_SEED overrides it) so a failure reproduces; the mutant that failed is printed.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InertObject, PickleGlobal, unpickle } from '../src/checkpoint/pickle.js';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { TorchCheckpoint } from '../src/checkpoint/torch-checkpoint.js';
import { ZipArchive } from '../src/checkpoint/zip.js';
import { openRun } from '../src/cli/common.js';
import { preset } from '../src/config.js';
import { decodeImage, decodeLabelPng, encodeJpeg, encodePng, makeImage } from '../src/data/image.js';
import { Rng } from '../src/data/rng.js';
import { readSearchState, repairLog } from '../src/method/reinforce.js';
import { VariableSpace } from '../src/method/variables.js';
import { readSubsetFile } from '../src/run/subset-file.js';
import { buildZip } from './zip-builder.js';

const SEED = Number(process.env.FUZZ_SEED ?? 16);
const MIN_MUTANTS = 200;
const dir = mkdtempSync(join(tmpdir(), 'vtv-fuzz-'));
const tiny = preset('tiny');

/** One mutation of `b`: flip bytes, set interesting values, cut, insert, duplicate or delete a span. */
function mutate(rng: Rng, b: Uint8Array): Uint8Array {
  const out = Array.from(b);
  const edits = rng.int(1, 4);
  const interesting = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x22, 0x5b, 0x7b, 0x7d, 0x2c, 0x3a, 0x30, 0x39, 0x2d, 0x65, 0x6e];
  for (let e = 0; e < edits && out.length > 0; e++) {
    const at = rng.int(0, out.length - 1);
    switch (rng.int(0, 6)) {
      case 0:
        out[at] = out[at]! ^ (1 << rng.int(0, 7));
        break;
      case 1:
        out[at] = rng.pick(interesting);
        break;
      case 2:
        out.length = at; // cut
        break;
      case 3:
        out.splice(at, 0, ...Array.from({ length: rng.int(1, 8) }, () => rng.int(0, 255)));
        break;
      case 4: {
        const len = rng.int(1, Math.min(64, out.length - at));
        out.splice(at, 0, ...out.slice(at, at + len)); // duplicate a span
        break;
      }
      case 5:
        out.splice(at, rng.int(1, 16));
        break;
      default: {
        // a 32-bit little-endian field set to an extreme
        const v = rng.pick([0, 1, 0x7fffffff, 0xffffffff, 0x80000000, 0x10000, rng.int(0, 0xffffffff)]);
        for (let k = 0; k < 4 && at + k < out.length; k++) out[at + k] = (v >>> (8 * k)) & 0xff;
      }
    }
  }
  return Uint8Array.from(out);
}

/** A JSON mutation: a random value somewhere in the tree replaced by a value of another type. */
function mutateJson(rng: Rng, v: unknown): unknown {
  const others = [null, true, -1, 0, 1e308, 2 ** 53 + 2, 'x', '', [], {}, [null], { format: null }, Number.NaN];
  const walk = (x: unknown, depth: number): unknown => {
    if (depth > 0 && rng.int(0, 5) === 0) return rng.pick(others);
    if (Array.isArray(x)) {
      if (x.length === 0) return x;
      const i = rng.int(0, x.length - 1);
      const y = x.slice();
      y[i] = walk(x[i], depth + 1);
      return y;
    }
    if (x !== null && typeof x === 'object') {
      const keys = Object.keys(x);
      if (keys.length === 0) return x;
      const k = rng.pick(keys);
      const y = { ...(x as Record<string, unknown>) };
      if (rng.int(0, 6) === 0) delete y[k];
      else y[k] = walk(y[k], depth + 1);
      return y;
    }
    return rng.pick(others);
  };
  return walk(v, 0);
}

/**
 * Runs `count` mutants of `seedInputs` through `read`; a thrown error must be a plain Error naming
 * `name`. Returns how many were accepted and refused.
 */
function fuzz(
  label: string,
  count: number,
  seeds: Uint8Array[],
  read: (bytes: Uint8Array) => void,
  name: string,
  mutator: (rng: Rng, b: Uint8Array) => Uint8Array = mutate,
  budgetMs = 3500,
): { ok: number; refused: number } {
  const rng = Rng.fromSeed(SEED).fork(label);
  let ok = 0;
  let refused = 0;
  const t0 = performance.now();
  // The mutants are the same sequence on every machine; a slow (shared) machine stops early, at the
  // time budget, so the suite's cost stays bounded, but never before MIN_MUTANTS.
  let i = 0;
  for (; i < count && (i < MIN_MUTANTS || performance.now() - t0 < budgetMs); i++) {
    const input = mutator(rng, rng.pick(seeds));
    const c0 = performance.now();
    try {
      read(input);
      ok++;
    } catch (e) {
      const err = e as Error;
      const bad = !(err instanceof Error) || ['TypeError', 'RangeError', 'SyntaxError', 'ReferenceError'].includes(err.name) || !err.message.includes(name);
      if (bad) {
        throw new Error(
          `${label} mutant #${i} (seed ${SEED}): unclear error ${err?.name}: ${err?.message}\n  input (hex, first 256 bytes): ${Buffer.from(input.subarray(0, 256)).toString('hex')}\n${err?.stack}`,
        );
      }
      refused++;
    }
    const ms = performance.now() - c0;
    if (ms > 2000) throw new Error(`${label} mutant #${i} (seed ${SEED}) took ${ms.toFixed(0)} ms`);
  }
  const heap = process.memoryUsage().rss;
  expect(heap, `${label}: resident memory after fuzzing`).toBeLessThan(3 * 2 ** 30);
  console.log(
    `fuzz ${label}: ${i} of ${count} mutants, ${ok} read, ${refused} refused clearly, ${((performance.now() - t0) / 1000).toFixed(1)} s (seed ${SEED})`,
  );
  return { ok, refused };
}

const fileOf = (name: string, bytes: Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
};

describe('fuzzing the readers (seeded)', () => {
  it('safetensors: header and data', () => {
    const base = join(dir, 'base.safetensors');
    writeSafetensors(
      base,
      { a: { dtype: 'F32', shape: [2, 3], data: new Float32Array(6).fill(1.5) }, 'b.c': { dtype: 'I32', shape: [1], data: Int32Array.of(7) } },
      { vtv_config: '{"name":"tiny"}' },
    );
    const bytes = new Uint8Array(readFileSync(base));
    const headerLen = Number(Buffer.from(bytes).readBigUInt64LE(0));
    const text = Buffer.from(bytes.subarray(8, 8 + headerLen)).toString('utf8');
    // Mutate the JSON as text and as values too, re-framed with a consistent length.
    const reframe = (json: string) => {
      const body = Buffer.from(json, 'utf8');
      const h = Buffer.alloc(8);
      h.writeBigUInt64LE(BigInt(body.length));
      return new Uint8Array(Buffer.concat([h, body, bytes.subarray(8 + headerLen)]));
    };
    const mutator = (rng: Rng, b: Uint8Array) => {
      const k = rng.int(0, 2);
      if (k === 0) return mutate(rng, b);
      if (k === 1) return reframe(Buffer.from(mutate(rng, Buffer.from(text))).toString('latin1'));
      return reframe(JSON.stringify(mutateJson(rng, JSON.parse(text))) ?? 'null');
    };
    const r = fuzz(
      'safetensors',
      1500,
      [bytes],
      (b) => {
        const p = fileOf('fuzz.safetensors', b);
        readSafetensorsHeader(p);
        readSafetensors(p);
      },
      'fuzz.safetensors',
      mutator,
    );
    expect(r.refused).toBeGreaterThan(100);
  });

  it('zip archives and the checkpoint on top of them', () => {
    // PROTO 2, EMPTY_DICT, 'model' -> EMPTY_DICT, SETITEM, STOP; storages stored and deflated.
    const pkl = Buffer.from([0x80, 0x02, 0x7d, 0x8c, 0x05, ...Buffer.from('model'), 0x7d, 0x73, 0x2e]);
    const storage = new Uint8Array(4096).map((_, i) => (i * 37) & 0xff);
    const seeds = [
      buildZip([
        { name: 'archive/data.pkl', data: pkl },
        { name: 'archive/byteorder', data: Buffer.from('little') },
        { name: 'archive/data/0', data: storage },
        { name: 'archive/data/1', data: storage, method: 8 },
      ]),
      buildZip([{ name: 'archive/data.pkl', data: pkl, method: 8 }]),
    ].map((b) => new Uint8Array(b));
    fuzz(
      'zip',
      1500,
      seeds,
      (b) => {
        const p = fileOf('fuzz.pth', b);
        const z = ZipArchive.open(p);
        try {
          for (const name of z.entries.keys()) {
            z.readEntry(name);
            z.readEntryRange(name, 0, Math.min(16, z.entry(name).size));
          }
        } finally {
          z.close();
        }
        TorchCheckpoint.open(p).close();
      },
      'fuzz.pth',
    );
  });

  it('pickles', () => {
    const op = (...xs: (number | string)[]) => Buffer.concat(xs.map((x) => (typeof x === 'string' ? Buffer.from(x, 'latin1') : Buffer.from([x]))));
    const seeds = [
      // {'a': [1, 2.5, 'x', (True, None)], 'b': b'..'} with memo and MARK/APPENDS/SETITEMS
      op(
        0x80,
        2,
        0x7d,
        0x94,
        0x28,
        0x8c,
        1,
        'a',
        0x5d,
        0x94,
        0x28,
        0x4b,
        1,
        0x47,
        '@\x04\x00\x00\x00\x00\x00\x00',
        0x8c,
        1,
        'x',
        0x88,
        0x4e,
        0x86,
        0x65,
        0x8c,
        1,
        'b',
        0x43,
        2,
        'hi',
        0x75,
        0x2e,
      ),
      // a global, REDUCE, BUILD, text opcodes, LONG1, UNICODE escape, GET/PUT, persistent id
      op(
        0x80,
        2,
        0x63,
        'collections\nOrderedDict\n',
        0x29,
        0x52,
        0x71,
        0,
        0x56,
        'k\\u00e9\n',
        0x49,
        '12\n',
        0x73,
        0x7d,
        0x62,
        0x8a,
        2,
        0xff,
        0x7f,
        0x30,
        0x68,
        0,
        0x30,
        0x8c,
        1,
        'p',
        0x51,
        0x30,
        0x2e,
      ),
      op(0x80, 4, 0x95, 8, 0, 0, 0, 0, 0, 0, 0, 0x5d, 0x28, 0x4b, 1, 0x4b, 2, 0x4d, 3, 0, 0x4a, 4, 0, 0, 0, 0x65, 0x8f, 0x28, 0x4b, 9, 0x90, 0x86, 0x2e),
    ].map((b) => new Uint8Array(b));
    const opts = {
      source: 'fuzz.pkl',
      resolveGlobal: (m: string, n: string) => new PickleGlobal(m, n),
      persistentLoad: (pid: unknown) => new InertObject('storage', [pid], true),
    };
    const r = fuzz('pickle', 3000, seeds, (b) => void unpickle(b, opts), 'fuzz.pkl');
    expect(r.ok).toBeGreaterThan(0);
  });

  it('PNG and JPEG', () => {
    const rgb = makeImage(
      12,
      9,
      3,
      new Uint8Array(12 * 9 * 3).map((_, i) => (i * 29) & 0xff),
    );
    const grey = makeImage(
      10,
      10,
      1,
      new Uint8Array(100).map((_, i) => i % 21),
    );
    const seeds = [encodePng(rgb), encodePng(grey), encodeJpeg(rgb, 80)];
    fuzz(
      'png/jpeg',
      800,
      seeds,
      (b) => {
        decodeImage(b, 'fuzz.img');
        if (b[1] === 0x50) decodeLabelPng(b, 'fuzz.img');
      },
      'fuzz.img',
    );
  });

  it("the run's JSON files: config.json, subset.json, a search state and its log", () => {
    const run = join(dir, 'run');
    const config = {
      format: 'vtv-run',
      version: 1,
      model: 'tiny',
      weights: ['/w.safetensors'],
      dataset: 'bundled',
      backend: 'auto',
      created: '2026-01-01T00:00:00Z',
    };
    const subset = {
      format: 'vtv-subset',
      version: 1,
      model: 'tiny',
      granularity: 0,
      mode: 'zero-shot',
      tasks: ['segmentation'],
      rule: 'sample',
      selectedStep: 3,
      variables: new VariableSpace(tiny, 0, 'zero-shot').count,
      chosen: [1, 5],
      patches: [],
      logits: Array.from({ length: new VariableSpace(tiny, 0, 'zero-shot').count }, (_, i) => i / 10 - 2),
      probabilities: [],
    };
    const state = { format: 'vtv-search-state', version: 1, step: 2, logits: [0.5], adam: { m: [0], v: [0], t: 2 }, rng: { s: [1, 2, 3, 4] }, best: null };
    const log = '{"step":0,"loss":1}\n{"step":1,"loss":0.5}\n';
    const enc = (v: unknown) => new Uint8Array(Buffer.from(`${JSON.stringify(v, null, 1)}\n`));
    const jsonMutator = (base: unknown) => (rng: Rng, b: Uint8Array) => (rng.int(0, 1) === 0 ? mutate(rng, b) : enc(mutateJson(rng, base)));
    const configPath = join(run, 'config.json');
    mkdirSync(run, { recursive: true });
    fuzz(
      'config.json',
      600,
      [enc(config)],
      (b) => {
        writeFileSync(configPath, b);
        openRun({ run }, false);
      },
      'config.json',
      jsonMutator(config),
    );
    fuzz(
      'subset.json',
      600,
      [enc(subset)],
      (b) => {
        readSubsetFile(fileOf('subset.json', b), tiny);
      },
      'subset.json',
      jsonMutator(subset),
    );
    fuzz(
      'state.json',
      400,
      [enc(state)],
      (b) => {
        readSearchState(fileOf('state.json', b));
      },
      'state.json',
      jsonMutator(state),
    );
    fuzz(
      'log.jsonl',
      400,
      [new Uint8Array(Buffer.from(log))],
      (b) => {
        repairLog(fileOf('log.jsonl', b), 2);
      },
      'log.jsonl',
    );
  });
});
