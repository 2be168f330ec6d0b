// sgemm and the Linear layer on top of the blocked driver (gemm_driver.h), or on OpenBLAS when the build
// asks for it (VTV_WITH_OPENBLAS, CMake option VTV_BLAS).
#include "cpu/gemm.h"

#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "cpu/gemm_driver.h"
#include "vtv/error.h"

#ifdef VTV_WITH_OPENBLAS
#include <cblas.h>
#endif

namespace vtv::cpu {

using namespace gemm_detail;

namespace {

void scale_matrix(ThreadPool& pool, float* C, int64_t M, int64_t N, int64_t ldc, float beta) {
  pool.parallel_for(M, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      float* c = C + i * ldc;
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }, 16);
}

}  // namespace

void sgemm(ThreadPool& pool, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check(M >= 0 && N >= 0 && K >= 0, "sgemm: negative size");
  check(ldc >= N, "sgemm: ldc smaller than N");
  check(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N), "sgemm: lda/ldb smaller than the row length");
  if (M == 0 || N == 0) return;
#ifdef VTV_WITH_OPENBLAS
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
              A, lda, B, ldb, beta, C, ldc);
  (void)pool;
  return;
#endif
  bool accumulate = beta != 0.0f;
  if (accumulate && beta != 1.0f) scale_matrix(pool, C, M, N, ldc, beta);
  TileEpilogue ep;
  auto run = [&](const auto& pa, const auto& pb) { gemm_parallel(pool, M, N, K, pa, pb, C, ldc, accumulate, ep); };
  auto pa_n = packing_a_block(M, [&](float* d, int64_t i0, int64_t mr, int64_t p0, int64_t kc) { pack_a_rowmajor(d, A, lda, i0, mr, p0, kc); });
  auto pa_t = packing_a_block(M, [&](float* d, int64_t i0, int64_t mr, int64_t p0, int64_t kc) { pack_a_colmajor(d, A, lda, i0, mr, p0, kc); });
  auto pb_n = [&](float* d, int64_t j0, int64_t nr, int64_t p0, int64_t kc) { pack_b_rowmajor(d, B, ldb, j0, nr, p0, kc); };
  auto pb_t = [&](float* d, int64_t j0, int64_t nr, int64_t p0, int64_t kc) { pack_b_colmajor(d, B, ldb, j0, nr, p0, kc); };
  if (!trans_a && !trans_b) run(pa_n, pb_n);
  else if (!trans_a && trans_b) run(pa_n, pb_t);
  else if (trans_a && !trans_b) run(pa_t, pb_n);
  else run(pa_t, pb_t);
}

namespace {

// y = epilogue(x W^T + bias) (+ residual) on B panels from pack_b; the shared body of both linear()s.
template <class PackB>
void linear_with(ThreadPool& pool, const float* x, int64_t M, int64_t K, int64_t N, const PackB& pb, const float* bias,
                 float* y, Epilogue epilogue, const float* residual) {
  const bool gelu = epilogue == Epilogue::Gelu;
  // A residual that aliases y is the in-place "x = x + f(x)": without GELU it is simply accumulation into
  // y; with GELU it must be kept aside, since y is overwritten before the GELU is applied.
  std::vector<float> residual_copy;
  bool accumulate = false;
  if (residual == y) {
    if (gelu) {
      residual_copy.assign(residual, residual + M * N);
      residual = residual_copy.data();
    } else {
      accumulate = true;
      residual = nullptr;
    }
  }
  TileEpilogue ep;
  ep.bias_col = bias;
  ep.gelu = gelu;
  ep.residual = residual;
  ep.ldr = N;
#ifdef VTV_WITH_OPENBLAS
  if constexpr (std::is_same_v<PackB, const float*>) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, pb, K, accumulate ? 1.0f : 0.0f, y, N);
    if (!ep.empty()) {
      pool.parallel_for(M, [&](int64_t b, int64_t e) { apply_epilogue(ep, y + b * N, N, b, 0, e - b, N); }, 8);
    }
    return;
  }
#endif
  auto pa = packing_a_block(M, [&](float* d, int64_t i0, int64_t mr, int64_t p0, int64_t kc) { pack_a_rowmajor(d, x, K, i0, mr, p0, kc); });
  if constexpr (std::is_same_v<PackB, const float*>) {
    auto pack = [&](float* d, int64_t j0, int64_t nr, int64_t p0, int64_t kc) { pack_b_colmajor(d, pb, K, j0, nr, p0, kc); };
    gemm_parallel(pool, M, N, K, pa, pack, y, N, accumulate, ep);
  } else {
    gemm_parallel(pool, M, N, K, pa, pb, y, N, accumulate, ep);
  }
}

}  // namespace

void linear(ThreadPool& pool, const float* x, int64_t M, int64_t K, const float* W, const float* bias, int64_t N,
            float* y, Epilogue epilogue, const float* residual) {
  check(M >= 0 && N >= 0 && K >= 0, "linear: negative size");
  if (M == 0 || N == 0) return;
  linear_with(pool, x, M, K, N, W, bias, y, epilogue, residual);
}

PackedLinear::PackedLinear(ThreadPool& pool, const float* W, int64_t N, int64_t K) : n_(N), k_(K) {
  check(N > 0 && K > 0, "PackedLinear: sizes must be positive");
  const int64_t panels = (N + NR - 1) / NR;
  const size_t bytes = (static_cast<size_t>(panels * K * NR) * sizeof(float) + 63) / 64 * 64;
  data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
  if (!data_) throw std::bad_alloc();
  // In the order the driver reads them (K block outer, column panel inner), so that each thread's reads
  // of one K block are one sequential stream: the block of rows [pc, pc + kc) of panel j (columns
  // [j*NR, j*NR + NR), row stride NR) starts at pc*panels*NR + j*kc*NR.
  pool.parallel_for(panels, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j)
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = std::min(KC, K - pc);
        pack_b_colmajor(data_.get() + pc * panels * NR + j * kc * NR, W, K, j * NR, std::min<int64_t>(NR, N - j * NR),
                        pc, kc);
      }
  });
}

const float* PackedLinear::panel(int64_t j0, int64_t p0) const {
  const int64_t panels = (n_ + NR - 1) / NR;
  return data_.get() + p0 * panels * NR + (j0 / NR) * std::min(KC, k_ - p0) * NR;
}

void linear(ThreadPool& pool, const float* x, int64_t M, int64_t K, const PackedLinear& W, const float* bias, float* y,
            Epilogue epilogue, const float* residual) {
  check(W.K() == K, "linear: packed weights have another input size");
  check(M >= 0, "linear: negative size");
  if (M == 0) return;
  auto pb = [&](float*, int64_t j0, int64_t, int64_t p0, int64_t) -> const float* { return W.panel(j0, p0); };
  linear_with(pool, x, M, K, W.N(), pb, bias, y, epilogue, residual);
}

const char* gemm_implementation() {
#ifdef VTV_WITH_OPENBLAS
  return "openblas";
#else
  return kKernelName;
#endif
}

}  // namespace vtv::cpu
