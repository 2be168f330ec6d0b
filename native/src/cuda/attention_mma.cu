// The "mma_sync" variant of the MAE's multi-head attention (variants.h, attention_variants.h): the
// baseline's computation (attention.cu) on bf16 tensor cores, for N <= 256 tokens and head dims 16, 32
// and 64, with the task-vector patch applied in place exactly as there (docs/method.md#patching).
//
// One block per (sample, head), 4 warps. K and V of all N tokens are converted to bf16 as they are staged
// into shared memory ([key][dim], rows padded to DH + 8 bf16 so that ldmatrix's eight 16-byte rows hit
// distinct banks; keys past N, up to the next multiple of 16, are zero). Each warp then takes 16-query
// tiles mt = warp, warp + 4, ...:
//   1. Q's A fragments straight from global memory (fp32, rounded to bf16 in registers; rows past N are 0);
//   2. S = Q K^T by mma.sync m16n8k16, K's B fragments by ldmatrix.x4 (K rows are the "col" layout), into
//      fp32 accumulators holding the tile's whole score rows (KEYS / 8 n-tiles: every key of the
//      sequence, so no online rescaling);
//   3. the softmax in fp32 in the baseline's form: the row max over the valid keys (a quad shuffle: the
//      four lanes of a row), e = exp(s * scale - max * scale), the row sum of e; not yet normalised;
//   4. O = P V: the S accumulators of two adjacent key n-tiles are the A fragment of one k16 step (the
//      C and A fragment layouts coincide), rounded to bf16; V's B fragments by ldmatrix.x4.trans;
//   5. O / sum stored in fp32, or, for a patched row, its task mean.
// Why a block per (sample, head) and not per query tile: K and V are staged once per head (a query-tile
// grid would convert them once per tile), and B x H blocks of the model's batches already fill the GPU.
// Why the whole row in registers: N <= 256 keys is at most 128 accumulators per thread; the kernel is
// compiled per key bucket (KEYS = 64, 128, 256: N = 50, 99, 148 / 197) so that the arrays stay in
// registers with compile-time indices and short sequences do not pay for 256 keys. __launch_bounds__
// pins 4 blocks per SM (128 registers) up to 128 keys and 2 (255 registers) for 256.
//
// Patching: a patched (sample, head, position) writes means[p'][h][:] (p' = p + position_shift for p >= 1,
// 0 for p = 0), a tile whose 16 rows are all patched skips its products, and a head whose every position is
// patched never loads K and V (a block-wide vote, as the baseline).
//
// Precision: Q, K, V and P are rounded to bf16 (8 significant bits), the products accumulate in fp32; the
// error is bounded in native/tests/cuda_attention_variants_test.cc.
#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>

#include "cuda/attention_variants.h"
#include "cuda/check.cuh"
#include "cuda/head_patch.cuh"
#include "cuda/launch.cuh"
#include "cuda/mma_bf16.cuh"
#include "cuda/ptx.cuh"

namespace vtv::cuda {

namespace {

constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kMaxTokens = 256;

constexpr int padded_tokens(int N) { return (N + 15) & ~15; }
template <int DH>
constexpr size_t mma_smem_bytes(int N) {
  return sizeof(__nv_bfloat16) * 2 * size_t(padded_tokens(N)) * (DH + 8);
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xFFFFFFFFu, v, 1);
  return v + __shfl_xor_sync(0xFFFFFFFFu, v, 2);
}
__device__ __forceinline__ int warp_or(int v) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) v |= __shfl_xor_sync(0xFFFFFFFFu, v, off);
  return v;
}

template <int DH, int KEYS>
__global__ void __launch_bounds__(kThreads, KEYS <= 128 ? 4 : 2)
mha_mma_kernel(const float* __restrict__ qkv, int N, int H, float scale, float* __restrict__ out, HeadPatch patch) {
  static_assert(DH % 16 == 0 && DH <= 64, "head dim: a multiple of 16 (k16 steps), at most 64");
  static_assert(KEYS % 16 == 0 && KEYS <= kMaxTokens, "KEYS: a multiple of 16, at most 256");
  constexpr int LD = DH + 8;     // bf16 per shared row: 16-byte aligned rows, conflict-free ldmatrix
  constexpr int KD = DH / 16;    // k16 steps of Q K^T
  constexpr int NT = KEYS / 8;   // n-tiles of S (8 keys each)
  constexpr int OT = DH / 8;     // n-tiles of O (8 dims each)
  constexpr int CH = DH / 8;     // 8-element chunks of a row
  VTV_DYNAMIC_SHARED(__nv_bfloat16, smem);
  const int Np = padded_tokens(N);
  __nv_bfloat16* Ks = smem;           // [Np][LD]
  __nv_bfloat16* Vs = Ks + Np * LD;   // [Np][LD]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;  // the fragment coordinates
  const int64_t b = blockIdx.x / H;
  const int h = static_cast<int>(blockIdx.x % H);
  const int C = H * DH;
  const int64_t row = 3 * int64_t(C);
  const float* base = qkv + b * N * row;
  const HeadPatchView hp = head_patch_view(patch, b, H, h, N);
  if (head_computes(hp, N, kThreads)) {
    // 8 consecutive dims of one key per step: two float4 loads each of K and V, one 16-byte store each.
    for (int c = tid; c < Np * CH; c += kThreads) {
      const int j = c / CH, d = (c % CH) * 8;
      uint4 k8 = make_uint4(0u, 0u, 0u, 0u), v8 = k8;
      if (j < N) {
        const float* src = base + j * row + h * DH + d;
        const float4 k0 = *reinterpret_cast<const float4*>(src + C);
        const float4 k1 = *reinterpret_cast<const float4*>(src + C + 4);
        const float4 v0 = *reinterpret_cast<const float4*>(src + 2 * C);
        const float4 v1 = *reinterpret_cast<const float4*>(src + 2 * C + 4);
        k8 = make_uint4(pack_bf16x2(k0.x, k0.y), pack_bf16x2(k0.z, k0.w), pack_bf16x2(k1.x, k1.y),
                        pack_bf16x2(k1.z, k1.w));
        v8 = make_uint4(pack_bf16x2(v0.x, v0.y), pack_bf16x2(v0.z, v0.w), pack_bf16x2(v1.x, v1.y),
                        pack_bf16x2(v1.z, v1.w));
      }
      *reinterpret_cast<uint4*>(Ks + j * LD + d) = k8;
      *reinterpret_cast<uint4*>(Vs + j * LD + d) = v8;
    }
  }
  __syncthreads();

  for (int mt = warp; mt * 16 < N; mt += kWarps) {
    const int r0 = mt * 16 + g, r1 = r0 + 8;  // this thread's two rows of the tile
    const bool in0 = r0 < N, in1 = r1 < N;
    const bool pat0 = in0 && hp.patched(r0), pat1 = in1 && hp.patched(r1);
    float o[OT][4];
#pragma unroll
    for (int i = 0; i < OT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float inv0 = 0.0f, inv1 = 0.0f;
    if (warp_or((in0 && !pat0) || (in1 && !pat1))) {  // a uniform branch: the whole warp votes
      // 1. Q's A fragments: a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..).
      uint32_t qa[KD][4];
      const float* q0 = base + int64_t(r0) * row + h * DH;
      const float* q1 = base + int64_t(r1) * row + h * DH;
#pragma unroll
      for (int ks = 0; ks < KD; ++ks) {
        const int c = 16 * ks + 2 * t;
        qa[ks][0] = in0 ? pack_bf16x2(q0[c], q0[c + 1]) : 0u;
        qa[ks][1] = in1 ? pack_bf16x2(q1[c], q1[c + 1]) : 0u;
        qa[ks][2] = in0 ? pack_bf16x2(q0[c + 8], q0[c + 9]) : 0u;
        qa[ks][3] = in1 ? pack_bf16x2(q1[c + 8], q1[c + 9]) : 0u;
      }
      // 2. S = Q K^T over the Np keys, 16 at a time. ldmatrix.x4 rows: lanes 0-7 keys n0.. dims k0..,
      // 8-15 keys n0.. dims k0+8.., 16-23 keys n0+8.. dims k0.., 24-31 keys n0+8.. dims k0+8..
      float s[NT][4];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      const __nv_bfloat16* krow = Ks + ((lane & 7) + ((lane >> 4) << 3)) * LD + ((lane >> 3) & 1) * 8;
#pragma unroll
      for (int n2 = 0; n2 < NT / 2; ++n2) {
        if (16 * n2 < Np) {
#pragma unroll
          for (int ks = 0; ks < KD; ++ks) {
            uint32_t kb[4];
            ldmatrix_x4(kb, krow + 16 * n2 * LD + 16 * ks);
            const uint32_t b0[2] = {kb[0], kb[1]}, b1[2] = {kb[2], kb[3]};
            mma_bf16_16816(s[2 * n2], qa[ks], b0);
            mma_bf16_16816(s[2 * n2 + 1], qa[ks], b1);
          }
        }
      }
      // 3. The softmax of rows r0 (s[.][0, 1]) and r1 (s[.][2, 3]) over keys < N, as the baseline:
      // exp(s * scale - max * scale), normalised after the weighted sum.
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        if (8 * nt < Np) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            if (8 * nt + 2 * t + (e & 1) >= N) s[nt][e] = -INFINITY;
          }
          mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
          mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
      }
      const float shift0 = quad_max(mx0) * scale, shift1 = quad_max(mx1) * scale;
      float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        if (8 * nt < Np) {
          s[nt][0] = expf(s[nt][0] * scale - shift0);  // exp(-inf) = 0 past N
          s[nt][1] = expf(s[nt][1] * scale - shift0);
          s[nt][2] = expf(s[nt][2] * scale - shift1);
          s[nt][3] = expf(s[nt][3] * scale - shift1);
          sum0 += s[nt][0] + s[nt][1];
          sum1 += s[nt][2] + s[nt][3];
        }
      }
      inv0 = 1.0f / quad_sum(sum0);
      inv1 = 1.0f / quad_sum(sum1);
      // 4. O = P V. ldmatrix.x4.trans rows: lanes 0-7 keys k0.. dims n0.., 8-15 keys k0+8.. dims n0..,
      // 16-23 keys k0.. dims n0+8.., 24-31 keys k0+8.. dims n0+8..
      const __nv_bfloat16* vrow = Vs + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
      for (int kk = 0; kk < NT / 2; ++kk) {
        if (16 * kk < Np) {
          const uint32_t pa[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]), pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                                  pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
          for (int o2 = 0; o2 < OT / 2; ++o2) {
            uint32_t vb[4];
            ldmatrix_x4_trans(vb, vrow + 16 * kk * LD + 16 * o2);
            const uint32_t b0[2] = {vb[0], vb[1]}, b1[2] = {vb[2], vb[3]};
            mma_bf16_16816(o[2 * o2], pa, b0);
            mma_bf16_16816(o[2 * o2 + 1], pa, b1);
          }
        }
      }
    }
    // 5. Rows r0 (o[.][0, 1]) and r1 (o[.][2, 3]): dims 8 * ot + 2t, +1.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = half ? r1 : r0;
      if (r >= N) continue;
      float* dst = out + (b * N + r) * int64_t(C) + h * DH + 2 * t;
      if (half ? pat1 : pat0) {
        const float* m = hp.mean(r, DH) + 2 * t;
#pragma unroll
        for (int ot = 0; ot < OT; ++ot) {
          dst[8 * ot] = m[8 * ot];
          dst[8 * ot + 1] = m[8 * ot + 1];
        }
      } else {
        const float inv = half ? inv1 : inv0;
#pragma unroll
        for (int ot = 0; ot < OT; ++ot) {
          dst[8 * ot] = o[ot][2 * half] * inv;
          dst[8 * ot + 1] = o[ot][2 * half + 1] * inv;
        }
      }
    }
  }
}

// The device's opt-in shared memory and sm_80+, asked once per device (choose_variant asks on every
// call, also inside graph captures), and the kernels allowed what kMaxTokens tokens need.
struct MmaDevice {
  std::once_flag once;
  int optin = 0;
  bool sm80 = false;
};
MmaDevice g_devices[kMaxVariantDevices];

template <int DH, int KEYS>
void allow_smem(int optin) {
  const size_t bytes = std::min(mma_smem_bytes<DH>(KEYS), size_t(optin));
  if (bytes > 48 * 1024) {
    VTV_CUDA_CHECK(
        cudaFuncSetAttribute(mha_mma_kernel<DH, KEYS>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  }
}

template <int DH>
void allow_smem_all(int optin) {
  allow_smem<DH, 64>(optin);
  allow_smem<DH, 128>(optin);
  allow_smem<DH, 256>(optin);
}

const MmaDevice* mma_device() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxVariantDevices) return nullptr;
  MmaDevice& d = g_devices[device];
  std::call_once(d.once, [&d, device] {
    int major = 0;
    VTV_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    VTV_CUDA_CHECK(cudaDeviceGetAttribute(&d.optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    d.sm80 = major >= 8;
    if (d.sm80) {
      allow_smem_all<16>(d.optin);
      allow_smem_all<32>(d.optin);
      allow_smem_all<64>(d.optin);
    }
  });
  return &d;
}

template <int DH, int KEYS>
void launch(const float* qkv, int64_t B, int N, int H, float scale, float* out, const HeadPatch& patch,
            cudaStream_t stream) {
  const size_t bytes = mma_smem_bytes<DH>(N);
  const int optin = mma_device()->optin;
  check(bytes <= size_t(optin), "mha_attention (mma_sync): N = " + std::to_string(N) + ", head dim " +
                                    std::to_string(DH) + " needs " + std::to_string(bytes) +
                                    " bytes of shared memory; this device allows " + std::to_string(optin));
  VTV_LAUNCH("mha_mma_kernel", static_cast<unsigned>(B * H), kThreads, bytes, stream, mha_mma_kernel<DH, KEYS>, qkv,
             N, H, scale, out, patch);
}

template <int DH>
void launch_dh(const float* qkv, int64_t B, int N, int H, float scale, float* out, const HeadPatch& patch,
               cudaStream_t stream) {
  if (N <= 64) {
    launch<DH, 64>(qkv, B, N, H, scale, out, patch, stream);
  } else if (N <= 128) {
    launch<DH, 128>(qkv, B, N, H, scale, out, patch, stream);
  } else {
    launch<DH, 256>(qkv, B, N, H, scale, out, patch, stream);
  }
}

}  // namespace

std::string attention_mma_unsupported(const KernelShape& s) {
  if (s.d[1] > kMaxTokens) return "at most 256 tokens";
  if (s.d[3] != 16 && s.d[3] != 32 && s.d[3] != 64) {
    return "head_dim must be 16, 32 or 64 (k16 tensor-core steps), got " + std::to_string(s.d[3]);
  }
  const MmaDevice* d = mma_device();
  if (!d) return "no usable device";
  if (!d->sm80) return "needs bf16 mma.sync and ldmatrix (sm_80 or newer)";
  return "";
}

bool attention_mma_can_run(const float* qkv) { return reinterpret_cast<uintptr_t>(qkv) % 16 == 0; }

void mha_mma_prepare() { mma_device(); }

void mha_attention_mma(const float* qkv, int64_t B, int N, int H, int dh, float scale, float* out,
                       const HeadPatch& patch, cudaStream_t stream) {
  check(attention_mma_can_run(qkv), "mha_attention (mma_sync): qkv must be 16-byte aligned");
  switch (dh) {
    case 16: launch_dh<16>(qkv, B, N, H, scale, out, patch, stream); break;
    case 32: launch_dh<32>(qkv, B, N, H, scale, out, patch, stream); break;
    case 64: launch_dh<64>(qkv, B, N, H, scale, out, patch, stream); break;
    default: throw Error("mha_attention (mma_sync): head dim must be 16, 32 or 64, got " + std::to_string(dh));
  }
}

}  // namespace vtv::cuda
