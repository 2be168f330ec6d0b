// What both GEMM kernels (gemm_f32.cu, gemm_bf16.cu) do with a finished accumulator, in the order of
// cpu::linear: + bias, exact GELU, + residual; then the store and the row-argmax fold. Also the argument
// checks they share.
#pragma once
#include <cstdint>
#include <string>

#include "cuda/argmax.cuh"
#include "cuda/kernels.h"
#include "vtv/error.h"

namespace vtv::cuda {

struct EpilogueParams {
  const float* bias;
  const float* residual;
  float* y;
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

inline EpilogueParams epilogue_params(const LinearArgs& a) {
  return EpilogueParams{a.bias, a.residual, a.y, a.argmax_keys, a.epilogue == Epilogue::Gelu};
}

inline void validate_linear(const LinearArgs& a, const char* name) {
  const std::string n(name);
  check(a.M >= 0 && a.K > 0 && a.N > 0, n + ": sizes must be M >= 0, K > 0, N > 0 (got M " + std::to_string(a.M) +
                                            ", K " + std::to_string(a.K) + ", N " + std::to_string(a.N) + ")");
  check(a.K % 8 == 0, n + ": K must be a multiple of 8 (16-byte loads), got " + std::to_string(a.K));
  check(a.N < (int64_t(1) << 30) && a.K < (int64_t(1) << 30), n + ": N and K must be below 2^30");
  check(a.x != nullptr, n + ": x is null");
  check(a.y != nullptr || a.argmax_keys != nullptr, n + ": neither y nor argmax_keys is set: nothing to compute");
  check(reinterpret_cast<uintptr_t>(a.x) % 16 == 0, n + ": x must be 16-byte aligned");
  const void* w = a.w_f32 ? static_cast<const void*>(a.w_f32) : static_cast<const void*>(a.w_bf16);
  check(w != nullptr && reinterpret_cast<uintptr_t>(w) % 16 == 0, n + ": W must be set and 16-byte aligned");
  check(a.x != a.y, n + ": x must not alias y");
}

}  // namespace vtv::cuda
