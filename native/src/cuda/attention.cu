// Multi-head attention for the short sequences of this model (50, 99, 148, 197 tokens; head dims 64 and
// 32, and 16 / 8 in the tiny test model), with the task-vector patch applied in place
// (docs/method.md#patching): a patched (sample, head, position) writes its task mean
// instead of its attention output, and a head whose every position is patched never loads K and V.
//
// One block per (sample, head): K and V of all N tokens are staged in shared memory in fp32 (K rows padded
// to DH+1 floats so that the 32 lanes, one key each, hit distinct banks); each warp then takes queries
// i = warp, warp+8, ...: scores (one key per lane), a warp-wide softmax, and P.V (one output dim per
// lane). Plain fp32 FMA in both precision modes: attention is ~2% of the forward's multiply-adds here.
// Capture sums are a separate deterministic reduction over samples (add_batch_sum).
//
// This kernel is the "baseline" of the Attention kernel variants (variants.h); mha_attention runs the
// variant the tuning table (or a ForceVariant) names when it can run the call, here or in
// attention_mma.cu ("mma_sync": bf16 tensor cores, head dims 16, 32, 64), and records what ran.
#include <algorithm>
#include <cmath>
#include <mutex>

#include "cuda/attention_variants.h"
#include "cuda/check.cuh"
#include "cuda/head_patch.cuh"
#include "cuda/launch.cuh"
#include "cuda/kernels.h"
#include "cuda/variants.h"

namespace vtv::cuda {

namespace {

constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kMaxTokens = 256;
constexpr int kKeyChunks = kMaxTokens / 32;  // keys per lane

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, off);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, off));
  return v;
}

size_t smem_bytes(int N, int DH) {
  return sizeof(float) * (size_t(N) * (DH + 1) + size_t(N) * DH + size_t(kWarps) * DH + size_t(kWarps) * N);
}

template <int DH>
__global__ void __launch_bounds__(kThreads)
mha_kernel(const float* __restrict__ qkv, int N, int H, float scale, float* __restrict__ out, HeadPatch patch) {
  VTV_DYNAMIC_SHARED(float, smem);
  float* Ks = smem;                 // [N][DH + 1]
  float* Vs = Ks + N * (DH + 1);    // [N][DH]
  float* Qs = Vs + N * DH;          // [kWarps][DH]
  float* Ps = Qs + kWarps * DH;     // [kWarps][N]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.x / H;
  const int h = static_cast<int>(blockIdx.x % H);
  const int C = H * DH;
  const int64_t row = 3 * int64_t(C);
  const float* base = qkv + b * N * row;
  const HeadPatchView hp = head_patch_view(patch, b, H, h, N);
  if (head_computes(hp, N, kThreads)) {
    for (int idx = tid; idx < N * DH; idx += kThreads) {
      const int j = idx / DH, d = idx % DH;
      const float* src = base + j * row + h * DH + d;
      Ks[j * (DH + 1) + d] = src[C];
      Vs[j * DH + d] = src[2 * C];
    }
  }
  __syncthreads();

  float* q = Qs + warp * DH;
  float* p = Ps + warp * N;
  for (int i = warp; i < N; i += kWarps) {
    float* o = out + (b * N + i) * int64_t(C) + h * DH;
    if (hp.patched(i)) {  // the same i for the whole warp: a uniform branch
      const float* m = hp.mean(i, DH);
      for (int d = lane; d < DH; d += 32) o[d] = m[d];
      continue;
    }
    for (int d = lane; d < DH; d += 32) q[d] = base[i * row + h * DH + d];
    __syncwarp();
    float s[kKeyChunks];
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < kKeyChunks; ++c) {
      const int j = lane + 32 * c;
      float acc = -INFINITY;
      if (j < N) {
        acc = 0.0f;
        const float* kj = Ks + j * (DH + 1);
#pragma unroll
        for (int d = 0; d < DH; ++d) acc = fmaf(q[d], kj[d], acc);
      }
      s[c] = acc;
      mx = fmaxf(mx, acc);
    }
    // As the CPU kernel: exp(s * scale - max * scale), normalised after the weighted sum.
    const float shift = warp_max(mx) * scale;
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kKeyChunks; ++c) {
      const int j = lane + 32 * c;
      if (j < N) {
        const float e = expf(s[c] * scale - shift);
        p[j] = e;
        sum += e;
      }
    }
    const float inv = 1.0f / warp_sum(sum);
    __syncwarp();
    for (int d = lane; d < DH; d += 32) {
      float acc = 0.0f;
      for (int j = 0; j < N; ++j) acc = fmaf(p[j], Vs[j * DH + d], acc);
      o[d] = acc * inv;
    }
    __syncwarp();  // q and p are rewritten by the warp's next query
  }
}

// The device attributes the launches need, queried once per device and cached, so that launches inside
// a captured region (a CUDA graph) make no attribute calls: the opt-in limit of dynamic shared memory,
// and each head dim's kernel allowed what kMaxTokens tokens need (up to that limit). MaeCuda prepares
// them at construction (mha_prepare), before any capture; a first launch elsewhere prepares them too.
constexpr int kMaxDevices = 64;
struct MhaDevice {
  std::once_flag once;
  int optin = 0;
};
MhaDevice g_mha_devices[kMaxDevices];

template <int DH>
void allow_mha_smem(int optin) {
  const size_t bytes = std::min(smem_bytes(kMaxTokens, DH), size_t(optin));
  if (bytes > 48 * 1024) {
    VTV_CUDA_CHECK(cudaFuncSetAttribute(mha_kernel<DH>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  }
}

const MhaDevice& mha_device() {
  int device = 0;
  VTV_CUDA_CHECK(cudaGetDevice(&device));
  check(device >= 0 && device < kMaxDevices, "mha_attention: device " + std::to_string(device) + " out of range");
  MhaDevice& d = g_mha_devices[device];
  std::call_once(d.once, [&d, device] {
    VTV_CUDA_CHECK(cudaDeviceGetAttribute(&d.optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    allow_mha_smem<8>(d.optin);
    allow_mha_smem<16>(d.optin);
    allow_mha_smem<32>(d.optin);
    allow_mha_smem<64>(d.optin);
  });
  return d;
}

template <int DH>
void launch_mha(const float* qkv, int64_t B, int N, int H, float scale, float* out, const HeadPatch& patch,
                cudaStream_t stream) {
  const size_t bytes = smem_bytes(N, DH);
  const int optin = mha_device().optin;
  check(bytes <= size_t(optin), "mha_attention: N = " + std::to_string(N) + ", head dim " + std::to_string(DH) +
                                    " needs " + std::to_string(bytes) + " bytes of shared memory; this device allows " +
                                    std::to_string(optin));
  VTV_LAUNCH("mha_kernel", static_cast<unsigned>(B * H), kThreads, bytes, stream, mha_kernel<DH>, qkv, N, H, scale, out,
             patch);
}

__global__ void add_batch_sum_kernel(const float* __restrict__ x, int64_t B, int64_t per_sample, float* __restrict__ sum) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= per_sample) return;
  float acc = sum[i];
  for (int64_t b = 0; b < B; ++b) acc += x[b * per_sample + i];
  sum[i] = acc;
}

}  // namespace

void mha_prepare() {
  mha_device();
  mha_mma_prepare();
}

void mha_attention(const float* qkv, int64_t B, int64_t N, int H, int dh, float scale, float* out,
                   const HeadPatch* patch, cudaStream_t stream) {
  check(B >= 0 && N > 0 && H > 0, "cuda mha_attention: sizes must be positive");
  check(N <= kMaxTokens, "cuda mha_attention: at most " + std::to_string(kMaxTokens) + " tokens, got " + std::to_string(N));
  check(B * H < (int64_t(1) << 31), "cuda mha_attention: B * H too large");
  check(scale > 0.0f, "cuda mha_attention: scale must be positive");
  check(!patch || (patch->mask && patch->means), "cuda mha_attention: a patch needs both mask and means");
  if (B == 0) return;
  const HeadPatch p = patch ? *patch : HeadPatch{};
  const int n = static_cast<int>(N);
  // The variant the tuning table (or a ForceVariant) names, when it can run this call; else the baseline.
  const KernelVariant& v = choose_variant(attention_shape(B, N, H, dh));
  if (std::string(v.name) == "mma_sync" && attention_mma_can_run(qkv)) {
    mha_attention_mma(qkv, B, n, H, dh, scale, out, p, stream);
    note_variant_run(KernelFamily::Attention, "mma_sync");
    return;
  }
  switch (dh) {
    case 8: launch_mha<8>(qkv, B, n, H, scale, out, p, stream); break;
    case 16: launch_mha<16>(qkv, B, n, H, scale, out, p, stream); break;
    case 32: launch_mha<32>(qkv, B, n, H, scale, out, p, stream); break;
    case 64: launch_mha<64>(qkv, B, n, H, scale, out, p, stream); break;
    default: throw Error("cuda mha_attention: head dim must be 8, 16, 32 or 64, got " + std::to_string(dh));
  }
  note_variant_run(KernelFamily::Attention, "baseline");
}

void add_batch_sum(const float* x, int64_t B, int64_t per_sample, float* sum, cudaStream_t stream) {
  check(B >= 0 && per_sample >= 0, "add_batch_sum: sizes must be >= 0");
  if (B == 0 || per_sample == 0) return;
  VTV_LAUNCH("add_batch_sum_kernel", static_cast<unsigned>((per_sample + 255) / 256), 256, 0, stream,
             add_batch_sum_kernel, x, B, per_sample, sum);
}

}  // namespace vtv::cuda
