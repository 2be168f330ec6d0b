// sgemm and the Linear layer on top of the blocked driver (gemm_driver.h), or on OpenBLAS when the build
// asks for it (VTV_WITH_OPENBLAS, CMake option VTV_BLAS).
#include "cpu/gemm.h"

#include <cstring>
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

void linear(ThreadPool& pool, const float* x, int64_t M, int64_t K, const float* W, const float* bias, int64_t N,
            float* y, Epilogue epilogue, const float* residual) {
  check(M >= 0 && N >= 0 && K >= 0, "linear: negative size");
  if (M == 0 || N == 0) return;
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
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, W, K, accumulate ? 1.0f : 0.0f, y, N);
  if (!ep.empty()) {
    pool.parallel_for(M, [&](int64_t b, int64_t e) { apply_epilogue(ep, y + b * N, N, b, 0, e - b, N); }, 8);
  }
  return;
#endif
  auto pa = packing_a_block(M, [&](float* d, int64_t i0, int64_t mr, int64_t p0, int64_t kc) { pack_a_rowmajor(d, x, K, i0, mr, p0, kc); });
  auto pb = [&](float* d, int64_t j0, int64_t nr, int64_t p0, int64_t kc) { pack_b_colmajor(d, W, K, j0, nr, p0, kc); };
  gemm_parallel(pool, M, N, K, pa, pb, y, N, accumulate, ep);
}

const char* gemm_implementation() {
#ifdef VTV_WITH_OPENBLAS
  return "openblas";
#else
  return kKernelName;
#endif
}

}  // namespace vtv::cpu
