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
// MMA (0xa0..0xb0 in gemm) is not the main loop. The 1x1 instantiation of the conv (which the decoder's
// 1x1 convs always run) has 1 HMMA in 40. The wgmma conv is a trap stub in the sm_90 code and a loop
// of 2 HGMMA, 4 16-byte LDGSTS and a barrier (9 instructions) in the sm_90a code.
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
  sassLoop('conv_bf16_kernelILi1ELb0EEEvNS0_10ConvParamsE', [
    'HMMA.16816.F32.BF16 R12, R8, R10, R12',
    ...Array.from({ length: 38 }, () => 'IMAD R2, R3, R4, R2'),
  ]),
  '\t\tFunction : _ZN3vtv4cuda22conv_bf16_wgmma_kernelILi128EEEvNS0_10ConvParamsE',
  '        /*0000*/                   BPT.TRAP 0x1 ;',
  '\tcode for sm_90a',
  sassLoop('conv_bf16_wgmma_kernelILi128EEEvNS0_10ConvParamsE', [
    ...Array.from({ length: 4 }, () => 'LDGSTS.E.BYPASS.LTC128B.128 [R2], desc[UR4][R4.64]'),
    'HGMMA.64x128x16.F32.BF16 R24, gdesc[UR4], R24',
    'HGMMA.64x128x16.F32.BF16 R24, gdesc[UR8], R24',
    'BAR.SYNC.DEFER_BLOCKING 0x0',
    'IADD3 R9, R9, 0x20, RZ',
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
    'sm_90   conv_bf16_kernel<1, false>   64 regs   20000 smem     0 stack     0 spill-st     0 spill-ld',
    'sm_90   conv_bf16_wgmma_kernel<128>    4 regs       0 smem     0 stack     0 spill-st     0 spill-ld',
    'sm_90a  conv_bf16_wgmma_kernel<128>  120 regs    2048 smem     0 stack     0 spill-st     0 spill-ld',
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
    // The 1x1 convs run the baseline's 1x1 kernel whatever --conv says.
    expect(m.kernels.conv_bf16_1x1.mix).toMatchObject({ total: 40, mma: 1 });
  });

  it('reads a wgmma kernel from its sm_90a code and charges the NHWC prologue pass', () => {
    const r = run(['--sass', sassFile, '--ptxas', ptxas, '--conv', 'conv_bf16_wgmma', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout);
    const w = m.kernels.conv_bf16_wgmma;
    expect(w.regs).toBe(120); // the sm_90a row, not the sm_90 trap stub
    expect(w.mix).toMatchObject({ total: 9, mma: 2, ldgsts: 4, ldgsts_bytes: 64, bar: 1 });
    // A warp's share of m64n128k16 is 65,536 FLOPs; at the wgmma fraction 0.92 of 989 TFLOP/s over 528
    // sub-partitions at 1.755 GHz that is 66.74 clocks. Shared memory: 32 B of cp.async per thread and MMA
    // (1,024 per warp) plus the operands (64 + 128) x 16 bf16 / 4 warps = 1,536 B, at 32 B a clock: 80.
    expect(w.clocks_per_mma.tensor).toBeCloseTo(66.74, 2);
    expect(w.clocks_per_mma.smem).toBe(80);
    expect(w.bound).toBe('smem');
    expect(w.blocks_per_sm).toBe(2); // 120 registers x 256 threads, and 98,304 B of dynamic shared memory, allow 2
    const t = run(['--sass', sassFile, '--ptxas', ptxas, '--conv', 'conv_bf16_wgmma']);
    expect(t.stdout).toMatch(/\| conv_bf16_wgmma \(sm_90a\) \| 120 \| 100352 \| 0 \| 2 \(registers\) \|/);
    expect(t.stdout).toMatch(/\| vqgan \| resnet 128>128 3x3 @224: NHWC prologue pass \| \(memory\) \| 60 \|/);
    expect(t.stdout).toMatch(/\| vqgan \| nin 1x1 256>128 @112 \| conv_bf16_1x1 \|/);
    // The baseline conv reads fp32 NCHW itself: no prologue pass.
    expect(run(['--sass', sassFile, '--ptxas', ptxas]).stdout).not.toMatch(/NHWC prologue pass/);
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
    expect(bad.stderr).toMatch(
      /--linear gemm_wgmma: no such kernel \(known: conv_bf16, conv_bf16_1x1, conv_bf16_nhwc, conv_bf16_wgmma, conv_bf16_wgmma_n256, gemm_bf16, gemm_bf16_pipelined, gemm_bf16_wgmma\)/,
    );
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, 'nothing here\n');
    const noRows = run(['--sass', sassFile, '--ptxas', empty]);
    expect(noRows.stderr).toContain(`${empty} holds no sm_90 kernel rows`);
  });
});
