// Nearest-code quantisation of the VQGAN encoder's latents (docs/method.md#vqgan: argmin of the squared L2 distance
// to the codebook), computed exactly as model::VqganEncoder::quantise does so the choice is the same
// whenever the latents are: d_v = |e_v|^2 - 2 z.e_v in double, the dot product summed in embedding order
// (a product of two floats is exact in double, so fused or not the sums agree bit for bit), the
// smallest d winning and the first index winning ties (torch.argmin). A NaN distance never wins; a
// token whose distances are all NaN gets code 0, as on the CPU.
// One block takes kTokens consecutive tokens (their latents staged in shared memory as double); each
// thread scans codes tid, tid + 256, ..., then the block reduces (d, index) per token.
#include <math_constants.h>

#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/vqgan_kernels.h"

namespace vtv::cuda {

namespace {

constexpr int THREADS = 256, kTokens = 8, kMaxEmbed = 512;

__device__ __forceinline__ bool better(double d, int i, double bd, int bi) {
  return d < bd || (d == bd && i < bi);
}

__global__ void __launch_bounds__(THREADS)
nearest_code_kernel(const float* __restrict__ z, int64_t tokens, int E, int T, const float* __restrict__ codebook,
                    const double* __restrict__ code_norms, int V, int32_t* __restrict__ out) {
  __shared__ double zs[kTokens][kMaxEmbed];
  __shared__ double red_d[THREADS / 32][kTokens];
  __shared__ int red_i[THREADS / 32][kTokens];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t i0 = int64_t(blockIdx.x) * kTokens;
  for (int j = tid; j < kTokens * E; j += THREADS) {
    const int t = j / E, e = j - t * E;
    const int64_t i = i0 + t;
    double v = 0.0;
    if (i < tokens) {
      const int64_t b = i / T, p = i - b * T;
      v = double(z[(b * E + e) * T + p]);
    }
    zs[t][e] = v;
  }
  __syncthreads();

  double best[kTokens];
  int arg[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    best[t] = CUDART_INF;
    arg[t] = V;  // "none yet": loses every tie against a real index
  }
  for (int v = tid; v < V; v += THREADS) {
    const float* code = codebook + int64_t(v) * E;
    double dot[kTokens];
#pragma unroll
    for (int t = 0; t < kTokens; ++t) dot[t] = 0.0;
    for (int e = 0; e < E; ++e) {
      const double c = double(__ldg(code + e));
#pragma unroll
      for (int t = 0; t < kTokens; ++t) dot[t] = fma(zs[t][e], c, dot[t]);
    }
    const double nv = code_norms[v];
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      const double d = nv - 2.0 * dot[t];
      if (d < best[t]) {  // codes ascend per thread: strict < keeps the first
        best[t] = d;
        arg[t] = v;
      }
    }
  }
  // Per token: the warp's best, then the block's.
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    double d = best[t];
    int i = arg[t];
#pragma unroll
    for (int m = 16; m >= 1; m >>= 1) {
      const double od = __shfl_xor_sync(0xFFFFFFFFu, d, m);
      const int oi = __shfl_xor_sync(0xFFFFFFFFu, i, m);
      if (better(od, oi, d, i)) {
        d = od;
        i = oi;
      }
    }
    if (lane == 0) {
      red_d[warp][t] = d;
      red_i[warp][t] = i;
    }
  }
  __syncthreads();
  if (tid < kTokens && i0 + tid < tokens) {
    double d = red_d[0][tid];
    int i = red_i[0][tid];
    for (int w = 1; w < THREADS / 32; ++w) {
      if (better(red_d[w][tid], red_i[w][tid], d, i)) {
        d = red_d[w][tid];
        i = red_i[w][tid];
      }
    }
    out[i0 + tid] = i < V ? i : 0;  // every distance NaN: code 0, as the CPU's initial argmin
  }
}

}  // namespace

void nearest_code(const float* z, int64_t N, int E, int T, const float* codebook, const double* code_norms, int V,
                  int32_t* tokens, cudaStream_t stream) {
  check(N >= 0 && E > 0 && T > 0 && V > 0, "nearest_code: sizes must be positive (E " + std::to_string(E) + ", T " +
                                               std::to_string(T) + ", V " + std::to_string(V) + ")");
  check(E <= kMaxEmbed, "nearest_code: embed_dim must be at most " + std::to_string(kMaxEmbed) + ", got " +
                            std::to_string(E));
  check(z && codebook && code_norms && tokens, "nearest_code: z, codebook, code_norms and tokens must be set");
  if (N == 0) return;
  const int64_t count = N * T;
  const int64_t blocks = (count + kTokens - 1) / kTokens;
  check(blocks < (int64_t(1) << 31), "nearest_code: too many tokens for one launch");
  VTV_LAUNCH("nearest_code_kernel", static_cast<unsigned>(blocks), THREADS, 0, stream, nearest_code_kernel, z, count, E,
             T, codebook, code_norms, V, tokens);
}

}  // namespace vtv::cuda
