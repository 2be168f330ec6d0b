// The "wgmma" variants of the bf16 convolution (variants.h, conv_variants.h), in the conv3x3 family (fed by
// the nhwc variant's prologue pass from fp32 NCHW maps) and in the conv_nhwc family (fed the NHWC
// decoder's bf16 map as stored; 1x1 convs too, their one tap the centre; bf16 NHWC out): the nhwc
// variant's implicit GEMM (same tap-major weights, same 16-byte cp.async gathers with zero-fill for the
// padding and nearest x2 upsampling folded into the indexing) with the multiply on sm_90a's warpgroup
// MMA, and loads overlapping the MMAs. Unlike conv_bf16_nhwc.cu's kernel it keeps Ci % 32 == 0 (no k
// tail, one tap per k tile, a division per tile): fewer instructions in the loop that feeds the wgmmas,
// which the performance model finds issue-bound at 128 pixels.
//
// GEMM view per sample: C[co][pixel] = sum_k taps[co][k] B[k][pixel], k = (ky, kx, ci); Ci % 32 == 0,
// so a 32-wide k tile lies inside one tap and a pixel's row of B is 32 consecutive NHWC channels.
// Block tile 128 channels x BN pixels x 32 k, 256 threads = 2 warpgroups, warpgroup wg computing
// channels 64 wg .. + 63 of all BN pixels (wgmma m64nBNk16, BN / 2 fp32 accumulators per thread). Two
// instantiations are registered variants: BN = 128 ("wgmma", 2 blocks per SM) and BN = 256
// ("wgmma_n256", 1 block per SM), where each weight tile serves twice the pixels: about a fifth fewer
// shared-memory bytes per FLOP (the bound the performance model finds for BN = 128), at the price of
// coarser pixel tiles and one block per SM.
//
// Shared memory: both operands K-major in 8 x 16-byte core matrices without swizzle, as
// gemm_bf16_wgmma.cu: chunk (row r, k 8c .. 8c+7) at byte ((r / 8) * 4 + c) * 128 + (r % 8) * 16. The
// chunks of an operand tile are handed out so that chunk q (= tid + 256 i) sits at byte 16 q: row
// (q / 32) * 8 + q % 8, k chunk (q / 8) % 4. So 8 consecutive threads fill 128 contiguous bytes (no bank
// conflicts), and a warp still reads whole 64-byte pixel rows (4 chunks x 8 pixels).
//
// The pipeline (wgmma_k_loop.cuh, shared with gemm_bf16_wgmma.cu): a ring of STAGES = 6 k tiles (16 KiB
// each for BN = 128, 96 KiB in all; 24 and 144 KiB for BN = 256), the copies running 4 tiles ahead while
// `wgmma.wait_group 1` keeps the current tile's MMAs in flight.
//
// The epilogue is the nhwc variant's (conv_common.cuh): bias, residual, fp32 NCHW store, and the
// GroupNorm statistics of the output for the next conv.
//
// wgmma exists only in sm_90a code: this file is also compiled for sm_90a (CMakeLists.txt), elsewhere
// the kernel body traps, and the variant is available only when this file's probe (wgmma_probe.cuh)
// reports that the device runs its sm_90a code.
#include <cuda_bf16.h>

#include "cuda/check.cuh"
#include "cuda/conv_common.cuh"
#include "cuda/conv_variants.h"
#include "cuda/launch.cuh"
#include "cuda/ptx.cuh"
#include "cuda/wgmma_k_loop.cuh"
#include "cuda/wgmma_probe.cuh"

namespace vtv::cuda {

namespace {

constexpr int BM = 128, BK = 32, STAGES = 6, THREADS = 256;
constexpr int kTileABytes = BM * BK * 2;  // 8 KiB of weights per stage
static_assert(STAGES >= 3, "a stage is refilled two tiles after its MMAs were issued");

template <int BN>
constexpr int stage_bytes() {
  return kTileABytes + BN * BK * 2;  // weights (A) then pixels (B)
}
template <int BN>
constexpr size_t smem_bytes() {
  return size_t(stage_bytes<BN>()) * STAGES;  // 98,304 for BN = 128, 147,456 for 256
}

// xnhwc: the prologue's bf16 NHWC input [N][H][W][Ci]; taps [Co][9 Ci]. BN = 128: 2 blocks per SM
// (registers and shared memory both allow 2); BN = 256: 1.
template <int BN>
__global__ void __launch_bounds__(THREADS, BN == 128 ? 2 : 1)
conv_bf16_wgmma_kernel(ConvParams p, const __nv_bfloat16* __restrict__ xnhwc, const __nv_bfloat16* __restrict__ taps) {
  static_assert(BN == 128 || BN == 256, "BN is 128 or 256");
#if VTV_HAVE_WGMMA
  constexpr int PB = BN / 64;  // pixel chunks per thread and k tile
  VTV_DYNAMIC_SHARED(unsigned char, smem);  // STAGES x { A tile, B tile }
  __shared__ double row_sum[BM], row_sq[BM];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, w = warp & 3;  // warpgroup, warp within it
  const int g = lane >> 2, t = lane & 3;
  const int p0 = blockIdx.x * BN, c0 = blockIdx.y * BM;
  const int64_t n = blockIdx.z;
  const int Ci = p.Ci, K = p.K, KT = K / BK;
  const __nv_bfloat16* xn = xnhwc + n * int64_t(p.H) * p.W * Ci;
  if (p.stats_out) {
    for (int r = tid; r < BM; r += THREADS) row_sum[r] = row_sq[r] = 0.0;
  }

  // Chunk i of this thread, in either operand: tile row lrow + 64 i, k chunk lc, at byte 16 (tid + 256 i);
  // i < 2 for the 128 weight rows, i < PB for the BN pixel rows.
  const int lrow = (tid >> 5) * 8 + (tid & 7), lc = (tid >> 3) & 3;
  const __nv_bfloat16* a_src[2];
  bool a_ok[2], px_ok[PB];
  int oy[PB], ox[PB];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int co = c0 + lrow + 64 * i;
    a_ok[i] = co < p.Co;
    a_src[i] = taps + int64_t(a_ok[i] ? co : 0) * K + lc * 8;
  }
#pragma unroll
  for (int i = 0; i < PB; ++i) {
    const ConvPixel px = conv_pixel(p, p0 + lrow + 64 * i);
    px_ok[i] = px.valid;
    oy[i] = px.oy;
    ox[i] = px.ox;
  }
  // Ci % 32 == 0 (conv_wgmma_unsupported): a k tile lies inside one tap and K is whole tiles. The
  // tap of tile k0 is k0 / Ci for a 3x3 conv; a 1x1 conv (K == Ci) reads its one tap, the centre (4).
  const int tap0 = K == Ci ? 4 : 0;
  auto load_tile = [&](int kt, int stage) {
    unsigned char* As = smem + stage * stage_bytes<BN>();
    unsigned char* Bs = As + kTileABytes;
    const int k0 = kt * BK;
    const int tap = k0 / Ci + tap0, ci0 = k0 - (tap - tap0) * Ci;
    const int ky = tap / 3, kx = tap - ky * 3;
#pragma unroll
    for (int i = 0; i < 2; ++i) cp_async_16_zfill(As + 16 * (tid + THREADS * i), a_src[i] + k0, a_ok[i] ? 16 : 0);
#pragma unroll
    for (int i = 0; i < PB; ++i) {
      const int off = 16 * (tid + THREADS * i);
      const int iy = oy[i] + ky - 1, ix = ox[i] + kx - 1;
      const bool ok = px_ok[i] && iy >= 0 && iy < p.Ho && ix >= 0 && ix < p.Wo;
      const __nv_bfloat16* src =
          ok ? xn + (int64_t(iy >> p.up) * p.W + (ix >> p.up)) * Ci + ci0 + lc * 8 : xn;  // clamped when padding
      cp_async_16_zfill(Bs + off, src, ok ? 16 : 0);
    }
  };

  float acc[BN / 2];
#pragma unroll
  for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;

  wgmma_pipelined_k_loop<STAGES, BN, stage_bytes<BN>(), kTileABytes>(KT, smem, wg, acc, load_tile);

  // Thread (w, g, t): acc[4j + 0, 1] = C[16w + g][8j + 2t, +1], acc[4j + 2, 3] = C[16w + g + 8][...] of
  // this warpgroup's 64 x BN tile; rows are channels, columns pixels.
  const int P = p.Ho * p.Wo;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = wg * 64 + w * 16 + g + half * 8;
    const int co = c0 + r;
    double s = 0.0, q = 0.0;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int pix = p0 + j * 8 + 2 * t + c;
        if (co < p.Co && pix < P) {
          const float v = conv_store_any(p, n, co, pix, acc[4 * j + 2 * half + c]);
          s += v;
          q += double(v) * double(v);
        }
      }
    }
    // The four threads of a quad (same g) hold this row's BN pixels.
    if (p.stats_out) conv_row_stats_add<4>(s, q, t == 0, &row_sum[r], &row_sq[r]);
  }
  conv_block_end<BM>(p, n, c0, row_sum, row_sq);
#else
  __trap();  // not sm_90a code: never launched (conv_wgmma_unsupported)
#endif
}

WgmmaDevice g_devices[kMaxVariantDevices];

}  // namespace

void conv_wgmma_prepare() {
  wgmma_probe_once(g_devices, "conv wgmma", [] {
    VTV_CUDA_CHECK(cudaFuncSetAttribute(conv_bf16_wgmma_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem_bytes<128>())));
    VTV_CUDA_CHECK(cudaFuncSetAttribute(conv_bf16_wgmma_kernel<256>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem_bytes<256>())));
  });
}

std::string conv_wgmma_unsupported(const KernelShape& s) {
  const std::string why = wgmma_unavailable(g_devices);
  if (!why.empty()) return why;
  return conv_nhwc_unsupported(s);
}

bool conv_wgmma_can_run(const ConvArgs& a) { return wgmma_unavailable(g_devices).empty() && conv_nhwc_can_run(a); }

void conv_nhwc_launch_wgmma(const ConvParams& p, int64_t N, int block_pixels, const uint16_t* x, const uint16_t* taps,
                            cudaStream_t stream) {
  check(block_pixels == 128 || block_pixels == 256,
        "conv (wgmma): block_pixels must be 128 or 256, got " + std::to_string(block_pixels));
  check(wgmma_unavailable(g_devices).empty(), "conv (wgmma): " + wgmma_unavailable(g_devices));
  if (N == 0) return;
  dim3 grid(static_cast<unsigned>((int64_t(p.Ho) * p.Wo + block_pixels - 1) / block_pixels),
            static_cast<unsigned>((p.Co + BM - 1) / BM), static_cast<unsigned>(N));
  const auto* xb = reinterpret_cast<const __nv_bfloat16*>(x);
  const auto* tb = reinterpret_cast<const __nv_bfloat16*>(taps);
  if (block_pixels == 128) {
    VTV_LAUNCH("conv_bf16_wgmma_kernel<128>", grid, THREADS, smem_bytes<128>(), stream, conv_bf16_wgmma_kernel<128>,
               p, xb, tb);
  } else {
    VTV_LAUNCH("conv_bf16_wgmma_kernel<256>", grid, THREADS, smem_bytes<256>(), stream, conv_bf16_wgmma_kernel<256>,
               p, xb, tb);
  }
}

void conv2d_bf16_wgmma(const ConvArgs& a, int block_pixels, cudaStream_t stream) {
  check(wgmma_unavailable(g_devices).empty(), "conv2d_bf16 (wgmma): " + wgmma_unavailable(g_devices));
  const NhwcOperands o = conv_nhwc_operands(a, "conv2d_bf16 (wgmma)", stream);
  conv_nhwc_launch_wgmma(conv_params(a), a.N, block_pixels, o.x, o.taps, stream);
}

}  // namespace vtv::cuda
