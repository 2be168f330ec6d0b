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
