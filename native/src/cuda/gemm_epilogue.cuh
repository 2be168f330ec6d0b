// What the GEMM kernels (gemm_f32.cu, gemm_bf16.cu, gemm_bf16_pipelined.cu) do with a finished accumulator, in the order of
// cpu::linear: + bias, exact GELU, + residual; then the store and the row-argmax fold. Also the argument
// checks they share.
#pragma once
#include <cstdint>
#include <string>

#include <cuda_bf16.h>

#include "cuda/argmax.cuh"
#include "cuda/kernels.h"
#include "vtv/error.h"

namespace vtv::cuda {

struct EpilogueParams {
  const float* bias;
  const float* residual;
  float* y;
  __nv_bfloat16* y16;  // the bf16 copy of y that the next bf16 Linear reads (nullable)
  unsigned long long* keys;
  bool gelu;
};

// GELU, exact erf form as nn.GELU: 0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2) (erfc keeps the
// negative tail accurate, as the CPU kernel does).
__device__ __forceinline__ float gelu_exact(float x) { return 0.5f * x * erfcf(x * -0.70710678118654752f); }

__device__ __forceinline__ float epilogue_value(const EpilogueParams& e, int64_t row, int col, int N, float acc) {
  float v = acc;
  if (e.bias) v += e.bias[col];
  if (e.gelu) v = gelu_exact(v);
  if (e.residual) v += e.residual[row * N + col];
  return v;
}

// The stores of one finished value: y (fp32) and its bf16 copy, when set.
__device__ __forceinline__ void epilogue_store(const EpilogueParams& e, int64_t row, int col, int N, float v) {
  if (e.y) e.y[row * N + col] = v;
  if (e.y16) e.y16[row * N + col] = __float2bfloat16_rn(v);
}

// The epilogue of one warp's mma.sync m16n8 accumulators: MT x NT tiles of 16 x 8 whose top-left is
// (row0, col0), each thread holding c0, c1 at (g, 2t), (g, 2t+1) and c2, c3 at (g+8, 2t), (g+8, 2t+1)
// of every tile. Each value goes through epilogue_value and epilogue_store; with keys set, the row's
// argmax is folded over the quad (the four threads of the same g hold the row's 8 * NT columns) and
// merged into keys[row]. Every lane of the warp must call it (the quad shuffles).
template <int MT, int NT>
__device__ __forceinline__ void mma_tile_epilogue(const EpilogueParams& ep, const float (&acc)[MT][NT][4], int64_t row0,
                                                  int col0, int g, int t, int64_t M, int N) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = row0 + mt * 16 + g + half * 8;
      unsigned long long best = 0;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int col = col0 + nt * 8 + 2 * t + c;
          if (row < M && col < N) {
            const float v = epilogue_value(ep, row, col, N, acc[mt][nt][half * 2 + c]);
            epilogue_store(ep, row, col, N, v);
            best = max_key(best, argmax_key(v, col));
          }
        }
      }
      if (ep.keys) {
        best = max_key(best, __shfl_xor_sync(0xFFFFFFFFu, best, 1));
        best = max_key(best, __shfl_xor_sync(0xFFFFFFFFu, best, 2));
        if (t == 0 && row < M) atomicMax(ep.keys + row, best);
      }
    }
  }
}

inline EpilogueParams epilogue_params(const LinearArgs& a) {
  return EpilogueParams{a.bias, a.residual, a.y, reinterpret_cast<__nv_bfloat16*>(a.y_bf16), a.argmax_keys,
                        a.epilogue == Epilogue::Gelu};
}

inline void validate_linear(const LinearArgs& a, const char* name) {
  const std::string n(name);
  check(a.M >= 0 && a.K > 0 && a.N > 0, n + ": sizes must be M >= 0, K > 0, N > 0 (got M " + std::to_string(a.M) +
                                            ", K " + std::to_string(a.K) + ", N " + std::to_string(a.N) + ")");
  check(a.K % 8 == 0, n + ": K must be a multiple of 8 (16-byte loads), got " + std::to_string(a.K));
  check(a.N < (int64_t(1) << 30) && a.K < (int64_t(1) << 30), n + ": N and K must be below 2^30");
  check(a.x != nullptr || a.x_bf16 != nullptr, n + ": x and x_bf16 are both null");
  check(a.y != nullptr || a.y_bf16 != nullptr || a.argmax_keys != nullptr,
        n + ": none of y, y_bf16 and argmax_keys is set: nothing to compute");
  check(reinterpret_cast<uintptr_t>(a.x) % 16 == 0 && reinterpret_cast<uintptr_t>(a.x_bf16) % 16 == 0,
        n + ": x and x_bf16 must be 16-byte aligned");
  const void* w = a.w_f32 ? static_cast<const void*>(a.w_f32) : static_cast<const void*>(a.w_bf16);
  check(w != nullptr && reinterpret_cast<uintptr_t>(w) % 16 == 0, n + ": W must be set and 16-byte aligned");
  check(a.x != a.y, n + ": x must not alias y");
  check(a.x_bf16 == nullptr || a.x_bf16 != a.y_bf16, n + ": x_bf16 must not alias y_bf16");
}

}  // namespace vtv::cuda
