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
// MMA (0xa0..0xb0 in gemm) is not the main loop. The 1x1 instantiation of the conv (which the fp32 NCHW
// decoder's 1x1 convs run) has 1 HMMA in 40. The wgmma conv (an NHWC kernel: with it the decoder is bf16
// NHWC and its 1x1 convs run on it too) is a trap stub in the sm_90 code and a loop of 2 HGMMA, 4 16-byte
// LDGSTS and a barrier (9 instructions) in the sm_90a code.
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

interface ModelOp {
  group: string;
  name: string;
  kind: string;
  calls: number;
  bytes: number;
  kernel: string | null;
}
const decoderOps = (m: { ops: ModelOp[] }) => m.ops.filter((o) => o.group === 'vqgan');
const byName = (ops: ModelOp[], name: string) => {
  const found = ops.filter((o) => o.name === name);
  expect(found, name).toHaveLength(1);
  return found[0];
};
// The decoder's maps at batch 320 in passes of 32 grids (10 passes).
const grids = 32;
const attnElems = 3 * 512 * 196 + 196 * 196 * 2 + 512 * 196;

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
    // The baseline is the fp32 NCHW decoder: its 1x1 convs run the baseline's 1x1 kernel.
    expect(m.decoder_layout).toBe('nchw');
    expect(m.kernels.conv_bf16_1x1.mix).toMatchObject({ total: 40, mma: 1 });
  });

  it('keeps the fp32 NCHW decoder for the baseline conv: 1x1 convs on conv_bf16_1x1, no GroupNorm passes', () => {
    const r = run(['--sass', sassFile, '--ptxas', ptxas, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const ops = decoderOps(JSON.parse(r.stdout));
    // One row per conv shape and the two memory ops, as before: nothing split, no passes added.
    expect(ops).toHaveLength(18);
    expect(ops.filter((o) => /group_norm_nhwc|prologue|residual/.test(o.name))).toEqual([]);
    for (const o of ops.filter((o) => o.kind === 'conv1x1')) expect(o.kernel, o.name).toBe('conv_bf16_1x1');
    for (const o of ops.filter((o) => o.kind === 'conv')) expect(o.kernel, o.name).toBe('conv_bf16');
    // fp32 input and output, bf16 weights; 60 calls of the 224x224 resnet conv in one row.
    const r224 = byName(ops, 'resnet 128>128 3x3 @224');
    expect(r224.calls).toBe(60);
    expect(r224.bytes).toBe(grids * (4 * 128 * 224 * 224 * 2) + 2 * 128 * 128 * 9);
    expect(byName(ops, 'spatial attention @14').bytes).toBe(grids * 4 * attnElems);
    expect(byName(ops, 'conv_out 128>3 @224 + loss').bytes).toBe(grids * 4 * (128 * 224 * 224 + 2 * 3 * 224 * 224));
    const t = run(['--sass', sassFile, '--ptxas', ptxas]).stdout;
    expect(t).toContain('decoder layout: fp32 NCHW maps');
    expect(t).toMatch(/\| vqgan \| nin 1x1 256>128 @112 \| conv_bf16_1x1 \|/);
    expect(t).toMatch(/VQGAN decoder \(fp32 NCHW\)/);
  });

  it('reads a wgmma kernel from its sm_90a code', () => {
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
  });

  it('runs the bf16 NHWC decoder with an NHWC conv: GroupNorm passes, 1x1 convs on it, bf16 maps', () => {
    const r = run(['--sass', sassFile, '--ptxas', ptxas, '--conv', 'conv_bf16_wgmma', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const m = JSON.parse(r.stdout);
    expect(m.decoder_layout).toBe('nhwc');
    const ops = decoderOps(m);
    // Every conv, 1x1 ones included, on the chosen kernel; the baseline's 1x1 kernel is not used at all.
    const convs = ops.filter((o) => o.kind !== 'memory');
    expect(convs.filter((o) => o.kind === 'conv1x1').map((o) => o.name)).toEqual([
      'attn qkv 1x1 512>1536 @14',
      'attn proj 1x1 512>512 @14 + residual',
      'nin 1x1 512>256 @28',
      'nin 1x1 256>128 @112',
    ]);
    for (const o of convs) expect(o.kernel, o.name).toBe('conv_bf16_wgmma');
    expect(m.kernels.conv_bf16_1x1).toBeUndefined();
    // No per-conv prologue pass; a group_norm_nhwc pass over the input of each resnet conv, of attention's
    // qkv and of conv_out, and of nothing else (conv_in, upsampling, nin, proj read their input as stored).
    expect(ops.filter((o) => /prologue/.test(o.name))).toEqual([]);
    const norms = ops.filter((o) => o.name.endsWith(': group_norm_nhwc'));
    expect(norms.map((o) => o.name.replace(': group_norm_nhwc', ''))).toEqual([
      'resnet 512>512 3x3 @14',
      'attn qkv 1x1 512>1536 @14',
      'resnet 512>256 3x3 @28',
      'resnet 256>256 3x3 @28',
      'resnet 256>256 3x3 @56',
      'resnet 256>128 3x3 @112',
      'resnet 128>128 3x3 @112',
      'resnet 128>128 3x3 @224',
      'conv_out 128>3 @224',
    ]);
    for (const o of norms) expect(o.kind).toBe('memory');
    // bf16 read + bf16 write: 4 bytes per element, one call per conv call (conv_out: one per pass).
    const n224 = byName(ops, 'resnet 128>128 3x3 @224: group_norm_nhwc');
    expect(n224.calls).toBe(60);
    expect(n224.bytes).toBe(4 * grids * 128 * 224 * 224);
    expect(byName(ops, 'resnet 512>512 3x3 @14: group_norm_nhwc').bytes).toBe(4 * grids * 512 * 14 * 14);
    expect(byName(ops, 'attn qkv 1x1 512>1536 @14: group_norm_nhwc')).toMatchObject({ calls: 40, bytes: 4 * grids * 512 * 196 });
    expect(byName(ops, 'conv_out 128>3 @224: group_norm_nhwc')).toMatchObject({ calls: 10, bytes: 4 * grids * 128 * 224 * 224 });
    // A conv moves bf16 input, output and weights; conv2 of each ResnetBlock and attention's proj also read
    // a bf16 residual. 224x224: 3 blocks a pass, 3 conv1 + 3 conv2.
    const elems224 = grids * 128 * 224 * 224;
    const plain224 = 2 * elems224 + 2 * elems224 + 2 * 128 * 128 * 9;
    expect(byName(ops, 'resnet 128>128 3x3 @224 conv1')).toMatchObject({ calls: 30, bytes: plain224 });
    expect(byName(ops, 'resnet 128>128 3x3 @224 conv2 + residual')).toMatchObject({ calls: 30, bytes: plain224 + 2 * elems224 });
    // 14x14: mid 2 + level 3 blocks (5 + 5); 28x28 and 112x112: the first block's conv1 changes channels,
    // the rest is 3 conv2 + 2 conv1; the shortcut adds nothing of its own.
    expect(byName(ops, 'resnet 512>512 3x3 @14 conv1').calls).toBe(50);
    expect(byName(ops, 'resnet 512>512 3x3 @14 conv2 + residual').calls).toBe(50);
    expect(byName(ops, 'resnet 512>256 3x3 @28 conv1').calls).toBe(10);
    expect(ops.filter((o) => o.name.startsWith('resnet 512>256 3x3 @28 conv2'))).toEqual([]);
    expect(byName(ops, 'resnet 128>128 3x3 @112 conv1').calls).toBe(20);
    expect(byName(ops, 'resnet 128>128 3x3 @112 conv2 + residual').calls).toBe(30);
    const residualCalls = ops.filter((o) => o.name.endsWith('+ residual')).reduce((a, o) => a + o.calls, 0);
    expect(residualCalls).toBe(10 * (17 + 4)); // 17 ResnetBlocks and 4 attention blocks a pass
    expect(byName(ops, 'nin 1x1 256>128 @112').bytes).toBe(2 * grids * (256 + 128) * 112 * 112 + 2 * 128 * 256);
    expect(byName(ops, 'attn proj 1x1 512>512 @14 + residual')).toMatchObject({
      calls: 40,
      bytes: 2 * grids * 512 * 196 * 3 + 2 * 512 * 512,
    });
    // Upsampling reads the 112x112 map as stored and writes 224x224.
    expect(byName(ops, 'upsample 128 3x3 @112>224').bytes).toBe(2 * grids * 128 * (112 * 112 + 224 * 224) + 2 * 128 * 128 * 9);
    // Spatial attention in bf16 (half the fp32 bytes); conv_out reads bf16, writes fp32 pixels and loss.
    expect(byName(ops, 'spatial attention @14').bytes).toBe(grids * 2 * attnElems);
    expect(byName(ops, 'conv_out 128>3 @224 + loss').bytes).toBe(grids * (2 * 128 * 224 * 224 + 4 * 2 * 3 * 224 * 224));
    // The same work as the NCHW decoder, only moved differently.
    const base = JSON.parse(run(['--sass', sassFile, '--ptxas', ptxas, '--json']).stdout);
    expect(m.gmac_per_forward).toBeCloseTo(base.gmac_per_forward, 9);
    expect(m.mae_ms).toBeCloseTo(base.mae_ms, 9);

    const t = run(['--sass', sassFile, '--ptxas', ptxas, '--conv', 'conv_bf16_wgmma']).stdout;
    expect(t).toContain('decoder layout: bf16 NHWC maps end to end');
    expect(t).toMatch(/\| vqgan \| resnet 128>128 3x3 @224: group_norm_nhwc \| \(memory\) \| 60 \|/);
    expect(t).toMatch(/\| vqgan \| nin 1x1 256>128 @112 \| conv_bf16_wgmma \|/);
    expect(t).not.toMatch(/prologue pass|conv_bf16_1x1/);
    expect(t).toMatch(/VQGAN decoder \(bf16 NHWC\)/);
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
