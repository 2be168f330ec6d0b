// The PyTorch reference checks itself against facts of the model (test/reference/self_check.py: the
// position embedding, token bookkeeping, both modes, patching and capture, the VQGAN, the metrics, the
// weights format), so that the parity tests compare the engine with a reference that is right.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('the PyTorch reference', () => {
  it('passes its self-check', () => {
    const r = spawnSync('/usr/bin/python3', ['test/reference/self_check.py'], { encoding: 'utf8' });
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    expect(r.error, out).toBeUndefined();
    const failed = out.split('\n').filter((l) => l.startsWith('FAIL'));
    expect(failed, out).toEqual([]);
    expect(r.status, out).toBe(0);
    expect(out).toMatch(/^0 failures/m);
    // It ran its checks, not none of them.
    expect(out.split('\n').filter((l) => l.startsWith('ok ')).length).toBeGreaterThanOrEqual(35);
  });
});
