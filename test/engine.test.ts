// The addon seam: backends() explains itself, the loader's errors are actionable, bad input is a rejected
// Promise with a clear message — never a crash — and the library API: caller-supplied output arrays,
// an asynchronous close() (and `await using`), the model config from the weights' metadata.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../src/checkpoint/safetensors.js';
import { patchBitIndex, patchBytes, preset } from '../src/config.js';
import { BoundTaskMeans, CANVAS_FLOATS, Engine } from '../src/engine.js';
import { InputError, UsageError } from '../src/errors.js';
import { randomWeights, writeRandomWeights } from '../src/model/random-weights.js';
import { loadAddon } from '../src/native.js';

const dir = mkdtempSync(join(tmpdir(), 'vtv-engine-'));
const config = preset('tiny');
const weights = join(dir, 'tiny.safetensors');
let engine: Engine;

function canvases(n: number, seed = 1): Float32Array {
  const c = new Float32Array(n * CANVAS_FLOATS);
  let s = seed;
  for (let i = 0; i < c.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    c[i] = (s / 2 ** 32) * 4 - 2;
  }
  return c;
}

beforeAll(async () => {
  writeRandomWeights(weights, config, 3);
  engine = await Engine.open({ config, weights, backend: 'cpu' });
});
afterAll(async () => {
  await engine?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('addon', () => {
  it('backends() says what is compiled in and why a GPU is or is not used', () => {
    const list = loadAddon().backends();
    const cpu = list.find((b) => b.name === 'cpu')!;
    expect(cpu.usable).toBe(true);
    const cuda = list.find((b) => b.name === 'cuda')!;
    expect(cuda.detail.length).toBeGreaterThan(10);
    if (!cuda.usable) expect(engine.backend.name).toBe('cpu');
    expect(engine.backend.reason.length).toBeGreaterThan(0);
    expect(engine.backend.threads).toBeGreaterThan(0);
  });

  it('lists a weights file without loading it', () => {
    const info = loadAddon().inspectWeights([weights]);
    expect(info.tensors.find((t) => t.key === 'blocks.0.attn.qkv.weight')?.shape).toEqual([3 * config.encDim, config.encDim]);
    expect(info.tensors.length).toBe(randomWeights(config, 3).size);
  });
});

describe('bad input is a clear error, never a crash', () => {
  it('wrong canvas size', async () => {
    await expect(engine.forward({ mode: 'zero-shot', canvases: new Float32Array(100) })).rejects.toThrow(/multiple of 3x224x224/);
  });
  it('batch of 0', async () => {
    await expect(engine.forward({ mode: 'zero-shot', canvases: new Float32Array(0) })).rejects.toThrow(/batch of 0|no canvases/);
    await expect(engine.forward({ mode: 'zero-shot', canvases: canvases(1), canvasIndex: new Int32Array(0) })).rejects.toThrow(/batch of 0/);
  });
  it('NaN in a canvas names the canvas', async () => {
    const c = canvases(2);
    c[CANVAS_FLOATS + 5] = Number.NaN;
    await expect(engine.forward({ mode: 'zero-shot', canvases: c })).rejects.toThrow(/canvas 1/);
  });
  it('canvas index out of range', async () => {
    await expect(engine.forward({ mode: 'zero-shot', canvases: canvases(2), canvasIndex: Int32Array.from([0, 2]) })).rejects.toThrow(
      /canvas_index|out of range/,
    );
  });
  it('patch mask of the wrong size, or bits past the last variable', async () => {
    const means = { enc: new Float32Array(config.encDepth * 148 * config.encDim), dec: new Float32Array(config.decDepth * 197 * config.decDim) };
    await expect(engine.forward({ mode: 'zero-shot', canvases: canvases(1), patch: { means, masks: new Uint8Array(3) } })).rejects.toThrow(
      /patchMask has 3 elements/,
    );
    await expect(
      engine.forward({
        mode: 'zero-shot',
        canvases: canvases(1),
        patch: { means: { enc: new Float32Array(5), dec: means.dec }, masks: new Uint8Array(patchBytes(config, 'zero-shot')) },
      }),
    ).rejects.toThrow(/meansEnc has 5 elements/);
  });
  it('an unknown mode or loss', async () => {
    // @ts-expect-error: deliberately wrong
    await expect(engine.forward({ mode: 'two-shot', canvases: canvases(1) })).rejects.toThrow(/mode must be/);
    // @ts-expect-error: deliberately wrong
    await expect(engine.forward({ mode: 'zero-shot', canvases: canvases(1), loss: 'l1' })).rejects.toThrow(/loss must be/);
  });
  it('a missing or truncated weights file names the file', async () => {
    await expect(Engine.open({ config, weights: join(dir, 'nope.safetensors') })).rejects.toThrow(/nope\.safetensors/);
    const bad = join(dir, 'bad.safetensors');
    writeFileSync(bad, Buffer.from([1, 2, 3]));
    await expect(Engine.open({ config, weights: bad })).rejects.toThrow(/bad\.safetensors/);
    // The tiny weights say so in their metadata: another config is refused, naming the file.
    await expect(Engine.open({ config: preset('mae-vqgan-vit-large'), weights })).rejects.toThrow(
      /tiny\.safetensors: its vtv_config metadata describes model 'tiny' .* does not match the config given \('mae-vqgan-vit-large'/,
    );
    // Without metadata, the engine itself finds the shapes wrong.
    const bare = join(dir, 'bare.safetensors');
    writeSafetensors(bare, randomWeights(config, 3));
    await expect(Engine.open({ config: preset('mae-vqgan-vit-large'), weights: bare })).rejects.toThrow(/shape/);
  });
  it('still works after all of that', async () => {
    const r = await engine.forward({ mode: 'zero-shot', canvases: canvases(2), outputs: { tokens: true }, loss: 'mse' });
    expect(r.tokens!.length).toBe(2 * 196);
    expect(Number.isFinite(r.losses![0]!)).toBe(true);
  });
});

describe('forward', () => {
  it('each sample of one batch patches differently, and equals its own single run', async () => {
    const c = canvases(1, 9);
    const means = {
      enc: new Float32Array(config.encDepth * 148 * config.encDim).fill(0.7),
      dec: new Float32Array(config.decDepth * 197 * config.decDim).fill(-0.7),
    };
    const bytes = patchBytes(config, 'zero-shot');
    const masks = new Uint8Array(3 * bytes);
    for (let h = 0; h < config.encHeads; h++) {
      for (let p = 0; p < 50; p++) {
        const i = patchBitIndex(config, 'zero-shot', 0, h, p);
        masks[bytes + (i >> 3)]! |= 1 << (i & 7); // sample 1: every head of encoder layer 0
      }
    }
    for (let h = 0; h < config.decHeads; h++) {
      for (let p = 0; p < 99; p++) {
        const i = patchBitIndex(config, 'zero-shot', config.encDepth + config.decDepth - 1, h, p);
        masks[2 * bytes + (i >> 3)]! |= 1 << (i & 7); // sample 2: every head of the last decoder layer
      }
    }
    const batch = await engine.forward({
      mode: 'zero-shot',
      canvases: c,
      canvasIndex: Int32Array.from([0, 0, 0]),
      patch: { means, masks },
      outputs: { logits: true },
    });
    const V = config.vq.nEmbed;
    const per = 98 * V;
    const differs = (a: number, b: number) => batch.logits!.subarray(a * per, (a + 1) * per).some((v, i) => v !== batch.logits![b * per + i]);
    expect(differs(0, 1)).toBe(true);
    expect(differs(0, 2)).toBe(true);
    expect(differs(1, 2)).toBe(true);
    for (let s = 0; s < 3; s++) {
      const single = await engine.forward({
        mode: 'zero-shot',
        canvases: c,
        patch: { means, masks: masks.subarray(s * bytes, (s + 1) * bytes) },
        outputs: { logits: true },
      });
      expect(single.logits).toEqual(batch.logits!.subarray(s * per, (s + 1) * per));
    }
  });
  it('task means bound once give what per-call tables give, and are checked when bound', async () => {
    const fill = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed));
    const means = { enc: fill(config.encDepth * 148 * config.encDim, 1), dec: fill(config.decDepth * 197 * config.decDim, 2) };
    const bytes = patchBytes(config, 'zero-shot');
    const masks = Uint8Array.from({ length: 4 * bytes }, (_, i) => (i * 2654435761) >>> 27);
    const req = { mode: 'zero-shot' as const, canvases: canvases(2, 4), canvasIndex: Int32Array.from([0, 1, 1, 0]), loss: 'mse' as const };
    const plain = await engine.forward({ ...req, patch: { means, masks }, outputs: { logits: true } });
    const bound = await engine.bindTaskMeans(means);
    expect(bound).toBeInstanceOf(BoundTaskMeans);
    expect(await engine.bindTaskMeans(bound)).toBe(bound);
    const withBound = await engine.forward({ ...req, patch: { means: bound, masks }, outputs: { logits: true } });
    expect(withBound.logits).toEqual(plain.logits);
    expect(withBound.losses).toEqual(plain.losses);
    const bad = { enc: means.enc.slice(), dec: means.dec };
    bad.enc[11] = Number.POSITIVE_INFINITY;
    await expect(engine.bindTaskMeans(bad)).rejects.toThrow(/means_enc has a non-finite value at float index 11/);
    await expect(engine.bindTaskMeans({ enc: new Float32Array(5), dec: means.dec })).rejects.toThrow(/enc has 5 elements/);
    // Another engine's bound means travel as plain tables.
    const other = await Engine.open({ config, weights, backend: 'cpu', needVqgan: false });
    try {
      const r = await other.forward({
        mode: 'zero-shot',
        canvases: req.canvases,
        canvasIndex: req.canvasIndex,
        patch: { means: bound, masks },
        outputs: { logits: true },
      });
      expect(r.logits).toEqual(plain.logits);
    } finally {
      other.close();
    }
  });
  it('an unknown backend or precision is refused at the addon', async () => {
    // @ts-expect-error: deliberately wrong
    await expect(Engine.open({ config, weights, backend: 'tpu' })).rejects.toThrow(/engine: backend must be 'auto', 'cpu' or 'cuda', got 'tpu'/);
    // @ts-expect-error: deliberately wrong
    await expect(Engine.open({ config, weights, precision: 'fp16' })).rejects.toThrow(/engine: precision must be 'fp32' or 'bf16', got 'fp16'/);
    await expect(Engine.open({ config, weights, backend: 'cpu', precision: 'bf16' })).rejects.toThrow(/precision 'bf16' needs the CUDA backend/);
    expect(engine.backend.precision).toBe('fp32');
  });
  it('work sharing: identical (canvas, mask) samples run once', async () => {
    const r = await engine.forward({ mode: 'zero-shot', canvases: canvases(2), canvasIndex: Int32Array.from([0, 1, 0, 1, 0]), loss: 'mse' });
    expect(r.uniqueForwards).toBe(2);
    expect(r.losses![0]).toBe(r.losses![2]);
    expect(r.losses![1]).toBe(r.losses![3]);
  });
});

describe('library API', () => {
  it('writes outputs into caller-supplied arrays, reused across calls, checked before the call', async () => {
    const c = canvases(3, 7);
    const fresh = await engine.forward({ mode: 'zero-shot', canvases: c, outputs: { tokens: true, logits: true }, loss: 'mse' });
    const into = engine.outputBuffers(3, 'zero-shot', { outputs: { tokens: true, logits: true }, loss: true });
    expect(into.tokens!.length).toBe(3 * 196);
    expect(into.logits!.length).toBe(3 * 98 * config.vq.nEmbed);
    expect(into.losses!.length).toBe(3);
    for (let round = 0; round < 2; round++) {
      into.tokens!.fill(-1);
      const r = await engine.forward({ mode: 'zero-shot', canvases: c, loss: 'mse', into });
      // The same arrays come back, holding what freshly allocated ones hold.
      expect(r.tokens).toBe(into.tokens);
      expect(r.logits).toBe(into.logits);
      expect(r.losses).toBe(into.losses);
      expect(r.metrics).toBe(into.metrics);
      expect(r.tokens).toEqual(fresh.tokens);
      expect(r.logits).toEqual(fresh.logits);
      expect(r.losses).toEqual(fresh.losses);
    }
    const base = { mode: 'zero-shot' as const, canvases: c, loss: 'mse' as const };
    await expect(engine.forward({ ...base, into: { tokens: new Int32Array(196) } })).rejects.toThrow(
      'forward: into.tokens has 196 elements, expected 588 (batch 3, zero-shot)',
    );
    // @ts-expect-error: deliberately the wrong type
    await expect(engine.forward({ ...base, into: { tokens: new Float32Array(588) } })).rejects.toThrow('forward: into.tokens must be a Int32Array');
    await expect(engine.forward({ mode: 'zero-shot', canvases: c, into: { losses: new Float32Array(3) } })).rejects.toThrow(/into.losses .* need a loss/);
  });

  it('close() is asynchronous: the forward in flight finishes, the event loop keeps running, later calls are refused', async () => {
    const e = await Engine.open({ weights, backend: 'cpu', threads: 1 });
    const c = canvases(6, 3);
    const t0 = performance.now();
    await e.forward({ mode: 'one-shot', canvases: c, loss: 'mse' });
    const forwardMs = performance.now() - t0;
    const inFlight = e.forward({ mode: 'one-shot', canvases: c, loss: 'mse' });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const t1 = performance.now();
    const closing = e.close();
    const callMs = performance.now() - t1;
    expect(e.close()).toBe(closing); // closing twice: the same promise
    await expect(e.forward({ mode: 'zero-shot', canvases: canvases(1) })).rejects.toThrow('forward: the engine was closed');
    const r = await inFlight;
    await closing;
    clearInterval(timer);
    expect(r.losses!.every(Number.isFinite)).toBe(true);
    // A synchronous close would have blocked for the rest of the forward (forwardMs).
    expect(callMs, `forward ${forwardMs.toFixed(1)} ms`).toBeLessThan(Math.max(5, forwardMs / 4));
    expect(ticks).toBeGreaterThan(0);
    expect(() => e.backend).toThrow(/closed/);
  });

  it('await using closes the engine at the end of the scope (Symbol.asyncDispose)', async () => {
    let kept: Engine | undefined;
    {
      await using e = await Engine.open({ config, weights, backend: 'cpu', threads: 1 });
      kept = e;
      expect(e.backend.name).toBe('cpu');
    }
    await expect(kept.forward({ mode: 'zero-shot', canvases: canvases(1) })).rejects.toThrow('forward: the engine was closed');
  });

  it('reads the model config from the weights metadata when none is given', async () => {
    await using e = await Engine.open({ weights, backend: 'cpu', threads: 1 });
    expect(e.config).toEqual(config);
    const bare = join(dir, 'bare-config.safetensors');
    writeSafetensors(bare, randomWeights(config, 3));
    await expect(Engine.open({ weights: bare })).rejects.toThrow(UsageError);
    await expect(Engine.open({ weights: bare })).rejects.toThrow(/no model config: none was given and .*bare-config\.safetensors hold no vtv_config metadata/);
    // Two files whose metadata disagree: the second is named.
    const other = join(dir, 'mini-meta.safetensors');
    writeSafetensors(other, new Map(), { vtv_config: JSON.stringify(preset('mini')) });
    const err = await Engine.open({ weights: [weights, other] }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(
      /mini-meta\.safetensors: its vtv_config metadata describes model 'mini' .* does not match .*tiny\.safetensors's metadata/,
    );
  });
});
