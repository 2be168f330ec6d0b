// tools/perf-model/perf_model.py on a hand-made SASS dump (no nvcc, no GPU): the main loop is the
// innermost loop with MMAs, its instruction mix per MMA is counted from the opcodes, occupancy comes
// from the ptxas report, and the predicted times follow; bad input is named.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const script = join(root, 'tools/perf-model/perf_model.py');
const dir = mkdtempSync(join(tmpdir(), 'vtv-perf-model-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Two kernels: gemm's loop (0x20..0x80) has 2 HMMA, 3 LDS (4 + 8 + 16 bytes per thread), a barrier and
// 8 instructions in all; conv's loop has 1 HMMA in 20 instructions (issue-bound). A loop without an
// MMA (0xa0..0xb0 in gemm) is not the main loop.
function sassLoop(name: string, body: string[]): string {
  const lines = [`\t\tFunction : _ZN3vtv4cuda${name.length}${name}Ev`, '        /*0000*/                   MOV R1, c[0x0][0x28] ;'];
  body.forEach((op, i) => lines.push(`        /*${(0x20 + 16 * i).toString(16).padStart(4, '0')}*/                   ${op} ;`));
  lines.push(`        /*${(0x20 + 16 * body.length).toString(16).padStart(4, '0')}*/               @P0 BRA 0x20 ;`);
  return lines.join('\n');
}
const sass = [
  '\tcode for sm_90',
  sassLoop('gemm_bf16_kernel', [
    'LDS R8, [R9]',
    'LDS.64 R10, [R9+0x10]',
    'LDS.128 R20, [R9+0x20]',
    'HMMA.16816.F32.BF16 R12, R8, R10, R12',
    'HMMA.16816.F32.BF16 R16, R8, R10, R16',
    'BAR.SYNC.DEFER_BLOCKING 0x0',
    'IADD3 R9, R9, 0x20, RZ',
  ]),
  '        /*00a0*/                   IADD3 R2, R2, 0x1, RZ ;',
  '        /*00b0*/               @P1 BRA 0xa0 ;',
  sassLoop('conv_bf16_kernelILi3ELb0EEEvNS0_10ConvParamsE', [
    'HMMA.16816.F32.BF16 R12, R8, R10, R12',
    ...Array.from({ length: 18 }, () => 'IMAD R2, R3, R4, R2'),
  ]),
].join('\n');
const sassFile = join(dir, 'sass.txt');
writeFileSync(sassFile, sass);
const ptxas = join(dir, 'ptxas.txt');
writeFileSync(
  ptxas,
  [
    'sm_90   gemm_bf16_kernel          128 regs   40960 smem     0 stack     0 spill-st     0 spill-ld',
    'sm_90   conv_bf16_kernel<3, false>   64 regs   20000 smem     0 stack     0 spill-st     0 spill-ld',
  ].join('\n'),
);

function run(args: string[]) {
  return spawnSync('python3', [script, ...args], { encoding: 'utf8' });
}

describe('tools/perf-model/perf_model.py', () => {
  it('counts the main loop of each kernel and predicts the forward from it', () => {
    const r = run(['--sass', sassFile, '--ptxas', ptxas, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout);
    const gemm = m.kernels.gemm_bf16;
    expect(gemm.source).toBe('SASS');
    expect(gemm.mix).toMatchObject({ total: 8, mma: 2, lds: 3, lds_bytes: 28, bar: 1 });
    expect(gemm.clocks_per_mma.issue).toBe(4);
    expect(gemm.clocks_per_mma.smem).toBe(((28 / 2) * 32) / 32); // 14 B/thread per MMA over 32 B/clk per SMSP
    expect(gemm.blocks_per_sm).toBe(2); // 128 regs x 256 threads: 2 blocks in 64K registers
    expect(gemm.bound).toBe('smem');
    const conv = m.kernels.conv_bf16;
    expect(conv.mix).toMatchObject({ total: 20, mma: 1 });
    expect(conv.bound).toBe('issue');
    expect(conv.blocks_per_sm).toBe(4); // 64 regs: 4 blocks; 21 KB of shared memory allows 10
    expect(conv.sustained_fraction).toBeLessThan(gemm.sustained_fraction);
    expect(m.gmac_per_forward).toBeGreaterThan(113);
    expect(m.gmac_per_forward).toBeLessThan(115.5); // docs/method.md: 114.7
    expect(m.forwards_per_s).toBeCloseTo(320 / ((m.mae_ms + m.vqgan_ms) / 1e3), 6);
  });

  it('prints the Markdown tables with the anchor', () => {
    const r = run(['--sass', sassFile, '--ptxas', ptxas]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| gemm_bf16 \| 128 \| 40960 \| 0 \| 2 \(registers\) \| 4\.00 \|/);
    expect(r.stdout).toMatch(/bf16 torch\.compile 1,333 forwards\/s, eager 462\/s/);
  });

  it('names a kernel it does not know, and a report it cannot use', () => {
    const bad = run(['--sass', sassFile, '--ptxas', ptxas, '--linear', 'gemm_wgmma']);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--linear gemm_wgmma: no such kernel \(known: conv_bf16, conv_bf16_nhwc, gemm_bf16, gemm_bf16_pipelined\)/);
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, 'nothing here\n');
    const noRows = run(['--sass', sassFile, '--ptxas', empty]);
    expect(noRows.stderr).toContain(`${empty} holds no sm_90 kernel rows`);
  });
});
