// The "cublaslt" variant of the bf16 Linear (gemm_variants.h): cublasLtMatmul, bf16 A and B, fp32
// accumulation and output, from libcublasLt.so loaded with dlopen at run time, so that neither the
// build nor a machine without the library needs it (the variant then reports itself unavailable and is
// never chosen). The few prototypes and enum values used are declared here (the cuBLASLt API reference).
//
// Mapping: cuBLASLt is column-major, so y[M][N] = x[M][K] W[N][K]^T is computed as y^T (N x M, ld N) =
// op(A) op(B) with A = W viewed as K x N (ld K, transposed) and B = x viewed as K x M (ld K). cuBLASLt
// adds the bias (its BIAS epilogue, per row of y^T = per column of y) and the residual (beta = 1, C =
// residual, which may alias y); what it has no exact equivalent for (the erf GELU: its GELU is the tanh
// approximation; the bf16 copy; the row argmax) runs after it in this file's epilogue kernel.
#include <cuda_bf16.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>

#ifndef VTV_CUDA_EMULATOR
#include <dlfcn.h>
#endif

#include "cuda/check.cuh"
#include "cuda/gemm_epilogue.cuh"
#include "cuda/gemm_variants.h"
#include "cuda/launch.cuh"

namespace vtv::cuda {

namespace {

// ---- the declared part of cublasLt.h -------------------------------------------------------------------
using LtStatus = int;  // cublasStatus_t; 0 = CUBLAS_STATUS_SUCCESS
using LtHandle = void*;
using LtDesc = void*;
using LtLayout = void*;
using LtPref = void*;
struct LtAlgo {
  uint64_t data[8];
};
struct LtHeuristic {
  LtAlgo algo;
  size_t workspaceSize;
  LtStatus state;
  float wavesCount;
  int reserved[4];
};
constexpr int kComputeF32 = 68;            // CUBLAS_COMPUTE_32F
constexpr int kR32F = 0, kR16BF = 14;      // CUDA_R_32F, CUDA_R_16BF
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr int kOpN = 0, kOpT = 1;          // CUBLAS_OP_N, CUBLAS_OP_T
constexpr uint32_t kEpilogueDefault = 1, kEpilogueBias = 4;
constexpr int kPrefMaxWorkspace = 1;       // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES

struct Lt {
  LtStatus (*create)(LtHandle*);
  LtStatus (*desc_create)(LtDesc*, int compute, int scale_type);
  LtStatus (*desc_set)(LtDesc, int attr, const void* buf, size_t size);
  LtStatus (*desc_destroy)(LtDesc);
  LtStatus (*layout_create)(LtLayout*, int type, uint64_t rows, uint64_t cols, int64_t ld);
  LtStatus (*layout_destroy)(LtLayout);
  LtStatus (*pref_create)(LtPref*);
  LtStatus (*pref_set)(LtPref, int attr, const void* buf, size_t size);
  LtStatus (*pref_destroy)(LtPref);
  LtStatus (*heuristic)(LtHandle, LtDesc, LtLayout, LtLayout, LtLayout, LtLayout, LtPref, int, LtHeuristic*, int*);
  LtStatus (*matmul)(LtHandle, LtDesc, const void* alpha, const void* A, LtLayout, const void* B, LtLayout,
                     const void* beta, const void* C, LtLayout, void* D, LtLayout, const LtAlgo*, void* workspace,
                     size_t workspace_bytes, cudaStream_t);
  LtHandle handle = nullptr;
  std::string unavailable;  // "" when loaded
};

Lt& lt() {
  static Lt l = [] {
    Lt x{};
#ifdef VTV_CUDA_EMULATOR
    x.unavailable = "cuBLASLt does not run on the CPU CUDA emulator";
#else
    void* so = nullptr;
    for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) {
      so = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (so) break;
    }
    if (!so) {
      x.unavailable = "libcublasLt.so was not found at run time (dlopen)";
      return x;
    }
    const auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(so, name));
      if (!fn && x.unavailable.empty()) x.unavailable = std::string("libcublasLt.so lacks ") + name;
    };
    sym(x.create, "cublasLtCreate");
    sym(x.desc_create, "cublasLtMatmulDescCreate");
    sym(x.desc_set, "cublasLtMatmulDescSetAttribute");
    sym(x.desc_destroy, "cublasLtMatmulDescDestroy");
    sym(x.layout_create, "cublasLtMatrixLayoutCreate");
    sym(x.layout_destroy, "cublasLtMatrixLayoutDestroy");
    sym(x.pref_create, "cublasLtMatmulPreferenceCreate");
    sym(x.pref_set, "cublasLtMatmulPreferenceSetAttribute");
    sym(x.pref_destroy, "cublasLtMatmulPreferenceDestroy");
    sym(x.heuristic, "cublasLtMatmulAlgoGetHeuristic");
    sym(x.matmul, "cublasLtMatmul");
    if (x.unavailable.empty() && x.create(&x.handle) != 0) x.unavailable = "cublasLtCreate failed";
#endif
    return x;
  }();
  return l;
}

void lt_check(LtStatus s, const char* what) {
  check(s == 0, std::string("linear_bf16 (cublaslt): ") + what + " returned cuBLAS status " + std::to_string(s));
}

// After cuBLASLt: exact GELU (when no residual was added: bias, GELU, residual is the Linear's order),
// the bf16 copy and the row argmax. One block per row.
__global__ void lt_epilogue_kernel(float* y, int N, bool gelu, __nv_bfloat16* y16, unsigned long long* keys) {
  const int64_t row = blockIdx.x;
  unsigned long long best = 0;
  for (int col = threadIdx.x; col < N; col += blockDim.x) {
    float v = y[row * N + col];
    if (gelu) {
      v = gelu_exact(v);
      y[row * N + col] = v;
    }
    if (y16) y16[row * N + col] = __float2bfloat16_rn(v);
    best = max_key(best, argmax_key(v, col));
  }
  if (keys) {
#pragma unroll
    for (int m = 16; m >= 1; m >>= 1) best = max_key(best, __shfl_xor_sync(0xFFFFFFFFu, best, m));
    if ((threadIdx.x & 31) == 0) atomicMax(keys + row, best);
  }
}

}  // namespace

const std::string& cublaslt_unavailable() { return lt().unavailable; }

void linear_bf16_cublaslt(const LinearArgs& a, cudaStream_t stream) {
  validate_linear(a, "linear_bf16 (cublaslt)");
  Lt& l = lt();
  check(l.unavailable.empty(), "linear_bf16 (cublaslt): " + l.unavailable);
  check(a.w_bf16 && a.x_bf16 && a.y, "linear_bf16 (cublaslt): needs w_bf16, x_bf16 and y");
  check(!(a.epilogue == Epilogue::Gelu && a.residual),
        "linear_bf16 (cublaslt): GELU followed by a residual is not supported (cuBLASLt adds C before its epilogue)");
  if (a.M == 0) return;
  LtDesc desc = nullptr;
  LtLayout la = nullptr, lb = nullptr, lc = nullptr;
  lt_check(l.desc_create(&desc, kComputeF32, kR32F), "cublasLtMatmulDescCreate");
  const int ta = kOpT, tb = kOpN;
  lt_check(l.desc_set(desc, kDescTransA, &ta, sizeof(ta)), "set TRANSA");
  lt_check(l.desc_set(desc, kDescTransB, &tb, sizeof(tb)), "set TRANSB");
  const uint32_t epi = a.bias ? kEpilogueBias : kEpilogueDefault;
  lt_check(l.desc_set(desc, kDescEpilogue, &epi, sizeof(epi)), "set EPILOGUE");
  if (a.bias) lt_check(l.desc_set(desc, kDescBiasPointer, &a.bias, sizeof(a.bias)), "set BIAS_POINTER");
  lt_check(l.layout_create(&la, kR16BF, uint64_t(a.K), uint64_t(a.N), a.K), "layout A");
  lt_check(l.layout_create(&lb, kR16BF, uint64_t(a.K), uint64_t(a.M), a.K), "layout B");
  lt_check(l.layout_create(&lc, kR32F, uint64_t(a.N), uint64_t(a.M), a.N), "layout C/D");

  // The heuristic's first algorithm per shape, without a workspace.
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, int64_t, bool>, LtAlgo> algos;
  LtAlgo algo;
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto key = std::make_tuple(a.M, a.N, a.K, a.bias != nullptr);
    auto it = algos.find(key);
    if (it == algos.end()) {
      LtPref pref = nullptr;
      lt_check(l.pref_create(&pref), "cublasLtMatmulPreferenceCreate");
      const size_t ws = 0;
      lt_check(l.pref_set(pref, kPrefMaxWorkspace, &ws, sizeof(ws)), "set MAX_WORKSPACE_BYTES");
      LtHeuristic h{};
      int found = 0;
      lt_check(l.heuristic(l.handle, desc, la, lb, lc, lc, pref, 1, &h, &found), "cublasLtMatmulAlgoGetHeuristic");
      l.pref_destroy(pref);
      check(found > 0, "linear_bf16 (cublaslt): no cuBLASLt algorithm for M " + std::to_string(a.M) + " N " +
                           std::to_string(a.N) + " K " + std::to_string(a.K));
      it = algos.emplace(key, h.algo).first;
    }
    algo = it->second;
  }
  const float alpha = 1.0f, beta = a.residual ? 1.0f : 0.0f;
  const void* C = a.residual ? static_cast<const void*>(a.residual) : static_cast<const void*>(a.y);
  lt_check(l.matmul(l.handle, desc, &alpha, a.w_bf16, la, a.x_bf16, lb, &beta, C, lc, a.y, lc, &algo, nullptr, 0, stream),
           "cublasLtMatmul");
  l.layout_destroy(la);
  l.layout_destroy(lb);
  l.layout_destroy(lc);
  l.desc_destroy(desc);
  const bool gelu = a.epilogue == Epilogue::Gelu;
  if (gelu || a.y_bf16 || a.argmax_keys) {
    check(a.M <= int64_t(INT32_MAX), "linear_bf16 (cublaslt): too many rows");
    VTV_LAUNCH("lt_epilogue_kernel", static_cast<unsigned>(a.M), 256, 0, stream, lt_epilogue_kernel, a.y,
               static_cast<int>(a.N), gelu, reinterpret_cast<__nv_bfloat16*>(a.y_bf16), a.argmax_keys);
  }
}

}  // namespace vtv::cuda
