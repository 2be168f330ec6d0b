// Dense matrix products on the CPU (fp32). The hot spot of the whole CPU forward: every transformer
// linear layer and, through conv.h, every VQGAN convolution lands here.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "core/thread_pool.h"

namespace vtv::cpu {

enum class Epilogue { None, Gelu };

// C[M][N] = beta*C + op(A)[M][K] * op(B)[K][N]   (row-major; op(X) = X or X^T; beta is 0 or 1).
// With trans_a, A is stored [K][M]; with trans_b, B is stored [N][K].
void sgemm(ThreadPool& pool, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The PyTorch Linear: y[M][N] = epilogue(x[M][K] * W[N][K]^T + bias[N]) (+ residual[M][N]).
// bias and residual may be null; residual may alias y (in-place residual add). GELU is the exact erf form.
void linear(ThreadPool& pool, const float* x, int64_t M, int64_t K, const float* W, const float* bias, int64_t N,
            float* y, Epilogue epilogue = Epilogue::None, const float* residual = nullptr);

// A Linear weight W[N][K] packed once into the GEMM's B panels, for layers run many times with the same
// weights: linear() on it skips the per-call packing (a transposing pass over all of W, which at a few
// dozen rows costs about as much as the multiply itself). Holds its own copy (N rounded up to the panel
// width, times K floats).
class PackedLinear {
 public:
  PackedLinear() = default;
  PackedLinear(ThreadPool& pool, const float* W, int64_t N, int64_t K);
  int64_t N() const { return n_; }
  int64_t K() const { return k_; }
  bool empty() const { return !data_; }
  // The panel of columns [j0, j0 + panel width), rows [p0, p0 + the driver's K block) (row stride: the
  // panel width); p0 a multiple of the K block.
  const float* panel(int64_t j0, int64_t p0) const;

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  int64_t n_ = 0, k_ = 0;
  std::unique_ptr<float, Free> data_;  // 64-byte aligned (the microkernel's aligned panel loads)
};

// linear() with pre-packed weights (W.K() must equal K).
void linear(ThreadPool& pool, const float* x, int64_t M, int64_t K, const PackedLinear& W, const float* bias, float* y,
            Epilogue epilogue = Epilogue::None, const float* residual = nullptr);

// Name of the GEMM implementation compiled in ("blocked-avx512", "blocked-avx2", "openblas", ...).
const char* gemm_implementation();

}  // namespace vtv::cpu
