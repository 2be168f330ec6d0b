#!/usr/bin/env python3
"""A performance model of the engine's tensor-core kernels on an H200, made without a GPU.

Per kernel it reads what the compiler says about it:
  - ptxas's resource report (-Xptxas -v: registers, static shared memory, spills; the checked-in table
    tools/device/ptxas-report.txt, or a raw build log such as the device kit's ptxas.txt) -> occupancy
    on sm_90 (132 SMs, 64K registers, 228 KB shared memory and 64 warps per SM);
  - the main loop's instruction mix: from SASS (`cuobjdump -sass` of the sm_90 build, --sass FILE) when
    there is one, else from PTX (`nvcc -ptx -arch=sm_90`, made here): instructions per MMA, shared-memory
    load bytes per MMA, global load / cp.async bytes per MMA;
and predicts, per shape of the search step's forward at batch 320 (ViT-L MAE zero-shot + VQGAN decoder,
114.7 GMAC per forward), the time of each call: the larger of a compute time (tiles in waves over the
132 SMs, each SM's tensor-core rate derated by what the loop's issue slots, shared-memory bandwidth and
the MMA instruction allow) and a memory time (its DRAM bytes at 4.8 TB/s), plus a launch cost. The sum
over the forward gives forwards/s, next to the anchor measured on an H200: bf16 torch.compile 1,333
forwards/s at batch 320, eager 462/s.

A new kernel is one entry in KERNELS (its source, its symbol, its tile and MMA instruction) and is then
chosen by name:
  python3 tools/perf-model/perf_model.py                        # today's kernels, Markdown table
  python3 tools/perf-model/perf_model.py --linear NAME --conv NAME --sass sass.txt --ptxas ptxas.txt
  python3 tools/perf-model/perf_model.py --list                 # the registered kernels
  python3 tools/perf-model/perf_model.py --summary              # forwards/s of baseline, pipelined+nhwc, wgmma

The decoder's layout follows --conv, as the engine chooses it (native/src/cuda/vqgan_kernels.h, "The bf16
NHWC decoder"):
  - the baseline conv_bf16 (nhwc_input False): fp32 NCHW maps; each conv normalises its input (GroupNorm +
    swish) in its own prologue and reads and writes fp32; the 1x1 convs (attention qkv/proj, nin shortcut)
    run on the baseline's 1x1 instantiation conv_bf16_1x1;
  - an NHWC conv kernel (nhwc_input True: conv_bf16_nhwc, conv_bf16_wgmma, conv_bf16_wgmma_n256): bf16 NHWC
    maps end to end. GroupNorm (+ swish) runs once per element as a memory pass of its own (group_norm_nhwc,
    bf16 read + bf16 write, 4 B per element, one launch) over the input of each ResnetBlock conv (GN1(x),
    GN2(h)), of attention's qkv and of conv_out (norm_out); conv_in, the upsampling convs, the nin shortcut
    and attention's proj read their input as stored. Every conv, 1x1 ones included (the same implicit GEMM
    with K = Ci, one tap), runs on the chosen kernel and moves bf16 input, output, weights and, where it adds
    one (resnet conv2: x or the nin shortcut; attention proj: x), the residual. Spatial attention moves bf16;
    conv_out reads the normalised bf16 map and writes fp32 pixels and loss as before. There is no per-conv
    prologue pass (the model's earlier NHWC variant: fp32 NCHW read + bf16 NHWC write per conv, 6 B per
    input element, and 1x1 convs on conv_bf16_1x1: 2,404 forwards/s for wgmma + n256).

The parameters in PARAMS are assumptions, not measurements (the GPU run measures them: the mma.sync
ceiling in bench_cuda_kernels, the kernels' times); they are printed with every table.
"""
import argparse
import dataclasses
import math
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# ---- the machine --------------------------------------------------------------------------------------
H200 = dict(sms=132, regs_per_sm=65536, smem_per_sm=228 * 1024, smem_per_block_reserved=1024, max_warps_per_sm=64,
            max_blocks_per_sm=32, dense_bf16_flops=989e12, hbm_bytes_per_s=4.8e12, smsp_per_sm=4,
            smem_bytes_per_clk_per_sm=128)

PARAMS = {
    # The fraction of the dense (wgmma) bf16 rate an SM reaches issuing mma.sync m16n8k16 back to back.
    "mma_sync_peak_fraction": 0.62,
    "wgmma_peak_fraction": 0.92,
    # SM clock under tensor load (GHz): converts the dense rate into clocks per MMA per sub-partition.
    "clock_ghz": 1.755,
    "hbm_efficiency": 0.85,          # achievable fraction of the 4.8 TB/s
    "launch_us": 2.0,                # per kernel node in a CUDA graph replay
    # Latency hiding: below this many warps per sub-partition, the loop's rate scales down linearly.
    "warps_per_smsp_for_full_rate": 2.0,
    # A k-loop that stages global loads through registers with one barrier per step (no cp.async
    # pipeline) keeps the tensor cores idle for part of each step.
    "register_staged_loop_factor": 0.85,
}


@dataclasses.dataclass
class Kernel:
    name: str
    source: str                 # the .cu file, relative to the repository root
    symbol: str                 # the kernel function's name (a substring of its mangled and demangled names)
    ptxas_name: str             # its row in the ptxas report (demangled, template arguments included)
    bm: int
    bn: int
    bk: int
    threads: int
    mma: str                    # "mma.sync.m16n8k16" or "wgmma.m64nNk16"
    serves: str                 # "linear" or "conv"
    pipeline: str = "registers"  # "registers" (load to registers, store to shared, one barrier a step) or "cp.async"
    dynamic_smem: int = 0       # bytes of dynamic shared memory per block (the ptxas report has only static)
    note: str = ""
    entry: str = ""             # a substring of the mangled name picking one instantiation in PTX/SASS (default: symbol)
    arch: str = "90"            # the code the H200 runs: "90a" for the wgmma kernels (their sm_90 code is a trap stub)
    nhwc_input: bool = False    # runs the bf16 NHWC decoder (bf16 NHWC maps, group_norm_nhwc passes, 1x1 convs too)

    @property
    def function(self):
        return self.entry or self.symbol


# The engine's kernels, one entry each. "serves": linear (the MAE), conv (the decoder's convs: its 3x3 ones,
# and in the bf16 NHWC decoder its 1x1 ones too) or conv1x1 (the fp32 NCHW decoder's 1x1 convs, which the
# engine runs on the baseline kernel).
KERNELS = {
    "gemm_bf16": Kernel("gemm_bf16", "native/src/cuda/gemm_bf16.cu", "gemm_bf16_kernel", "gemm_bf16_kernel",
                        128, 128, 32, 256, "mma.sync.m16n8k16", "linear",
                        note="128x128x32 tiles, 8 warps of 64x32, 32-bit shared loads, register-staged double buffer"),
    "conv_bf16": Kernel("conv_bf16", "native/src/cuda/conv_bf16.cu", "conv_bf16_kernel", "conv_bf16_kernel<3, false>",
                        128, 128, 32, 256, "mma.sync.m16n8k16", "conv", entry="conv_bf16_kernelILi3ELb0E",
                        note="implicit GEMM, NCHW gather, GroupNorm prologue and statistics epilogue (3x3, no upsampling)"),
    "conv_bf16_1x1": Kernel("conv_bf16_1x1", "native/src/cuda/conv_bf16.cu", "conv_bf16_kernel", "conv_bf16_kernel<1, false>",
                            128, 128, 32, 256, "mma.sync.m16n8k16", "conv1x1", entry="conv_bf16_kernelILi1ELb0E",
                            note="the baseline's 1x1 instantiation: the fp32 NCHW decoder's 1x1 convs (attention q/k/v/proj, nin_shortcut)"),
    "gemm_bf16_pipelined": Kernel("gemm_bf16_pipelined", "native/src/cuda/gemm_bf16_pipelined.cu",
                                  "gemm_bf16_pipelined_kernel", "gemm_bf16_pipelined_kernel",
                                  128, 128, 32, 128, "mma.sync.m16n8k16", "linear", pipeline="cp.async",
                                  dynamic_smem=81920,
                                  note="bf16 activations, 4 warps of 64x64, 4-stage cp.async, ldmatrix.x4"),
    "conv_bf16_nhwc": Kernel("conv_bf16_nhwc", "native/src/cuda/conv_bf16_nhwc.cu", "conv_bf16_nhwc_kernel",
                             "conv_bf16_nhwc_kernel", 128, 128, 32, 128, "mma.sync.m16n8k16", "conv",
                             pipeline="cp.async", dynamic_smem=61440, nhwc_input=True,
                             note="bf16 NHWC decoder (group_norm_nhwc passes, 1x1 convs too), 16-byte cp.async row "
                                  "gathers, ldmatrix.x4, 3 stages, 4 warps of 64x64"),
    "gemm_bf16_wgmma": Kernel("gemm_bf16_wgmma", "native/src/cuda/gemm_bf16_wgmma.cu", "gemm_bf16_wgmma_kernel",
                              "gemm_bf16_wgmma_kernel", 128, 128, 32, 256, "wgmma.m64n128k16", "linear",
                              pipeline="cp.async", dynamic_smem=98304, arch="90a",
                              note="bf16 activations, 2 warpgroups of 64x128, 6-stage cp.async ring, wgmma from shared "
                                   "memory with wait_group 1 (loads overlap the MMAs)"),
    "conv_bf16_wgmma": Kernel("conv_bf16_wgmma", "native/src/cuda/conv_bf16_wgmma.cu", "conv_bf16_wgmma_kernel",
                              "conv_bf16_wgmma_kernel<128>", 128, 128, 32, 256, "wgmma.m64n128k16", "conv",
                              pipeline="cp.async", dynamic_smem=98304, arch="90a", nhwc_input=True,
                              entry="conv_bf16_wgmma_kernelILi128E",
                              note="the bf16 NHWC decoder and gathers of conv_bf16_nhwc, 2 warpgroups of 64x128, "
                                   "6-stage ring, wgmma from shared memory with wait_group 1"),
    "conv_bf16_wgmma_n256": Kernel("conv_bf16_wgmma_n256", "native/src/cuda/conv_bf16_wgmma.cu", "conv_bf16_wgmma_kernel",
                                   "conv_bf16_wgmma_kernel<256>", 128, 256, 32, 256, "wgmma.m64n256k16", "conv",
                                   pipeline="cp.async", dynamic_smem=147456, arch="90a", nhwc_input=True,
                                   entry="conv_bf16_wgmma_kernelILi256E",
                                   note="conv_bf16_wgmma with 128x256 block tiles (2 warpgroups of 64x256), 1 block per SM"),
}

# MMA instructions: FLOPs per warp-level instruction. A wgmma is one instruction of each of the
# warpgroup's 4 warps (one per sub-partition), so a warp's share of m64nNk16 is 2 * 16 * N * 16.
MMA_FLOPS = {"mma.sync.m16n8k16": 2 * 16 * 8 * 16, "wgmma.m64n128k16": 2 * 16 * 128 * 16,
             "wgmma.m64n256k16": 2 * 16 * 256 * 16}
# Shared-memory bytes a warp's share of one MMA reads outside the counted load instructions: wgmma with
# both operands in shared memory reads A (64 x 16) and B (N x 16) bf16 per warpgroup; mma.sync reads
# registers (its shared loads are the ldmatrix/LDS instructions counted in the loop).
MMA_SMEM_OPERAND_BYTES = {"mma.sync.m16n8k16": 0, "wgmma.m64n128k16": (64 * 16 + 128 * 16) * 2 / 4,
                          "wgmma.m64n256k16": (64 * 16 + 256 * 16) * 2 / 4}


# ---- the forward's shapes (ViT-L MAE zero-shot + VQGAN decoder, as bench_cuda_kernels enumerates them) -----
@dataclasses.dataclass
class Op:
    group: str
    name: str
    kind: str          # "linear" (M x K times K x N), "conv" (3x3 implicit GEMM), "conv1x1", "memory" (bytes only)
    calls: float       # per batch
    M: int = 0         # linear: rows; conv: output pixels per grid
    N: int = 0         # linear: outputs; conv: output channels
    K: int = 0         # linear: inputs; conv: Ci * k * k
    grids: int = 0     # conv: grids per pass
    bytes: float = 0.0  # DRAM bytes per call (the fp32 NCHW decoder's for the decoder's ops)
    in_elems: float = 0.0  # conv: input elements per call (N x Ci x H x W); conv_out: its input's (norm_out's)
    out_elems: float = 0.0  # conv: output elements per call
    w_elems: float = 0.0    # conv: weight elements
    # The bf16 NHWC decoder (nhwc_decoder_ops): whether the op's input is a GroupNorm (+ swish) of the map
    # (a group_norm_nhwc pass of its own there; the NCHW convs normalise in their prologue), how many of
    # its calls per batch add a residual map (resnet conv2: the block input or the nin shortcut; attention's
    # proj: x), and a memory op's bytes per call in that layout.
    norm_in: bool = False
    residual_calls: float = 0.0
    nhwc_bytes: float = 0.0


def forward_ops(batch=320, vq_batch=32):
    """The forward's ops, the decoder's in the fp32 NCHW layout (nhwc_decoder_ops rewrites them for the bf16
    NHWC one). The decoder (taming's, ch_mult 1,1,2,2,4, 2 + 1 ResnetBlocks a level, attention at 14x14):
    conv_in; mid block_1, attn_1, block_2; per level from 14x14 up: 3 ResnetBlocks (attention after each at
    14x14), an upsampling conv but at 224; norm_out, conv_out. A ResnetBlock is conv1(GN1(x)), then
    conv2(GN2(h)) + x (or + nin_shortcut(x) where the channels change)."""
    ops = []
    lin = [("enc patch_embed", 49, 768, 1024, 1), ("enc qkv", 50, 1024, 3072, 24), ("enc proj", 50, 1024, 1024, 24),
           ("enc fc1", 50, 1024, 4096, 24), ("enc fc2", 50, 4096, 1024, 24), ("decoder_embed", 50, 1024, 512, 1),
           ("dec qkv", 99, 512, 1536, 8), ("dec proj", 99, 512, 512, 8), ("dec fc1", 99, 512, 2048, 8),
           ("dec fc2", 99, 2048, 512, 8), ("head", 98, 512, 1024, 1)]
    for name, rows, K, N, calls in lin:
        M = batch * rows
        # activations fp32 in and out, bf16 weights
        ops.append(Op("mae", f"{name} M{M} K{K} N{N}", "linear", calls, M, N, K,
                      bytes=4.0 * M * K + 2.0 * N * K + 4.0 * M * N))
    for name, N, H, dh, calls in [("enc attention N50", 50, 16, 64, 24), ("dec attention N99", 99, 16, 32, 8)]:
        ops.append(Op("mae", name, "memory", calls, bytes=4.0 * batch * N * 3 * H * dh + 4.0 * batch * N * H * dh))
    for name, rows, C, calls in [("enc layer_norm", 50, 1024, 49), ("dec layer_norm", 99, 512, 17)]:
        ops.append(Op("mae", name, "memory", calls, bytes=8.0 * batch * rows * C))
    passes = math.ceil(batch / vq_batch)
    # name, Ci, Co, H (input), k, upsampling, calls per pass, input normalised (GN), calls per pass with a
    # residual. The resnet rows pool conv1 and conv2 of same shape: @14 mid 2 + level 3 blocks = 5 conv1 + 5
    # conv2; @28 and @112 the first block's conv1 changes channels (its own row) and its conv2 (+ nin) joins
    # the two later blocks' (3 conv2, 2 conv1); @56 and @224 3 blocks (3 + 3).
    convs = [("conv_in 256>512 3x3 @14", 256, 512, 14, 3, False, 1, False, 0),
             ("resnet 512>512 3x3 @14", 512, 512, 14, 3, False, 10, True, 5),
             ("attn qkv 1x1 512>1536 @14", 512, 1536, 14, 1, False, 4, True, 0),
             ("attn proj 1x1 512>512 @14", 512, 512, 14, 1, False, 4, False, 4),
             ("upsample 512 3x3 @14>28", 512, 512, 14, 3, True, 1, False, 0),
             ("resnet 512>256 3x3 @28", 512, 256, 28, 3, False, 1, True, 0),
             ("nin 1x1 512>256 @28", 512, 256, 28, 1, False, 1, False, 0),
             ("resnet 256>256 3x3 @28", 256, 256, 28, 3, False, 5, True, 3),
             ("upsample 256 3x3 @28>56", 256, 256, 28, 3, True, 1, False, 0),
             ("resnet 256>256 3x3 @56", 256, 256, 56, 3, False, 6, True, 3),
             ("upsample 256 3x3 @56>112", 256, 256, 56, 3, True, 1, False, 0),
             ("resnet 256>128 3x3 @112", 256, 128, 112, 3, False, 1, True, 0),
             ("nin 1x1 256>128 @112", 256, 128, 112, 1, False, 1, False, 0),
             ("resnet 128>128 3x3 @112", 128, 128, 112, 3, False, 5, True, 3),
             ("upsample 128 3x3 @112>224", 128, 128, 112, 3, True, 1, False, 0),
             ("resnet 128>128 3x3 @224", 128, 128, 224, 3, False, 6, True, 3)]
    for name, ci, co, h, k, up, calls, norm_in, residual in convs:
        ho = 2 * h if up else h
        ops.append(Op("vqgan", name, "conv" if k == 3 else "conv1x1", calls * passes, ho * ho, co, ci * k * k, grids=vq_batch,
                      bytes=vq_batch * (4.0 * ci * h * h + 4.0 * co * ho * ho) + 2.0 * co * ci * k * k,
                      in_elems=vq_batch * ci * h * h, out_elems=vq_batch * co * ho * ho, w_elems=co * ci * k * k,
                      norm_in=norm_in, residual_calls=residual * passes))
    # The rest of the decoder, all memory-bound: spatial attention's softmax (14x14), conv_out (128 > 3 at
    # 224: its input read dominates), the pixel losses. NCHW: fp32 maps; NHWC: bf16 q/k/v and output, and
    # conv_out reads the bf16 map that norm_out's group_norm_nhwc pass wrote (fp32 pixels and loss as NCHW).
    attn = 3 * 512 * 196 + 196 * 196 * 2 + 512 * 196
    ops.append(Op("vqgan", "spatial attention @14", "memory", 4 * passes, bytes=vq_batch * 4.0 * attn,
                  nhwc_bytes=vq_batch * 2.0 * attn))
    ops.append(Op("vqgan", "conv_out 128>3 @224 + loss", "memory", passes, bytes=vq_batch * 4.0 * (128 * 224 * 224 + 2 * 3 * 224 * 224),
                  in_elems=vq_batch * 128 * 224 * 224, norm_in=True,
                  nhwc_bytes=vq_batch * (2.0 * 128 * 224 * 224 + 4.0 * 2 * 3 * 224 * 224)))
    return ops


def forward_gmac(ops, batch):
    macs = 0.0
    for o in ops:
        if o.kind == "linear":
            macs += o.calls * o.M * o.N * o.K
        elif o.kind in ("conv", "conv1x1"):
            macs += o.calls * o.grids * o.M * o.N * o.K
    return macs / batch / 1e9


# ---- compiler reports ---------------------------------------------------------------------------------------
def read_ptxas(path, arch="90"):
    """{demangled or mangled kernel name: dict(regs, smem, spill_st, spill_ld)} for sm_<arch>."""
    rows = {}
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError as e:
        sys.exit(f"perf_model: cannot read the ptxas report {path}: {e.strerror}")
    table = re.compile(r"^sm_(\w+)\s+(.+?)\s+(\d+) regs\s+(\d+) smem\s+(\d+) stack\s+(\d+) spill-st\s+(\d+) spill-ld")
    name = None
    for line in text.splitlines():
        m = table.match(line)
        if m:
            if m.group(1) == arch:
                rows[m.group(2)] = dict(regs=int(m.group(3)), smem=int(m.group(4)), spill_st=int(m.group(6)), spill_ld=int(m.group(7)))
            continue
        m = re.search(r"Compiling entry function '([^']+)' for 'sm_(\w+)'", line)
        if m:
            name = m.group(1) if m.group(2) == arch else None
            spills = (0, 0)
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and name:
            spills = (int(m.group(1)), int(m.group(2)))
            continue
        m = re.search(r"Used (\d+) registers(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?", line)
        if m and name:
            rows[name] = dict(regs=int(m.group(1)), smem=int(m.group(2) or 0), spill_st=spills[0], spill_ld=spills[1])
            name = None
    if not rows:
        sys.exit(f"perf_model: {path} holds no sm_{arch} kernel rows (expected ptxas -v output or ptxas-report.txt)")
    return rows


def ptxas_for(kernel, rows):
    if kernel.ptxas_name in rows:
        return rows[kernel.ptxas_name]
    # A raw ptxas log names kernels mangled: the instantiation's own entry substring first, then the symbol.
    hits = [v for k, v in rows.items() if kernel.function in k] or [v for k, v in rows.items() if kernel.symbol in k]
    if not hits:
        sys.exit(f"perf_model: kernel {kernel.name}: no row for '{kernel.ptxas_name}' in the ptxas report")
    return hits[0]


def occupancy(kernel, res):
    regs_per_warp = math.ceil(res["regs"] * 32 / 256) * 256
    warps = kernel.threads // 32
    by_regs = (H200["regs_per_sm"] // regs_per_warp) // warps
    smem = res["smem"] + kernel.dynamic_smem + H200["smem_per_block_reserved"]
    by_smem = H200["smem_per_sm"] // smem
    by_warps = H200["max_warps_per_sm"] // warps
    blocks = min(by_regs, by_smem, by_warps, H200["max_blocks_per_sm"])
    limiter = min((by_regs, "registers"), (by_smem, "shared memory"), (by_warps, "warps"))[1]
    return blocks, limiter


# Instruction classes, SASS opcodes and PTX mnemonics.
SASS_CLASSES = [("mma", r"^(HMMA|HGMMA)"), ("lds", r"^(LDS|LDSM)"), ("ldg", r"^LDG(?!STS)"), ("ldgsts", r"^LDGSTS"),
                ("sts", r"^STS"), ("bar", r"^BAR")]
PTX_CLASSES = [("mma", r"^(mma\.sync|wgmma\.mma_async)"), ("lds", r"^(ld\.shared|ldmatrix)"), ("ldg", r"^ld\.global"),
               ("ldgsts", r"^cp\.async\.(ca|cg)"), ("sts", r"^st\.shared"), ("bar", r"^bar\.")]
WIDTH = {"v4": 4, "v2": 2, "u32": 1, "b32": 1, "f32": 1, "s32": 1, "u16": 0.5, "b16": 0.5, "u64": 2, "b64": 2, "f64": 2,
         "128": 4, "64": 2, "32": 1, "U16": 0.5, "16": 0.5}


def access_bytes(op, text):
    """Bytes per thread of one load/store instruction (PTX or SASS)."""
    if op.startswith("ldmatrix") or op.startswith("LDSM"):
        m = re.search(r"\.x(\d)", op) or re.search(r"\.M88\.(\d)", op)
        return 4 * int(m.group(1)) if m else 4
    if op.startswith("cp.async"):
        m = re.search(r",\s*(\d+)\s*[;,]", text)
        return int(m.group(1)) if m else 16
    parts = op.split(".")
    words = 1.0
    for p in parts[1:]:
        if p in ("v4", "v2"):
            words *= WIDTH[p]
        elif p in ("128", "64", "32", "U16", "16", "u16", "b16", "u64", "b64", "f64"):
            words *= WIDTH[p]
    return 4 * words


def parse_loops(instrs):
    """instrs: list of (index, opcode, text, branch_target or None). Returns loops as (start, end) ranges."""
    loops = []
    for i, _, _, target in instrs:
        if target is not None and target <= i:
            loops.append((target, i))
    return loops


def main_loop_mix(instrs):
    loops = [(s, e) for s, e in parse_loops(instrs) if any(op_class(o) == "mma" for _, o, _, _ in instrs[s:e + 1])]
    if not loops:
        return None
    s, e = min(loops, key=lambda r: r[1] - r[0])  # the innermost loop with MMAs: the main loop
    mix = dict(total=0, mma=0, lds=0, lds_bytes=0.0, ldg=0, ldg_bytes=0.0, ldgsts=0, ldgsts_bytes=0.0, sts=0, sts_bytes=0.0,
               bar=0)
    for _, op, text, _ in instrs[s:e + 1]:
        mix["total"] += 1
        c = op_class(op)
        if c:
            mix[c] += 1
            if c in ("lds", "ldg", "ldgsts", "sts"):
                mix[c + "_bytes"] += access_bytes(op, text)
    return mix


_CLASSES = SASS_CLASSES + PTX_CLASSES


def op_class(op):
    for c, rx in _CLASSES:
        if re.match(rx, op):
            return c
    return None


def ptx_instructions(ptx, symbol):
    """The instructions of the first .entry whose name contains `symbol`, with loop branches resolved."""
    m = re.search(r"\.entry\s+(\S*" + re.escape(symbol) + r"\S*)\(", ptx)
    if not m:
        return None
    body = ptx[m.end():]
    body = body[body.index("{"):]
    depth, end = 0, 0
    for i, ch in enumerate(body):
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            end = i
            break
    labels, instrs = {}, []
    for raw in body[1:end].splitlines():
        line = raw.split("//")[0].strip()
        if not line or line.startswith(".") or line in ("{", "}"):
            continue
        lm = re.match(r"^(\$\w+):$", line)
        if lm:
            labels[lm.group(1)] = len(instrs)
            continue
        text = re.sub(r"^@!?%p\d+\s+", "", line)
        op = text.split()[0].rstrip(";")
        target = re.search(r"bra(?:\.uni)?\s+(\$\w+)", text)
        instrs.append([len(instrs), op, text, target.group(1) if target else None])
    for ins in instrs:
        if ins[3] is not None:
            ins[3] = labels.get(ins[3])
    return [tuple(i) for i in instrs]


def sass_instructions(sass, symbol, arch="90"):
    """From `cuobjdump -sass`: the instructions of the first function whose name contains `symbol`, in the
    sm_<arch> code when the dump says which code each function is in ("code for sm_90a")."""
    sections = re.split(r"code for sm_(\w+)", sass)
    if len(sections) > 1:
        sass = "".join(body for a, body in zip(sections[1::2], sections[2::2]) if a == arch)
    funcs = re.split(r"\n\s*Function : ", sass)
    for f in funcs[1:]:
        name = f.split("\n", 1)[0]
        if symbol not in name:
            continue
        instrs, at = [], {}
        for line in f.splitlines():
            m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)(.*?);", line)
            if not m:
                continue
            addr = int(m.group(1), 16)
            at[addr] = len(instrs)
            target = None
            if m.group(2).startswith("BRA"):
                t = re.search(r"0x([0-9a-f]+)", m.group(3))
                target = int(t.group(1), 16) if t else None
            instrs.append([len(instrs), m.group(2), m.group(2) + m.group(3), target])
        for ins in instrs:
            if ins[3] is not None:
                ins[3] = at.get(ins[3])
        return [tuple(i) for i in instrs]
    return None


def ptx_of(kernel, cache_dir):
    src = os.path.join(ROOT, kernel.source)
    out = os.path.join(cache_dir, f"{kernel.name}.sm_{kernel.arch}.ptx")
    # Remade when the source or any header of native/src/cuda is newer (the kernels' loops live in headers too).
    cuda_dir = os.path.join(ROOT, "native", "src", "cuda")
    newest = max([os.path.getmtime(src)] + [os.path.getmtime(os.path.join(cuda_dir, f)) for f in os.listdir(cuda_dir)
                                            if f.endswith((".cuh", ".h"))])
    if not os.path.exists(out) or os.path.getmtime(out) < newest:
        os.makedirs(cache_dir, exist_ok=True)
        nvcc = os.environ.get("NVCC") or next((p for p in ("nvcc", "/usr/local/cuda/bin/nvcc")
                                               if subprocess.run(["which", p], capture_output=True).returncode == 0
                                               or os.path.exists(p)), None)
        if not nvcc:
            sys.exit("perf_model: no nvcc to make PTX from (give --sass FILE from cuobjdump -sass instead)")
        # vtv/model_constants.h is generated by the CMake configure step (from src/model-constants.json):
        # use a configured build directory's copy.
        generated = [d for d in (os.path.join(ROOT, b, "generated") for b in ("build", "build-emu", "build-kit"))
                     if os.path.exists(os.path.join(d, "vtv", "model_constants.h"))]
        if not generated:
            sys.exit("perf_model: vtv/model_constants.h not found: configure a build first "
                     "(npx cmake-js configure --out build), which generates it from src/model-constants.json")
        cmd = [nvcc, "-std=c++17", "-O3", f"-arch=sm_{kernel.arch}", "--expt-relaxed-constexpr", "-I", os.path.join(ROOT, "native/include"),
               "-I", generated[0], "-I", os.path.join(ROOT, "native/src"), "-ptx", src, "-o", out]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"perf_model: nvcc -ptx {kernel.source} failed:\n{r.stderr[-2000:]}")
    return open(out).read()


# ---- the model ------------------------------------------------------------------------------------------------
def kernel_profile(kernel, ptxas_path, sass_text, cache_dir):
    res = ptxas_for(kernel, read_ptxas(ptxas_path, kernel.arch))
    blocks, limiter = occupancy(kernel, res)
    instrs, source = None, None
    if sass_text:
        instrs = sass_instructions(sass_text, kernel.function, kernel.arch)
        source = "SASS"
    if instrs is None:
        instrs = ptx_instructions(ptx_of(kernel, cache_dir), kernel.function)
        source = "PTX"
    if instrs is None:
        sys.exit(f"perf_model: kernel {kernel.name}: no function '{kernel.function}' in its {source}")
    mix = main_loop_mix(instrs)
    if mix is None:
        sys.exit(f"perf_model: kernel {kernel.name}: no loop with MMA instructions in its {source}")
    per_mma = {k: mix[k] / mix["mma"] for k in mix}
    # Clocks per MMA on one sub-partition (each issues one warp instruction a clock).
    flops = MMA_FLOPS.get(kernel.mma)
    if flops is None:
        sys.exit(f"perf_model: kernel {kernel.name}: unknown MMA instruction {kernel.mma}")
    dense_per_smsp_clk = H200["dense_bf16_flops"] / (H200["sms"] * H200["smsp_per_sm"] * PARAMS["clock_ghz"] * 1e9)
    peak_fraction = PARAMS["mma_sync_peak_fraction"] if kernel.mma.startswith("mma.sync") else PARAMS["wgmma_peak_fraction"]
    c_tensor = flops / dense_per_smsp_clk / peak_fraction
    c_issue = per_mma["total"]
    # Shared-memory traffic per MMA and warp: the loop's shared loads, its stores and cp.async copies landing
    # there (they take the same bandwidth), and what the MMA itself reads (wgmma's shared operands).
    smem_bytes = (per_mma["lds_bytes"] + per_mma["ldgsts_bytes"] + per_mma["sts_bytes"]) * 32 + MMA_SMEM_OPERAND_BYTES[kernel.mma]
    c_smem = smem_bytes / (H200["smem_bytes_per_clk_per_sm"] / H200["smsp_per_sm"])
    clocks = max(c_tensor, c_issue, c_smem)
    bound = {c_tensor: "tensor", c_issue: "issue", c_smem: "smem"}[clocks]
    rate = flops / dense_per_smsp_clk / clocks  # fraction of the dense rate the loop sustains
    warps_per_smsp = blocks * kernel.threads / 32 / H200["smsp_per_sm"]
    rate *= min(1.0, warps_per_smsp / PARAMS["warps_per_smsp_for_full_rate"])
    if kernel.pipeline == "registers":
        rate *= PARAMS["register_staged_loop_factor"]
    return dict(kernel=kernel, res=res, blocks=blocks, limiter=limiter, source=source, mix=mix, per_mma=per_mma,
                c_tensor=c_tensor, c_issue=c_issue, c_smem=c_smem, bound=bound, rate=rate)


def predict(op, prof):
    k = prof["kernel"]
    if op.kind == "linear":
        tiles = math.ceil(op.M / k.bm) * math.ceil(op.N / k.bn)
        flops = 2.0 * op.M * op.N * op.K
    else:  # conv: A = weights (Co rows), B = output pixels, per grid
        tiles = op.grids * math.ceil(op.N / k.bm) * math.ceil(op.M / k.bn)
        flops = 2.0 * op.grids * op.M * op.N * op.K
    concurrent = H200["sms"] * prof["blocks"]
    waves = math.ceil(tiles / concurrent)
    sm_rate = H200["dense_bf16_flops"] / H200["sms"] * prof["rate"]
    tile_flops = 2.0 * k.bm * k.bn * op.K
    t_compute = waves * tile_flops * prof["blocks"] / sm_rate
    t_memory = op.bytes / (H200["hbm_bytes_per_s"] * PARAMS["hbm_efficiency"])
    t = max(t_compute, t_memory) + PARAMS["launch_us"] * 1e-6
    return dict(tiles=tiles, waves=waves, wave_fill=tiles / (waves * concurrent), flops=flops, t=t,
                bound="compute" if t_compute >= t_memory else "memory")


def memory_op(op):
    return op.bytes / (H200["hbm_bytes_per_s"] * PARAMS["hbm_efficiency"]) + PARAMS["launch_us"] * 1e-6


LAYOUT_NCHW = ("fp32 NCHW maps, GroupNorm in each conv's prologue, 1x1 convs on conv_bf16_1x1")
LAYOUT_NHWC = ("bf16 NHWC maps end to end, GroupNorm as group_norm_nhwc passes, every conv (1x1 too) on the chosen "
               "conv kernel")


def nhwc_decoder_ops(op):
    """One op of the forward in the bf16 NHWC decoder (vqgan_kernels.h, "The bf16 NHWC decoder"): every map
    bf16 [N][H][W][C]. An op whose input is a GroupNorm (+ swish) of the map (each ResnetBlock conv, the
    attention's qkv, conv_out's norm_out) gets a group_norm_nhwc pass of its own first (bf16 read, bf16
    write: 4 B per element, one launch per call); the others (conv_in, upsampling, nin shortcut, attention
    proj) read their input as stored. A conv reads its bf16 input and weights, writes its bf16 output, and
    reads a bf16 residual in the calls that add one (those get a row of their own). The MAE's ops are as
    they were."""
    if op.group != "vqgan":
        return [op]
    rows = []
    if op.norm_in:
        rows.append(Op(op.group, f"{op.name.split(' + ')[0]}: group_norm_nhwc", "memory", op.calls, bytes=4.0 * op.in_elems))
    if op.kind == "memory":
        return rows + [dataclasses.replace(op, bytes=op.nhwc_bytes)]
    conv = 2.0 * op.in_elems + 2.0 * op.out_elems + 2.0 * op.w_elems
    plain = op.calls - op.residual_calls
    if plain > 0:
        name = f"{op.name} conv1" if op.name.startswith("resnet") else op.name
        rows.append(dataclasses.replace(op, name=name, calls=plain, bytes=conv, residual_calls=0.0))
    if op.residual_calls > 0:
        name = f"{op.name} conv2 + residual" if op.name.startswith("resnet") else f"{op.name} + residual"
        rows.append(dataclasses.replace(op, name=name, calls=op.residual_calls, bytes=conv + 2.0 * op.out_elems))
    return rows


def report(args, as_json=False):
    sass_text = None
    if args.sass:
        try:
            sass_text = open(args.sass, encoding="utf-8", errors="replace").read()
        except OSError as e:
            sys.exit(f"perf_model: cannot read the SASS dump {args.sass}: {e.strerror}")
    chosen = {"linear": args.linear, "conv": args.conv}
    for role, name in chosen.items():
        if name not in KERNELS:
            sys.exit(f"perf_model: --{role} {name}: no such kernel (known: {', '.join(sorted(KERNELS))})")
        if KERNELS[name].serves != role:
            sys.exit(f"perf_model: --{role} {name}: that kernel serves {KERNELS[name].serves} layers")
    # The decoder's layout follows the conv kernel: an NHWC one runs the bf16 NHWC decoder, where every conv,
    # 1x1 ones included (the same implicit GEMM, K = Ci, one tap), runs on it; the baseline runs the fp32
    # NCHW decoder, whose 1x1 convs run its 1x1 instantiation (conv2d_bf16 dispatches only 3x3 convs to variants).
    nhwc = KERNELS[chosen["conv"]].nhwc_input
    layout = LAYOUT_NHWC if nhwc else LAYOUT_NCHW
    chosen["conv1x1"] = chosen["conv"] if nhwc else "conv_bf16_1x1"
    profiles = {n: kernel_profile(KERNELS[n], args.ptxas, sass_text, args.cache) for n in sorted(set(chosen.values()))}
    ops = []
    for op in forward_ops(args.batch, args.vq_batch):
        ops += nhwc_decoder_ops(op) if nhwc else [op]
    out = []
    w = out.append
    w(f"Kernels (sm_90 unless named, {', '.join(sorted({p['source'] for p in profiles.values()}))} main loop; ptxas report {os.path.relpath(args.ptxas, ROOT)}):")
    w("")
    w("| kernel | regs | smem B | spills | blocks/SM (limit) | loop instrs / MMA | LDS B / MMA (warp) | global B / MMA (warp) | clocks / MMA: tensor, issue, smem | sustained |")
    # smem clocks: shared loads, stores and cp.async landings of the loop, plus wgmma's shared operands.
    w("|---|---|---|---|---|---|---|---|---|---|")
    for n, p in profiles.items():
        r, pm = p["res"], p["per_mma"]
        glob = (pm["ldg_bytes"] + pm["ldgsts_bytes"]) * 32
        label = n if p["kernel"].arch == "90" else f"{n} (sm_{p['kernel'].arch})"
        w(f"| {label} | {r['regs']} | {r['smem'] + p['kernel'].dynamic_smem} | {r['spill_st'] + r['spill_ld']} | {p['blocks']} ({p['limiter']}) | "
          f"{pm['total']:.2f} | {pm['lds_bytes'] * 32:.0f} | {glob:.0f} | {p['c_tensor']:.1f}, {p['c_issue']:.1f}, {p['c_smem']:.1f} ({p['bound']}) | "
          f"{100 * p['rate']:.0f}% of dense |")
    w("")
    w(f"Per call at batch {args.batch} (VQGAN: {args.vq_batch} grids per pass, every sample decoded; decoder layout: {layout}):")
    w("")
    w("| group | layer | kernel | calls | tiles | waves (fill) | bound | us / call | TFLOP/s | ms / batch |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    total = {"mae": 0.0, "vqgan": 0.0}
    tensor_ms = 0.0
    for op in ops:
        if op.kind == "memory":
            t = memory_op(op)
            total[op.group] += t * op.calls
            w(f"| {op.group} | {op.name} | (memory) | {op.calls:g} | - | - | memory | {t * 1e6:.1f} | - | {t * op.calls * 1e3:.2f} |")
            continue
        p = profiles[chosen[op.kind]]
        pr = predict(op, p)
        total[op.group] += pr["t"] * op.calls
        tensor_ms += pr["t"] * op.calls * 1e3
        w(f"| {op.group} | {op.name} | {p['kernel'].name} | {op.calls:g} | {pr['tiles']} | {pr['waves']} ({100 * pr['wave_fill']:.0f}%) | "
          f"{pr['bound']} | {pr['t'] * 1e6:.1f} | {pr['flops'] / pr['t'] / 1e12:.0f} | {pr['t'] * op.calls * 1e3:.2f} |")
    batch_s = total["mae"] + total["vqgan"]
    gmac = forward_gmac(ops, args.batch)
    fps = args.batch / batch_s
    if as_json:
        import json
        return json.dumps({
            "kernels": {n: {"regs": p["res"]["regs"], "blocks_per_sm": p["blocks"], "limiter": p["limiter"], "source": p["source"],
                            "mix": p["mix"], "clocks_per_mma": {"tensor": p["c_tensor"], "issue": p["c_issue"], "smem": p["c_smem"]},
                            "bound": p["bound"], "sustained_fraction": p["rate"]} for n, p in profiles.items()},
            "decoder_layout": "nhwc" if nhwc else "nchw",
            "ops": [{"group": op.group, "name": op.name, "kind": op.kind, "calls": op.calls, "bytes": op.bytes,
                     "kernel": None if op.kind == "memory" else chosen[op.kind]} for op in ops],
            "mae_ms": total["mae"] * 1e3, "vqgan_ms": total["vqgan"] * 1e3, "forwards_per_s": fps, "gmac_per_forward": gmac})
    w("")
    w(f"Predicted: MAE {total['mae'] * 1e3:.1f} ms + VQGAN decoder ({'bf16 NHWC' if nhwc else 'fp32 NCHW'}) {total['vqgan'] * 1e3:.1f} ms = {batch_s * 1e3:.1f} ms per batch of "
      f"{args.batch} (tensor-core kernels {tensor_ms:.1f} ms); **{fps:,.0f} forwards/s**, {fps * 2 * gmac / 1e3:.0f} TFLOP/s "
      f"({gmac:.1f} GMAC per forward in these shapes; 114.7 by docs/method.md).")
    w(f"Anchor (H200, batch {args.batch}, measured): bf16 torch.compile 1,333 forwards/s, eager 462/s: predicted "
      f"{fps / 1333:.2f}x torch.compile, {fps / 462:.2f}x eager.")
    w("")
    w("Assumptions: " + ", ".join(f"{k} {v}" for k, v in PARAMS.items()) + "; H200: 132 SMs, 989 dense bf16 TFLOP/s, 4.8 TB/s.")
    return "\n".join(out)


# The configurations --summary compares: the defaults, the cp.async/ldmatrix variants, the wgmma variants.
SUMMARY = [("gemm_bf16", "conv_bf16"), ("gemm_bf16_pipelined", "conv_bf16_nhwc"), ("gemm_bf16_wgmma", "conv_bf16_wgmma"),
           ("gemm_bf16_wgmma", "conv_bf16_wgmma_n256")]


def summary(args):
    import json
    out = [f"Predicted at batch {args.batch} (H200; anchor measured: bf16 torch.compile 1,333 forwards/s). Decoder layout: "
           "NCHW = fp32 NCHW maps (1x1 convs on conv_bf16_1x1); NHWC = bf16 NHWC maps end to end (group_norm_nhwc "
           "passes, every conv on --conv):", "",
           "| --linear | --conv | decoder layout | MAE ms | VQGAN ms | forwards/s | x torch.compile |", "|---|---|---|---|---|---|---|"]
    for linear, conv in SUMMARY:
        m = json.loads(report(argparse.Namespace(**{**vars(args), "linear": linear, "conv": conv}), as_json=True))
        out.append(f"| {linear} | {conv} | {'bf16 NHWC' if m['decoder_layout'] == 'nhwc' else 'fp32 NCHW'} | {m['mae_ms']:.1f} | "
                   f"{m['vqgan_ms']:.1f} | {m['forwards_per_s']:,.0f} | {m['forwards_per_s'] / 1333:.2f}x |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--linear", default="gemm_bf16", help="the kernel that runs the MAE's Linear layers")
    ap.add_argument("--conv", default="conv_bf16", help="the kernel that runs the VQGAN decoder's convolutions")
    ap.add_argument("--ptxas", default=os.path.join(ROOT, "tools/device/ptxas-report.txt"),
                    help="ptxas -v output or ptxas-report.txt (default: the checked-in table)")
    ap.add_argument("--sass", help="cuobjdump -sass output of the 90;90a build (else PTX made here with nvcc)")
    ap.add_argument("--batch", type=int, default=320)
    ap.add_argument("--vq-batch", type=int, default=32, help="VQGAN grids per pass (VqganCuda's max_chunk)")
    ap.add_argument("--cache", default=os.path.join(ROOT, "build", "perf-model"), help="where PTX made here is kept")
    ap.add_argument("--list", action="store_true", help="list the registered kernels and exit")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the Markdown tables")
    ap.add_argument("--summary", action="store_true",
                    help="one line per configuration (baseline, pipelined + nhwc, wgmma + each wgmma conv) instead of the tables")
    args = ap.parse_args()
    if args.list:
        for k in KERNELS.values():
            print(f"{k.name:<20} {k.serves:<7} {k.mma:<20} {k.bm}x{k.bn}x{k.bk}, {k.threads} threads, {k.source}: {k.note}")
        return
    print(summary(args) if args.summary else report(args, args.json))


if __name__ == "__main__":
    main()
