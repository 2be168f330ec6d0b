// tools/device/run.sh --dry-run: the GPU machine's run rehearsed end to end here, without a GPU, so a
// broken stage is found before the GPU's minutes are spent. The parity stage runs a few CUDA tests on
// the CPU CUDA emulator when scripts/test.sh has built build-emu/ (VTV_EMULATED_ADDON set), the GPU-only
// stages say "skipped: no GPU", torch runs the tiny model on the CPU, and the search runs 2 steps x 4
// samples of the tiny model with this checkout's node and addon.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'vtv-device-run-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const python = process.env.RUN_PYTHON ?? 'python3'; // the python run.sh uses
const hasTorch = spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
const emulated = Boolean(process.env.VTV_EMULATED_ADDON);

describe('tools/device/run.sh --dry-run', () => {
  it('runs every stage here, skipping the GPU-only ones by name, and prints the summary last', () => {
    const out = join(dir, 'out');
    const r = spawnSync('bash', [join(root, 'tools/device/run.sh'), '--dry-run'], {
      env: { ...process.env, OUT: out, RUN_WORK: join(dir, 'work') },
      encoding: 'utf8',
      timeout: 240_000,
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const summary = readFileSync(join(out, 'summary.txt'), 'utf8');
    expect(r.stdout.trimEnd().endsWith(summary.trimEnd())).toBe(true);
    const stage = (name: string) => summary.match(new RegExp(`^${name} +(.+?) +\\d+$`, 'm'))?.[1];
    for (const gpuOnly of ['sanitizer', 'kernels', 'engine']) expect(stage(gpuOnly)).toBe('skipped: no GPU');
    expect(stage('torch')).toBe(hasTorch ? 'ok' : 'skipped: no python3 with torch');
    if (hasTorch) expect(JSON.parse(readFileSync(join(out, 'torch.out'), 'utf8')).eager_fps).toBeGreaterThan(0);
    const addon = process.env.VTV_ADDON ?? join(root, 'build/Release/vtv.node'); // the CLI loads VTV_ADDON when set
    const built = existsSync(addon) && existsSync(join(root, 'dist/src/cli/main.js'));
    expect(stage('search')).toMatch(built ? /^ok$/ : /^skipped: /);
    if (built) expect(summary).toMatch(/vtv search 2 x 4 \(tiny, cpu fp32\): [\d.]+ s/);
    if (emulated) {
      expect(stage('parity')).toBe('ok');
      const [, passed, failed] = summary.match(/parity tests: (\d+) passed, (\d+) failed/) ?? [];
      expect(Number(passed)).toBeGreaterThanOrEqual(4);
      expect(Number(failed)).toBe(0);
    } else {
      expect(stage('parity')).toMatch(/^(ok|skipped: no emulator build)/);
    }
  }, 300_000);

  it('refuses an unknown argument and a missing kit, naming them', () => {
    const bad = spawnSync('bash', [join(root, 'tools/device/run.sh'), '--dryrun'], { encoding: 'utf8' });
    expect(bad.status).toBe(64);
    expect(bad.stderr).toMatch(/unknown argument '--dryrun'/);
    const kit = join(dir, 'no-such-kit.tar.xz');
    const missing = spawnSync('bash', [join(root, 'tools/device/run.sh'), '--kit', kit], {
      env: { ...process.env, OUT: join(dir, 'out2'), RUN_WORK: join(dir, 'work2') },
      encoding: 'utf8',
    });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain(`no kit at ${kit}`);
  });
});
