// The "nhwc" variant of the bf16 3x3 convolution (variants.h, conv_variants.h), in three kernels, and the
// kernel of the bf16 NHWC decoder's "mma_sync" conv (conv_nhwc.cu), which is the third one alone:
//
//  1. nhwc_prologue_kernel (the fp32 NCHW decoder only): the input x [N][Ci][H][W] fp32 -> GroupNorm +
//     SiLU applied ONCE per element (fp32 statistics and arithmetic, as group_norm.cuh) -> bf16 NHWC
//     [N][H][W][Ci] in the caller's workspace. A 32 channel x 32 pixel tile goes through shared memory so
//     that both the fp32 reads and the bf16 writes are contiguous (so this path needs Ci % 32 == 0). The
//     NHWC decoder has no such pass: its maps are already bf16 NHWC, normalised by group_norm_nhwc.
//  2. taps_kernel (only when the caller has no tap-major weights): W [Co][Ci][3][3] -> [Co][3][3][Ci].
//  3. conv_bf16_nhwc_kernel: the implicit GEMM C[co][pixel] = sum_k W[co][k] B[k][pixel] with k = (ky,
//     kx, ci) (a 1x1 conv: k = ci, its one tap the centre). Each thread's 8-wide k chunk of B is 8
//     consecutive channels of one NHWC input pixel, a 16-byte cp.async (zero-filled in the padding, past
//     the map and past K); Ci % 8 == 0, so a chunk lies inside one tap, and a tap cursor (NhwcTapCursor)
//     follows it from k tile to k tile, crossing taps inside a tile when Ci < 32. Nearest x2 upsampling
//     is folded into the indexing (iy >> up, ix >> up), as in the baseline. Block 128 channels x 128
//     pixels x 32 k, 4 warps as 2 x 2 of 64 x 64, a 3-stage cp.async pipeline, ldmatrix.x4 fragments from
//     rows padded to 40 bf16: the main loop of gemm_bf16_pipelined.cu with the B gather above. The
//     epilogue (conv_store_any) is the baseline's (bias, residual, fp32 NCHW store) or, for the NHWC
//     decoder, bf16 NHWC with a bf16 residual; both sum the GroupNorm statistics of what they store.
#include <cuda_bf16.h>

#include <mutex>

#include "cuda/check.cuh"
#include "cuda/conv_common.cuh"
#include "cuda/conv_variants.h"
#include "cuda/launch.cuh"
#include "cuda/mma_bf16.cuh"
#include "cuda/ptx.cuh"

namespace vtv::cuda {

namespace {

constexpr int BM = 128, BN = 128, BK = 32, STAGES = 3, THREADS = 128, MIN_BLOCKS = 2, LDS = BK + 8;
constexpr int kStageElems = (BM + BN) * LDS;
constexpr size_t kSmemBytes = sizeof(__nv_bfloat16) * kStageElems * STAGES;  // 61440

constexpr int kTile = 32;  // prologue tile: 32 channels x 32 pixels, 32 x 8 threads

__global__ void __launch_bounds__(kTile * 8)
nhwc_prologue_kernel(const float* __restrict__ x, int Ci, int HW, GroupNormIn norm, __nv_bfloat16* __restrict__ out) {
  __shared__ float tile[kTile][kTile + 1];  // [channel][pixel]
  __shared__ float sc[kTile], sh[kTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int p0 = blockIdx.x * kTile, c0 = blockIdx.y * kTile;
  const int64_t n = blockIdx.z;
  if (ty == 0) {
    if (norm.stats) group_norm_coeffs(norm, n, Ci, HW, c0 + tx, sc[tx], sh[tx]);
  }
  __syncthreads();
  for (int c = ty; c < kTile; c += 8) {
    const int p = p0 + tx;
    float v = 0.0f;
    if (p < HW) {
      v = __ldg(x + (n * Ci + c0 + c) * int64_t(HW) + p);
      if (norm.stats) v = group_norm_value(v, sc[c], sh[c], norm.swish);
    }
    tile[c][tx] = v;
  }
  __syncthreads();
  for (int pp = ty; pp < kTile; pp += 8) {
    const int p = p0 + pp;
    if (p < HW) out[(n * HW + p) * Ci + c0 + tx] = __float2bfloat16_rn(tile[tx][pp]);
  }
}

__global__ void taps_kernel(const __nv_bfloat16* __restrict__ w, int Co, int Ci, __nv_bfloat16* __restrict__ taps) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // index into taps [Co][9][Ci]
  if (i >= int64_t(Co) * 9 * Ci) return;
  const int ci = int(i % Ci);
  const int tap = int((i / Ci) % 9);
  const int64_t co = i / (int64_t(9) * Ci);
  taps[i] = w[(co * Ci + ci) * 9 + tap];
}

// B: xn (bf16 NHWC of sample n, stored H x W); A: taps [Co][9 Ci].
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
conv_bf16_nhwc_kernel(ConvParams p, const __nv_bfloat16* __restrict__ xnhwc, const __nv_bfloat16* __restrict__ taps) {
  VTV_DYNAMIC_SHARED(__nv_bfloat16, smem);  // STAGES x { A [BM][LDS] (channels), B [BN][LDS] (pixels) }
  __shared__ double row_sum[BM], row_sq[BM];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;
  const int g = lane >> 2, t = lane & 3;
  const int p0 = blockIdx.x * BN, c0 = blockIdx.y * BM;
  const int64_t n = blockIdx.z;
  const int Ci = p.Ci, K = p.K, KT = (K + BK - 1) / BK;
  const __nv_bfloat16* xn = xnhwc + n * int64_t(p.H) * p.W * Ci;
  if (p.stats_out) {
    for (int r = tid; r < BM; r += THREADS) row_sum[r] = row_sq[r] = 0.0;
  }

  // Chunk i < 4 of this thread: A row (channel) / B row (pixel) lrow + 32 i, k 8 * (tid % 4) .. + 7.
  const int lrow = tid >> 2, lk = (tid & 3) * 8;
  const __nv_bfloat16* a_src[4];
  bool a_ok[4], px_ok[4];
  int oy[4], ox[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int co = c0 + lrow + 32 * i;
    a_ok[i] = co < p.Co;
    a_src[i] = taps + int64_t(a_ok[i] ? co : 0) * K + lk;
    const ConvPixel px = conv_pixel(p, p0 + lrow + 32 * i);
    px_ok[i] = px.valid;
    oy[i] = px.oy;
    ox[i] = px.ox;
  }
  // B's tap and channel for this thread's chunk; load_tile is called for k tiles 0, 1, 2, ... in order.
  NhwcTapCursor tp;
  tp.start(p, lk);
  auto load_tile = [&](int kt, int stage) {
    __nv_bfloat16* As = smem + stage * kStageElems;
    __nv_bfloat16* Bs = As + BM * LDS;
    const int k0 = kt * BK;
    const bool k_ok = k0 + lk < K;  // past K (its last tile): zeros in both operands
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = lrow + 32 * i;
      cp_async_16_zfill(As + r * LDS + lk, a_src[i] + (k_ok ? k0 : 0), a_ok[i] && k_ok ? 16 : 0);
      const int iy = oy[i] + tp.dy, ix = ox[i] + tp.dx;
      const bool ok = k_ok && px_ok[i] && iy >= 0 && iy < p.Ho && ix >= 0 && ix < p.Wo;
      const __nv_bfloat16* src =
          ok ? xn + (int64_t(iy >> p.up) * p.W + (ix >> p.up)) * Ci + tp.ci : xn;  // clamped when padding
      cp_async_16_zfill(Bs + r * LDS + lk, src, ok ? 16 : 0);
    }
    tp.advance(p, BK);
  };

  float acc[4][8][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < KT) load_tile(s, s);
    cp_async_commit();
  }
  // ldmatrix addressing as gemm_bf16_pipelined.cu (A = weights [channel][k], B = pixels [pixel][k]).
  const int a_row = wm * 64 + (lane & 15), a_k = (lane >> 4) * 8;
  const int b_row = wn * 64 + (lane & 7) + ((lane >> 4) << 3), b_k = ((lane >> 3) & 1) * 8;
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    const int next = kt + STAGES - 1;
    if (next < KT) load_tile(next, next % STAGES);
    cp_async_commit();
    const __nv_bfloat16* As = smem + (kt % STAGES) * kStageElems;
    const __nv_bfloat16* Bs = As + BM * LDS;
#pragma unroll
    for (int ks = 0; ks < BK; ks += 16) {
      uint32_t af[4][4], bfr[8][2];
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) ldmatrix_x4(af[mt], As + (a_row + mt * 16) * LDS + ks + a_k);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t r[4];
        ldmatrix_x4(r, Bs + (b_row + j * 16) * LDS + ks + b_k);
        bfr[2 * j][0] = r[0];
        bfr[2 * j][1] = r[1];
        bfr[2 * j + 1][0] = r[2];
        bfr[2 * j + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt)
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) mma_bf16_16816(acc[mt][nt], af[mt], bfr[nt]);
    }
  }
  cp_async_wait<0>();

  // Rows are channels, columns pixels; C fragment as in the baseline.
  const int P = p.Ho * p.Wo;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = wm * 64 + mt * 16 + g + half * 8;
      const int co = c0 + r;
      double s = 0.0, q = 0.0;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int pix = p0 + wn * 64 + nt * 8 + 2 * t + c;
          if (co < p.Co && pix < P) {
            const float v = conv_store_any(p, n, co, pix, acc[mt][nt][half * 2 + c]);
            s += v;
            q += double(v) * double(v);
          }
        }
      }
      if (p.stats_out) conv_row_stats_add<4>(s, q, t == 0, &row_sum[r], &row_sq[r]);
    }
  }
  conv_block_end<BM>(p, n, c0, row_sum, row_sq);
}

size_t round16(size_t b) { return (b + 15) / 16 * 16; }
size_t nhwc_bytes(const ConvArgs& a) { return round16(sizeof(uint16_t) * size_t(a.N) * a.H * a.W * a.Ci); }
size_t taps_bytes(const ConvArgs& a) { return round16(sizeof(uint16_t) * size_t(a.Co) * 9 * a.Ci); }

}  // namespace

// The main kernel's 60 KiB of dynamic shared memory is allowed once per device, outside any graph
// capture (prepare_kernel_variants, from VqganCuda's constructor; a first launch elsewhere prepares too).
void conv_nhwc_prepare() {
  static std::once_flag once[kMaxVariantDevices];
  int device = 0;
  VTV_CUDA_CHECK(cudaGetDevice(&device));
  check(device >= 0 && device < kMaxVariantDevices, "conv nhwc: device " + std::to_string(device) + " out of range");
  std::call_once(once[device], [] {
    VTV_CUDA_CHECK(cudaFuncSetAttribute(conv_bf16_nhwc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(kSmemBytes)));
  });
}

std::string conv_nhwc_unsupported(const KernelShape& s) {
  if (s.d[1] % 32 != 0) return "Ci must be a multiple of 32 (a k tile inside one tap)";
  return "";
}

bool conv_nhwc_can_run(const ConvArgs& a) {
  return a.w_bf16 && a.k == 3 && !a.downsample2x && a.Ci % 32 == 0 && a.workspace &&
         a.workspace_bytes >= conv2d_workspace_bytes(a);
}

size_t conv2d_workspace_bytes(const ConvArgs& a) {
  if (!a.w_bf16 || a.k != 3 || a.downsample2x) return 0;
  return nhwc_bytes(a) + (a.w_bf16_taps ? 0 : taps_bytes(a));
}

void conv_weights_to_taps(const uint16_t* w, int Co, int Ci, uint16_t* taps, cudaStream_t stream) {
  check(w && taps && Co > 0 && Ci > 0, "conv_weights_to_taps: weights and output must be set, Co and Ci positive");
  const int64_t count = int64_t(Co) * 9 * Ci;
  VTV_LAUNCH("taps_kernel", static_cast<unsigned>((count + 255) / 256), 256, 0, stream, taps_kernel,
             reinterpret_cast<const __nv_bfloat16*>(w), Co, Ci, reinterpret_cast<__nv_bfloat16*>(taps));
}

NhwcOperands conv_nhwc_operands(const ConvArgs& a, const char* name, cudaStream_t stream) {
  const std::string n(name);
  validate_conv(a, name);
  check(a.w_bf16 != nullptr && a.k == 3 && !a.downsample2x, n + ": a bf16 3x3 conv without downsampling only");
  check(a.Ci % 32 == 0, n + ": Ci must be a multiple of 32, got " + std::to_string(a.Ci));
  check(a.workspace && a.workspace_bytes >= conv2d_workspace_bytes(a),
        n + ": needs a workspace of " + std::to_string(conv2d_workspace_bytes(a)) + " bytes, got " +
            std::to_string(a.workspace_bytes));
  check(reinterpret_cast<uintptr_t>(a.workspace) % 16 == 0 && reinterpret_cast<uintptr_t>(a.w_bf16_taps) % 16 == 0,
        n + ": workspace and w_bf16_taps must be 16-byte aligned");
  check(a.N <= 65535, n + ": at most 65535 samples per launch, got " + std::to_string(a.N));
  if (a.stats_out) {
    VTV_CUDA_CHECK(cudaMemsetAsync(a.stats_out, 0, sizeof(double) * 2 * size_t(a.N) * a.stats_groups, stream));
  }
  NhwcOperands o;
  o.x = static_cast<const uint16_t*>(a.workspace);
  o.taps = a.w_bf16_taps;
  if (a.N == 0) return o;
  if (!o.taps) {
    auto* t = reinterpret_cast<uint16_t*>(static_cast<char*>(a.workspace) + nhwc_bytes(a));
    conv_weights_to_taps(a.w_bf16, a.Co, a.Ci, t, stream);
    o.taps = t;
  }
  const int HW = a.H * a.W;
  dim3 pgrid(static_cast<unsigned>((HW + kTile - 1) / kTile), static_cast<unsigned>(a.Ci / kTile),
             static_cast<unsigned>(a.N));
  VTV_LAUNCH("nhwc_prologue_kernel", pgrid, dim3(kTile, 8), 0, stream, nhwc_prologue_kernel, a.x, a.Ci, HW, a.norm,
             static_cast<__nv_bfloat16*>(a.workspace));
  return o;
}

void conv_nhwc_launch_mma_sync(const ConvParams& p, int64_t N, const uint16_t* x, const uint16_t* taps,
                               cudaStream_t stream) {
  if (N == 0) return;
  conv_nhwc_prepare();
  dim3 grid(static_cast<unsigned>((int64_t(p.Ho) * p.Wo + BN - 1) / BN), static_cast<unsigned>((p.Co + BM - 1) / BM),
            static_cast<unsigned>(N));
  VTV_LAUNCH("conv_bf16_nhwc_kernel", grid, THREADS, kSmemBytes, stream, conv_bf16_nhwc_kernel, p,
             reinterpret_cast<const __nv_bfloat16*>(x), reinterpret_cast<const __nv_bfloat16*>(taps));
}

void conv2d_bf16_nhwc(const ConvArgs& a, cudaStream_t stream) {
  const NhwcOperands o = conv_nhwc_operands(a, "conv2d_bf16 (nhwc)", stream);
  conv_nhwc_launch_mma_sync(conv_params(a), a.N, o.x, o.taps, stream);
}

}  // namespace vtv::cuda
