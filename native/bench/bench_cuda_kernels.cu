// Every GPU kernel variant the engine has, on the shapes of the search's zero-shot forward, against
// ceilings measured on the same GPU in the same run:
//   ceilings   DRAM copy bandwidth, fp32 FMA peak, mma.sync bf16 peak (the engine's tensor-core
//              instruction) and, when compiled with cuBLASLt, a large cuBLASLt bf16 GEMM (wgmma-class);
//   MAE        every Linear of ViT-L's encoder (M = batch*50 rows) and the 512-wide decoder (batch*99),
//              the patch embedding (batch*49) and the head with its fused argmax (batch*98): engine bf16
//              (mma.sync), engine fp32 (FMA, the parity mode) and cuBLASLt bf16 in / fp32 or bf16 out;
//              attention at N = 50 (dh 64) and N = 99 (dh 32), with and without the task-vector patch;
//              LayerNorm;
//   VQGAN      every distinct convolution of the decoder at each level (implicit GEMM, bf16 and fp32,
//              with the GroupNorm+swish prologue, folded upsampling and statistics epilogue the engine
//              uses), the spatial attention, conv_out; and, with cuBLASLt, a plain GEMM of each conv's
//              M x N x K (no im2col: a bound the implicit GEMM could approach).
// Each line: median ms per call (device events, after warm-up), TFLOP/s, GB/s, percent of its bound,
// calls per batch-`--batch` forward and ms per batch. Then, per precision, where the forward's kernel time
// goes (sum of calls x time) against the sum of the bounds. The last line is "VTV_JSON {...}" for
// tools/device/perf.sh.
// Last, every registered GEMM and conv variant on the model's shapes as `vtv tune` times them.
//   usage: bench_cuda_kernels [--batch 320] [--vq-batch 32] [--reps 10] [--no-fp32] [--filter SUBSTRING]
// --vq-batch is the decoder's grids per pass (VqganCuda's default max_chunk is 32). Exit status 2 when no
// usable GPU (the reason is printed), 1 when a variant failed.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#ifdef VTV_WITH_CUBLASLT
#include <cublasLt.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/device_buffer.h"
#include "cuda/kernels.h"
#include "cuda/probe.h"
#include "cuda/variants.h"
#include "cuda/vqgan_kernels.h"
#include "vtv/config.h"
#include "vtv/error.h"

namespace {

using vtv::cuda::DeviceBuffer;

// ---- device helpers ----------------------------------------------------------------------------------

__device__ __forceinline__ float hash_uniform(uint64_t i, uint32_t seed) {  // splitmix64 -> [-1, 1)
  uint64_t z = i + 0x9E3779B97F4A7C15ull * (uint64_t(seed) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) / 8388608.0f - 1.0f;
}

__global__ void fill_kernel(float* x, int64_t n, uint32_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    x[i] = offset + scale * hash_uniform(uint64_t(i), seed);
  }
}

void fill(float* x, int64_t n, uint32_t seed, float scale = 1.0f, float offset = 0.0f) {
  fill_kernel<<<1024, 256>>>(x, n, seed, scale, offset);
  VTV_CUDA_CHECK_LAUNCH("fill_kernel");
}

#ifdef VTV_WITH_CUBLASLT  // bf16 operands are only needed by the cuBLASLt variants
__global__ void fill_bf16_kernel(__nv_bfloat16* x, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    x[i] = __float2bfloat16(scale * hash_uniform(uint64_t(i), seed));
  }
}

void fill_bf16(uint16_t* x, int64_t n, uint32_t seed, float scale = 1.0f) {
  fill_bf16_kernel<<<1024, 256>>>(reinterpret_cast<__nv_bfloat16*>(x), n, seed, scale);
  VTV_CUDA_CHECK_LAUNCH("fill_bf16_kernel");
}
#endif

// Ceiling kernels. Each keeps its result alive with a store that never happens in practice.
__global__ void copy_kernel(const float4* __restrict__ src, float4* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}

constexpr int kFmaChains = 8;
__global__ void fma_peak_kernel(int iters, float* out) {
  float x[kFmaChains];
#pragma unroll
  for (int j = 0; j < kFmaChains; ++j) x[j] = threadIdx.x * 1e-7f + j;
  const float m = 0.99999f, c = 1e-5f;
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int j = 0; j < kFmaChains; ++j) x[j] = fmaf(x[j], m, c);
  }
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < kFmaChains; ++j) s += x[j];
  if (s == 1234.5678f) out[0] = s;
}

constexpr int kMmaChains = 8;  // independent accumulators per warp: enough to cover the mma latency
__global__ void mma_peak_kernel(int iters, float* out) {
  uint32_t a[4], b[2];
#pragma unroll
  for (int j = 0; j < 4; ++j) a[j] = 0x3F803F80u ^ (threadIdx.x * 2654435761u >> (8 + j));
  b[0] = 0x3F803F80u ^ threadIdx.x;
  b[1] = 0x3F803F80u ^ (threadIdx.x << 3);
  float d[kMmaChains][4] = {};
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int j = 0; j < kMmaChains; ++j) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
  }
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < kMmaChains; ++j) s += d[j][0] + d[j][1] + d[j][2] + d[j][3];
  if (s == 1234.5678f) out[0] = s;
}

// ---- timing --------------------------------------------------------------------------------------------

int g_reps = 10;

// Median device milliseconds of one call of f, over `reps` samples after two warm-up calls; each sample
// times enough back-to-back calls to last about half a millisecond (events have ~µs resolution).
double median_ms(const std::function<void()>& f, int reps = -1) {
  if (reps < 0) reps = g_reps;
  cudaEvent_t a, b;
  VTV_CUDA_CHECK(cudaEventCreate(&a));
  VTV_CUDA_CHECK(cudaEventCreate(&b));
  f();
  f();
  vtv::cuda::device_synchronize();
  VTV_CUDA_CHECK(cudaEventRecord(a));
  f();
  VTV_CUDA_CHECK(cudaEventRecord(b));
  VTV_CUDA_CHECK(cudaEventSynchronize(b));
  float one = 0.0f;
  VTV_CUDA_CHECK(cudaEventElapsedTime(&one, a, b));
  const int inner = std::max(1, std::min(200, static_cast<int>(std::ceil(0.5 / std::max(one, 1e-4f)))));
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    VTV_CUDA_CHECK(cudaEventRecord(a));
    for (int i = 0; i < inner; ++i) f();
    VTV_CUDA_CHECK(cudaEventRecord(b));
    VTV_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0.0f;
    VTV_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(double(ms) / inner);
  }
  vtv::cuda::device_synchronize();  // and surface any asynchronous kernel error here, at its variant
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// ---- ceilings ------------------------------------------------------------------------------------------

struct Ceilings {
  double bw_gbs = 0, fp32_tflops = 0, mma_tflops = 0, lt_tflops = 0;
  double tc() const { return lt_tflops > 0 ? lt_tflops : mma_tflops; }  // the tensor-core bound used
};

// ---- cuBLASLt ------------------------------------------------------------------------------------------

#ifdef VTV_WITH_CUBLASLT
#define VTV_LT_CHECK(call)                                                                                   \
  do {                                                                                                       \
    const cublasStatus_t st_ = (call);                                                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS) {                                                                      \
      throw vtv::Error(std::string("cublasLt: ") + #call + " failed: " + cublasLtGetStatusString(st_));      \
    }                                                                                                        \
  } while (0)

// Y[M][N] (row-major) = X[M][K] . W[N][K]^T (+ bias[N], + GELU) (+ Y when accumulate), bf16 operands,
// fp32 accumulation, fp32 or bf16 Y. In cuBLAS's column-major terms Y^T (N x M) = op_T(W) . X^T: A = W
// ([K][N] column-major, transposed), B = X ([K][M] column-major). Times every algorithm the heuristic
// offers (up to 8) and keeps the fastest.
class LtGemm {
 public:
  LtGemm() {
    VTV_LT_CHECK(cublasLtCreate(&handle_));
    workspace_.resize(kWorkspace);
  }
  ~LtGemm() { cublasLtDestroy(handle_); }

  double best_ms(const uint16_t* X, const uint16_t* W, const void* bias, void* Y, bool y_bf16, int64_t M, int64_t N,
                 int64_t K, bool gelu, bool accumulate, int* algos_tried) {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    double best = -1.0;
    try {
      VTV_LT_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      VTV_LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
      VTV_LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
      const cublasLtEpilogue_t epi =
          bias ? (gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS) : CUBLASLT_EPILOGUE_DEFAULT;
      VTV_LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
      if (bias) VTV_LT_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
      const cudaDataType_t yt = y_bf16 ? CUDA_R_16BF : CUDA_R_32F;
      VTV_LT_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, uint64_t(K), uint64_t(N), K));
      VTV_LT_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, uint64_t(K), uint64_t(M), K));
      VTV_LT_CHECK(cublasLtMatrixLayoutCreate(&lc, yt, uint64_t(N), uint64_t(M), N));
      VTV_LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
      const size_t ws = kWorkspace;
      VTV_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
      cublasLtMatmulHeuristicResult_t res[8];
      int found = 0;
      VTV_LT_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, op, la, lb, lc, lc, pref, 8, res, &found));
      if (found == 0) throw vtv::Error("cublasLt: no algorithm for this shape and epilogue");
      const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
      int tried = 0;
      for (int i = 0; i < found; ++i) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > ws) continue;
        const cublasLtMatmulAlgo_t* algo = &res[i].algo;
        auto run = [&]() {
          VTV_LT_CHECK(cublasLtMatmul(handle_, op, &alpha, W, la, X, lb, &beta, Y, lc, Y, lc, algo, workspace_.get(), ws,
                                      nullptr));
        };
        const double ms = median_ms(run, std::max(3, std::min(g_reps, 5)));
        ++tried;
        if (best < 0 || ms < best) best = ms;
      }
      if (algos_tried) *algos_tried = tried;
      if (best < 0) throw vtv::Error("cublasLt: every offered algorithm was unusable");
    } catch (...) {
      destroy(op, la, lb, lc, pref);
      throw;
    }
    destroy(op, la, lb, lc, pref);
    return best;
  }

 private:
  static constexpr size_t kWorkspace = size_t(64) << 20;
  static void destroy(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                      cublasLtMatrixLayout_t lc, cublasLtMatmulPreference_t pref) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
  }
  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer<uint8_t> workspace_;
};
#endif

// ---- results -------------------------------------------------------------------------------------------

enum class Bound { TensorCore, Fp32, Memory };

struct Row {
  std::string part;     // mae | vqgan
  std::string name;     // the op and shape
  std::string variant;  // engine-bf16 | engine-fp32 | cublaslt-bf16>f32 | ...
  bool in_forward;      // an engine variant that the forward runs (counted in the breakdown)
  std::string precision;  // bf16 | fp32: which forward it belongs to
  double calls;         // per batch forward
  double flops, bytes;  // per call
  Bound bound;
  double ms = -1;       // per call; < 0 when failed
  std::string error;
  std::string note;
};

std::vector<Row> rows;
Ceilings ceil_;
int failures = 0;
std::string filter;

double bound_ms(const Row& r) {
  const double peak = r.bound == Bound::TensorCore ? ceil_.tc() : ceil_.fp32_tflops;
  const double t_compute = peak > 0 ? r.flops / (peak * 1e9) : 0.0;
  const double t_mem = ceil_.bw_gbs > 0 ? r.bytes / (ceil_.bw_gbs * 1e6) : 0.0;
  return r.bound == Bound::Memory ? std::max(t_mem, t_compute) : std::max(t_compute, t_mem);
}

void print_row(const Row& r) {
  if (r.ms < 0) {
    std::printf("%-44s %-20s FAILED: %s\n", r.name.c_str(), r.variant.c_str(), r.error.c_str());
    return;
  }
  const double tflops = r.flops / (r.ms * 1e9), gbs = r.bytes / (r.ms * 1e6);
  const double pct = 100.0 * bound_ms(r) / r.ms;
  std::printf("%-44s %-20s %9.4f %8.1f %8.0f %6.1f%% %6.0f %9.2f%s%s\n", r.name.c_str(), r.variant.c_str(), r.ms, tflops,
              gbs, pct, r.calls, r.ms * r.calls, r.note.empty() ? "" : "  ", r.note.c_str());
  std::fflush(stdout);
}

void measure(Row r, const std::function<double()>& timed) {
  if (!filter.empty() && (r.name + " " + r.variant).find(filter) == std::string::npos) return;
  try {
    r.ms = timed();
  } catch (const std::exception& e) {
    r.ms = -1;
    r.error = e.what();
    // An engine variant that fails is a bug; a cuBLASLt configuration this library version does not
    // support is only a missing comparison.
    if (r.variant.rfind("engine", 0) == 0) ++failures;
    cudaGetLastError();
  }
  print_row(r);
  rows.push_back(r);
}

void header(const char* title) {
  std::printf("\n== %s\n%-44s %-20s %9s %8s %8s %7s %6s %9s\n", title, "op / shape", "variant", "ms/call", "TFLOP/s",
              "GB/s", "%bound", "calls", "ms/batch");
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    o += c;
  }
  return o;
}

// ---- the benchmark ---------------------------------------------------------------------------------------

struct Options {
  int batch = 320;
  int vq_batch = 32;
  bool fp32 = true;
};

void measure_ceilings() {
  cudaDeviceProp prop{};
  VTV_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  DeviceBuffer<float> scratch(16);
  {
    const int64_t n4 = (int64_t(1) << 30) / 16;  // 1 GiB of float4 each way
    DeviceBuffer<float> src{size_t(n4) * 4}, dst{size_t(n4) * 4};
    fill(src.get(), n4 * 4, 1);
    const double ms = median_ms([&] {
      copy_kernel<<<sms * 8, 256>>>(reinterpret_cast<const float4*>(src.get()), reinterpret_cast<float4*>(dst.get()), n4);
    });
    ceil_.bw_gbs = 2.0 * double(n4) * 16 / (ms * 1e6);
  }
  {
    const int iters = 40000, blocks = sms * 8, threads = 256;
    const double ms = median_ms([&] { fma_peak_kernel<<<blocks, threads>>>(iters, scratch.get()); }, 5);
    ceil_.fp32_tflops = double(blocks) * threads * iters * kFmaChains * 2 / (ms * 1e9);
  }
  {
    const int iters = 20000, blocks = sms * 8, warps = 4;
    const double ms = median_ms([&] { mma_peak_kernel<<<blocks, warps * 32>>>(iters, scratch.get()); }, 5);
    ceil_.mma_tflops = double(blocks) * warps * iters * kMmaChains * (16.0 * 8 * 16 * 2) / (ms * 1e9);
  }
#ifdef VTV_WITH_CUBLASLT
  {
    const int64_t S = 8192;
    DeviceBuffer<uint16_t> a{size_t(S * S)}, b{size_t(S * S)}, c{size_t(S * S)};
    fill_bf16(a.get(), S * S, 2);
    fill_bf16(b.get(), S * S, 3);
    LtGemm lt;
    const double ms = lt.best_ms(a.get(), b.get(), nullptr, c.get(), true, S, S, S, false, false, nullptr);
    ceil_.lt_tflops = 2.0 * S * S * S / (ms * 1e9);
  }
#endif
  std::printf("ceilings (measured here): DRAM copy %.0f GB/s; fp32 FMA %.1f TFLOP/s; mma.sync bf16 %.1f TFLOP/s; ",
              ceil_.bw_gbs, ceil_.fp32_tflops, ceil_.mma_tflops);
  if (ceil_.lt_tflops > 0) std::printf("cuBLASLt bf16 8192^3 %.1f TFLOP/s\n", ceil_.lt_tflops);
  else std::printf("cuBLASLt not compiled in\n");
  std::printf("%%bound: tensor-core rows against %s, fp32 rows against the FMA peak, memory rows against the copy "
              "bandwidth (the larger of compute and memory time is the bound)\n",
              ceil_.lt_tflops > 0 ? "the cuBLASLt ceiling" : "the mma.sync ceiling");
}

struct GemmShape {
  const char* name;
  int64_t rows_per_sample;  // M = batch * rows_per_sample
  int64_t K, N;
  vtv::cuda::Epilogue epi;
  bool residual, argmax;
  int calls;  // per forward
};

void bench_mae(const Options& o) {
  using namespace vtv::cuda;
  const int64_t B = o.batch;
  const GemmShape shapes[] = {
      {"enc patch_embed", 49, 768, 1024, Epilogue::None, false, false, 1},
      {"enc qkv", 50, 1024, 3072, Epilogue::None, false, false, 24},
      {"enc proj +res", 50, 1024, 1024, Epilogue::None, true, false, 24},
      {"enc fc1 +gelu", 50, 1024, 4096, Epilogue::Gelu, false, false, 24},
      {"enc fc2 +res", 50, 4096, 1024, Epilogue::None, true, false, 24},
      {"decoder_embed", 50, 1024, 512, Epilogue::None, false, false, 1},
      {"dec qkv", 99, 512, 1536, Epilogue::None, false, false, 8},
      {"dec proj +res", 99, 512, 512, Epilogue::None, true, false, 8},
      {"dec fc1 +gelu", 99, 512, 2048, Epilogue::Gelu, false, false, 8},
      {"dec fc2 +res", 99, 2048, 512, Epilogue::None, true, false, 8},
      {"head +argmax", 98, 512, 1024, Epilogue::None, false, true, 1},
  };
  int64_t maxMK = 0, maxMN = 0, maxNK = 0, maxN = 0;
  for (const auto& s : shapes) {
    maxMK = std::max(maxMK, B * s.rows_per_sample * s.K);
    maxMN = std::max(maxMN, B * s.rows_per_sample * s.N);
    maxNK = std::max(maxNK, s.N * s.K);
    maxN = std::max(maxN, s.N);
  }
  DeviceBuffer<float> x{size_t(maxMK)}, y{size_t(maxMN)}, w32{size_t(maxNK)}, bias{size_t(maxN)};
  DeviceBuffer<uint16_t> w16{size_t(maxNK)}, x16{size_t(maxMK)}, y16{size_t(maxMN)}, bias16{size_t(maxN)};
  DeviceBuffer<unsigned long long> keys{size_t(B * 98)};
  fill(x.get(), maxMK, 11);
  fill(y.get(), maxMN, 12);
  fill(bias.get(), maxN, 13, 0.05f);
  f32_to_bf16(x.get(), maxMK, x16.get());
  f32_to_bf16(bias.get(), maxN, bias16.get());
  device_synchronize();
#ifdef VTV_WITH_CUBLASLT
  LtGemm lt;
#endif

  header(("MAE Linear layers, batch " + std::to_string(B)).c_str());
  for (const auto& s : shapes) {
    const int64_t M = B * s.rows_per_sample;
    const std::string name = std::string(s.name) + " M" + std::to_string(M) + " K" + std::to_string(s.K) + " N" +
                             std::to_string(s.N);
    fill(w32.get(), s.N * s.K, 14, 1.0f / std::sqrt(float(s.K)));
    f32_to_bf16(w32.get(), s.N * s.K, w16.get());
    device_synchronize();
    const double flops = 2.0 * M * s.N * s.K;
    for (int prec = 0; prec < (o.fp32 ? 2 : 1); ++prec) {
      const bool bf16 = prec == 0;
      // x in fp32 (as the engine stores activations), W in bf16 or fp32, y in fp32 (+ residual read).
      const double bytes = 4.0 * M * s.K + (bf16 ? 2.0 : 4.0) * s.N * s.K + (s.argmax ? 8.0 * M : 4.0 * M * s.N) +
                           (s.residual ? 4.0 * M * s.N : 0.0);
      Row r{"mae", name, bf16 ? "engine-bf16" : "engine-fp32", true, bf16 ? "bf16" : "fp32", double(s.calls), flops,
            bytes, bf16 ? Bound::TensorCore : Bound::Fp32};
      measure(r, [&] {
        LinearArgs a;
        a.x = x.get();
        a.M = M;
        a.K = s.K;
        a.N = s.N;
        if (bf16) a.w_bf16 = w16.get();
        else a.w_f32 = w32.get();
        a.bias = bias.get();
        a.y = s.argmax ? nullptr : y.get();
        a.epilogue = s.epi;
        a.residual = s.residual ? y.get() : nullptr;
        a.argmax_keys = s.argmax ? keys.get() : nullptr;
        return median_ms([&] {
          if (s.argmax) argmax_keys_reset(keys.get(), M);
          linear(a);
        });
      });
    }
#ifdef VTV_WITH_CUBLASLT
    for (int out_bf16 = 0; out_bf16 < 2; ++out_bf16) {
      const double bytes = 2.0 * M * s.K + 2.0 * s.N * s.K + (out_bf16 ? 2.0 : 4.0) * M * s.N * (s.residual ? 2 : 1);
      Row r{"mae", name, out_bf16 ? "cublaslt-bf16>bf16" : "cublaslt-bf16>f32", false, "bf16", double(s.calls), flops,
            bytes, Bound::TensorCore};
      int tried = 0;
      measure(r, [&] {
        const double ms = lt.best_ms(x16.get(), w16.get(), out_bf16 ? static_cast<const void*>(bias16.get()) : bias.get(),
                                     out_bf16 ? static_cast<void*>(y16.get()) : y.get(), out_bf16 != 0, M, s.N, s.K,
                                     s.epi == Epilogue::Gelu, s.residual, &tried);
        return ms;
      });
      if (!rows.empty() && rows.back().variant == r.variant && rows.back().name == name) {
        rows.back().note = "best of " + std::to_string(tried) + " algos; bf16 input" +
                           std::string(s.epi == Epilogue::Gelu ? ", tanh GELU" : "") + (s.argmax ? ", no argmax" : "");
      }
    }
#endif
  }

  // Attention and LayerNorm.
  header(("MAE attention and LayerNorm, batch " + std::to_string(B)).c_str());
  struct AttnShape {
    const char* name;
    int N, H, dh, calls;
  };
  const AttnShape attn[] = {{"enc attention N50 H16 dh64", 50, 16, 64, 24}, {"dec attention N99 H16 dh32", 99, 16, 32, 8}};
  for (const auto& s : attn) {
    const int64_t per = int64_t(s.N) * 3 * s.H * s.dh;
    DeviceBuffer<float> qkv{size_t(B * per)}, out{size_t(B) * s.N * s.H * s.dh}, means{size_t(197) * s.H * s.dh};
    fill(qkv.get(), B * per, 21);
    fill(means.get(), 197 * s.H * s.dh, 22, 0.5f);
    const int64_t mask_bytes = (int64_t(s.H) * s.N + 7) / 8;
    std::vector<uint8_t> host_mask(size_t(B * mask_bytes));
    uint64_t st = 12345;
    for (auto& m : host_mask) {
      uint8_t v = 0;
      for (int bit = 0; bit < 8; ++bit) {  // ~27% of bits set: REINFORCE's initial sigmoid(-1)
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        v |= uint8_t(((st >> 33) % 1000) < 269) << bit;
      }
      m = v;
    }
    DeviceBuffer<uint8_t> mask(host_mask);
    const double flops = 4.0 * B * s.H * double(s.N) * s.N * s.dh;
    const double bytes = 4.0 * B * per + 4.0 * B * s.N * s.H * s.dh;
    const float scale = 1.0f / std::sqrt(float(s.dh));
    for (int patched = 0; patched < 2; ++patched) {
      HeadPatch hp;
      hp.mask = mask.get();
      hp.mask_stride = mask_bytes;
      hp.bit_offset = 0;
      hp.means = means.get();
      hp.position_shift = vtv::kZeroShotShift;
      // The search always patches; the unpatched line shows what the patch costs or saves.
      Row r{"mae", s.name, patched ? "engine-f32 patched" : "engine-f32", patched == 1, "both", double(s.calls), flops,
            bytes, Bound::Memory};
      measure(r, [&] {
        return median_ms([&] { mha_attention(qkv.get(), B, s.N, s.H, s.dh, scale, out.get(), patched ? &hp : nullptr); });
      });
    }
  }
  struct LnShape {
    const char* name;
    int64_t rows_per_sample, C;
    int calls;
  };
  const LnShape lns[] = {{"enc layer_norm C1024", 50, 1024, 49}, {"dec layer_norm C512", 99, 512, 17}};
  for (const auto& s : lns) {
    const int64_t R = B * s.rows_per_sample;
    DeviceBuffer<float> xin{size_t(R * s.C)}, yout{size_t(R * s.C)}, g{size_t(s.C)}, be{size_t(s.C)};
    fill(xin.get(), R * s.C, 31);
    fill(g.get(), s.C, 32, 0.1f, 1.0f);
    fill(be.get(), s.C, 33, 0.1f);
    Row r{"mae", std::string(s.name) + " rows" + std::to_string(R), "engine-f32", true, "both", double(s.calls), 0.0,
          8.0 * R * s.C, Bound::Memory};
    measure(r, [&] {
      return median_ms([&] { layer_norm(xin.get(), R, int(s.C), g.get(), be.get(), 1e-6f, yout.get()); });
    });
  }
}

struct ConvShape {
  const char* name;
  int Ci, Co, H, k;  // H: input side (square)
  bool up2, gn_in, stats_out;
  int calls;         // per decode pass
};

void bench_vqgan(const Options& o) {
  using namespace vtv::cuda;
  const int64_t n = o.vq_batch;
  const double passes = std::ceil(double(o.batch) / double(n));
  const int groups = 32;
  const ConvShape convs[] = {
      {"conv_in 256>512 3x3 @14", 256, 512, 14, 3, false, false, true, 1},
      {"resnet conv 512>512 3x3 @14 gn", 512, 512, 14, 3, false, true, true, 10},
      {"attn qkv 1x1 512>1536 @14 gn", 512, 1536, 14, 1, false, true, false, 4},
      {"attn proj 1x1 512>512 @14", 512, 512, 14, 1, false, false, true, 4},
      {"upsample conv 512 3x3 @14>28", 512, 512, 14, 3, true, false, true, 1},
      {"resnet conv 512>256 3x3 @28 gn", 512, 256, 28, 3, false, true, true, 1},
      {"nin 1x1 512>256 @28", 512, 256, 28, 1, false, false, false, 1},
      {"resnet conv 256>256 3x3 @28 gn", 256, 256, 28, 3, false, true, true, 5},
      {"upsample conv 256 3x3 @28>56", 256, 256, 28, 3, true, false, true, 1},
      {"resnet conv 256>256 3x3 @56 gn", 256, 256, 56, 3, false, true, true, 6},
      {"upsample conv 256 3x3 @56>112", 256, 256, 56, 3, true, false, true, 1},
      {"resnet conv 256>128 3x3 @112 gn", 256, 128, 112, 3, false, true, true, 1},
      {"nin 1x1 256>128 @112", 256, 128, 112, 1, false, false, false, 1},
      {"resnet conv 128>128 3x3 @112 gn", 128, 128, 112, 3, false, true, true, 5},
      {"upsample conv 128 3x3 @112>224", 128, 128, 112, 3, true, false, true, 1},
      {"resnet conv 128>128 3x3 @224 gn", 128, 128, 224, 3, false, true, true, 6},
  };
  int64_t max_in = 0, max_out = 0, max_w = 0, max_co = 0, max_mk = 0, max_mn = 0;
  for (const auto& c : convs) {
    const int64_t Ho = c.up2 ? 2 * c.H : c.H;
    max_in = std::max(max_in, n * c.Ci * c.H * c.H);
    max_out = std::max(max_out, n * c.Co * Ho * Ho);
    max_w = std::max(max_w, int64_t(c.Co) * c.Ci * c.k * c.k);
    max_co = std::max<int64_t>(max_co, c.Co);
    max_mk = std::max(max_mk, n * Ho * Ho * c.Ci * c.k * c.k);
    max_mn = std::max(max_mn, n * Ho * Ho * c.Co);
  }
  max_in = std::max<int64_t>(max_in, n * 128 * 224 * 224);
  DeviceBuffer<float> x{size_t(max_in)}, y{size_t(max_out)}, w32{size_t(max_w)}, bias{size_t(max_co)};
  DeviceBuffer<float> gamma(512), beta(512);
  DeviceBuffer<uint16_t> w16{size_t(max_w)};
  DeviceBuffer<double> stats_in{size_t(n) * groups * 2}, stats_out{size_t(n) * groups * 2};
  fill(x.get(), max_in, 41);
  fill(bias.get(), max_co, 42, 0.05f);
  fill(gamma.get(), 512, 43, 0.1f, 1.0f);
  fill(beta.get(), 512, 44, 0.1f);
  device_synchronize();
  // GroupNorm statistics of the input as a producer would leave them: mean 0, variance 1 per group.
  auto set_stats = [&](int C, int64_t HW) {
    std::vector<double> s(size_t(n) * groups * 2);
    for (size_t i = 0; i < s.size(); i += 2) {
      s[i] = 0.0;
      s[i + 1] = double(C / groups) * double(HW);
    }
    stats_in.upload(s.data(), s.size());
  };
  GroupNormIn gn;
  gn.stats = stats_in.get();
  gn.gamma = gamma.get();
  gn.beta = beta.get();
  gn.groups = groups;
  gn.eps = 1e-6f;
  gn.swish = true;
#ifdef VTV_WITH_CUBLASLT
  LtGemm lt;
  DeviceBuffer<uint16_t> a16{size_t(max_mk)}, c16{size_t(max_mn)};
  fill_bf16(a16.get(), max_mk, 45);
#endif

  header(("VQGAN decoder convolutions, " + std::to_string(n) + " grids per pass, " + std::to_string(int(passes)) +
          " passes per batch")
             .c_str());
  for (const auto& c : convs) {
    const int64_t Ho = c.up2 ? 2 * c.H : c.H;
    const int64_t K = int64_t(c.Ci) * c.k * c.k;
    fill(w32.get(), int64_t(c.Co) * K, 46, 1.0f / std::sqrt(float(K)));
    f32_to_bf16(w32.get(), int64_t(c.Co) * K, w16.get());
    set_stats(c.Ci, int64_t(c.H) * c.H);
    device_synchronize();
    const double flops = 2.0 * n * Ho * Ho * double(c.Co) * K;
    const std::string name = c.name;
    for (int prec = 0; prec < (o.fp32 ? 2 : 1); ++prec) {
      const bool bf16 = prec == 0;
      const double bytes = 4.0 * n * c.Ci * c.H * c.H + (bf16 ? 2.0 : 4.0) * c.Co * K + 4.0 * n * c.Co * Ho * Ho;
      Row r{"vqgan", name, bf16 ? "engine-bf16" : "engine-fp32", true, bf16 ? "bf16" : "fp32", c.calls * passes, flops,
            bytes, bf16 ? Bound::TensorCore : Bound::Fp32};
      measure(r, [&] {
        ConvArgs a;
        a.x = x.get();
        a.N = n;
        a.Ci = c.Ci;
        a.H = c.H;
        a.W = c.H;
        a.upsample2x = c.up2;
        a.Co = c.Co;
        a.k = c.k;
        if (bf16) a.w_bf16 = w16.get();
        else a.w_f32 = w32.get();
        a.bias = bias.get();
        a.y = y.get();
        if (c.gn_in) a.norm = gn;
        if (c.stats_out) {
          a.stats_out = stats_out.get();
          a.stats_groups = groups;
        }
        return median_ms([&] { conv2d(a); });
      });
    }
#ifdef VTV_WITH_CUBLASLT
    {
      const int64_t M = n * Ho * Ho;
      const double bytes = 2.0 * M * K + 2.0 * c.Co * K + 2.0 * M * c.Co;
      Row r{"vqgan", name, "cublaslt-gemm-equiv", false, "bf16", c.calls * passes, flops, bytes, Bound::TensorCore};
      int tried = 0;
      measure(r, [&] {
        return lt.best_ms(a16.get(), w16.get(), nullptr, c16.get(), true, M, c.Co, K, false, false, &tried);
      });
      if (!rows.empty() && rows.back().name == name && rows.back().variant == r.variant) {
        rows.back().note = "plain GEMM of the same MxNxK, bf16 im2col operand precomputed (not timed), best of " +
                           std::to_string(tried) + " algos";
      }
    }
#endif
  }

  header("VQGAN attention and conv_out");
  {
    const int C = 512, HW = 196;
    DeviceBuffer<float> qkv{size_t(n) * 3 * C * HW}, out{size_t(n) * C * HW};
    fill(qkv.get(), n * 3 * C * HW, 51);
    Row r{"vqgan", "spatial_attention C512 HW196", "engine-f32", true, "both", 4 * passes,
          4.0 * n * double(HW) * HW * C, 4.0 * n * 4 * C * HW, Bound::Fp32};
    measure(r, [&] { return median_ms([&] { spatial_attention(qkv.get(), n, C, HW, out.get()); }); });
  }
  {
    const int Ci = 128, H = 224;
    DeviceBuffer<float> w{size_t(3) * Ci * 9}, b(3), pixels{size_t(n) * 3 * H * H};
    fill(w.get(), 3 * Ci * 9, 52, 1.0f / std::sqrt(float(Ci * 9)));
    fill(b.get(), 3, 53, 0.05f);
    set_stats(Ci, int64_t(H) * H);
    Row r{"vqgan", "conv_out 128>3 3x3 @224 gn+swish+clamp", "engine-f32", true, "both", passes,
          2.0 * n * H * H * 3.0 * Ci * 9, 4.0 * n * Ci * H * H + 4.0 * n * 3 * H * H, Bound::Fp32};
    measure(r, [&] { return median_ms([&] { conv_out_pixels(x.get(), n, Ci, H, H, gn, w.get(), b.get(), pixels.get()); }); });
  }
}

// Per precision: the forward's kernel time (sum of calls x ms of the engine variants) by part, against the
// sum of the bounds, and what cuBLASLt's GEMM would give in place of the engine's.
// Every registered variant (cuda/variants.h) on the model's shapes, as `vtv tune` times them: the rows
// above run what the dispatch picks with no tuning table (each family's default), so this is where the
// other variants (pipelined, wgmma, nhwc, the wgmma convs, the NHWC decoder's conv_nhwc family) are
// measured. Not in the breakdown.
void bench_registered_variants(const Options& o) {
  using namespace vtv::cuda;
  const int reps = std::max(3, std::min(g_reps, 5));
  std::printf("\n== registered kernel variants (vtv tune's timing: median of %d, after one warm-up)\n", reps);
  std::printf("%-10s %-40s %-12s %9s %8s\n", "family", "shape", "variant", "ms/call", "TFLOP/s");
  std::vector<KernelShape> shapes;
  for (const KernelShape& s : tuning_shapes("model", o.batch)) {
    if (s.family == KernelFamily::Gemm || s.family == KernelFamily::Conv3x3 || s.family == KernelFamily::ConvNhwc) {
      shapes.push_back(s);
    }
  }
  for (const VariantTiming& t : tune_kernels(shapes, reps)) {
    if (!filter.empty() && (t.shape + " " + t.variant).find(filter) == std::string::npos) continue;
    const char *f = t.family.c_str(), *sh = t.shape.c_str(), *v = t.variant.c_str();
    if (t.skipped.empty()) {
      std::printf("%-10s %-40s %-12s %9.4f %8.1f\n", f, sh, v, t.ms, t.tflops);
    } else {
      std::printf("%-10s %-40s %-12s not run: %s\n", f, sh, v, t.skipped.c_str());
    }
  }
}

void breakdown(const Options& o, std::string& json) {
  std::printf("\n== where a batch-%d forward's kernel time goes (sum over the kernels above; elementwise glue, "
              "host work and copies are not included: compare with bench_engine_gpu)\n",
              o.batch);
  json += "\"breakdown\":{";
  bool first_prec = true;
  for (const char* prec : {"bf16", "fp32"}) {
    double total = 0, bound_total = 0;
    std::vector<std::pair<std::string, double>> top;
    double part_ms[2] = {0, 0};
    for (const Row& r : rows) {
      if (!r.in_forward || r.ms < 0 || (r.precision != prec && r.precision != "both")) continue;
      const double ms = r.ms * r.calls;
      total += ms;
      bound_total += bound_ms(r) * r.calls;
      part_ms[r.part == "mae" ? 0 : 1] += ms;
      top.emplace_back(r.name, ms);
    }
    if (total <= 0) continue;
    std::sort(top.begin(), top.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    const double fps = o.batch / (total / 1000.0);
    std::printf("%s: %.1f ms per batch of %d (MAE %.1f, VQGAN %.1f) = %.0f forwards/s if nothing else ran; the "
                "bounds sum to %.1f ms (%.0f%% of the kernel time)\n",
                prec, total, o.batch, part_ms[0], part_ms[1], fps, bound_total, 100.0 * bound_total / total);
    std::printf("  largest: ");
    for (size_t i = 0; i < std::min<size_t>(6, top.size()); ++i) {
      std::printf("%s%s %.1f ms (%.0f%%)", i ? ", " : "", top[i].first.c_str(), top[i].second,
                  100.0 * top[i].second / total);
    }
    std::printf("\n");
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s\"%s\":{\"ms_per_batch\":%.3f,\"mae_ms\":%.3f,\"vqgan_ms\":%.3f,\"bound_ms\":%.3f}",
                  first_prec ? "" : ",", prec, total, part_ms[0], part_ms[1], bound_total);
    json += buf;
    first_prec = false;
  }
  json += "}";
#ifdef VTV_WITH_CUBLASLT
  double engine = 0, lt = 0;
  for (const Row& r : rows) {
    if (r.part != "mae" || r.ms < 0 || r.bound != Bound::TensorCore) continue;
    if (r.variant == "engine-bf16") engine += r.ms * r.calls;
    if (r.variant == "cublaslt-bf16>f32") lt += r.ms * r.calls;
  }
  if (engine > 0 && lt > 0) {
    std::printf("MAE Linear layers per batch: engine bf16 %.1f ms, cuBLASLt bf16>f32 %.1f ms (engine / cuBLASLt %.2fx)\n",
                engine, lt, engine / lt);
  }
  double ce = 0, cl = 0;
  for (const Row& r : rows) {
    if (r.part != "vqgan" || r.ms < 0) continue;
    if (r.variant == "engine-bf16") ce += r.ms * r.calls;
    if (r.variant == "cublaslt-gemm-equiv") cl += r.ms * r.calls;
  }
  if (ce > 0 && cl > 0) {
    std::printf("VQGAN convolutions per batch: engine bf16 implicit GEMM %.1f ms, cuBLASLt plain GEMM of the same sizes "
                "%.1f ms (%.2fx)\n",
                ce, cl, ce / cl);
  }
#endif
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_cuda_kernels: %s needs a value\n", a.c_str());
        std::exit(64);
      }
      return argv[++i];
    };
    if (a == "--batch") o.batch = std::atoi(next().c_str());
    else if (a == "--vq-batch") o.vq_batch = std::atoi(next().c_str());
    else if (a == "--reps") g_reps = std::atoi(next().c_str());
    else if (a == "--no-fp32") o.fp32 = false;
    else if (a == "--filter") filter = next();
    else {
      std::fprintf(stderr,
                   "usage: bench_cuda_kernels [--batch 320] [--vq-batch 32] [--reps 10] [--no-fp32] [--filter S]\n"
                   "unknown argument '%s'\n",
                   a.c_str());
      return 64;
    }
  }
  if (o.batch < 1 || o.vq_batch < 1 || g_reps < 1) {
    std::fprintf(stderr, "bench_cuda_kernels: --batch, --vq-batch and --reps must be >= 1\n");
    return 64;
  }
  const vtv::cuda::Probe p = vtv::cuda::probe();
  if (!p.usable) {
    std::printf("bench_cuda_kernels: no usable CUDA GPU (%s); nothing measured\n", p.detail.c_str());
    return 2;
  }
  std::printf("bench_cuda_kernels: %s; batch %d, decoder passes of %d grids, %d timed repeats (median), cuBLASLt %s\n",
              p.detail.c_str(), o.batch, o.vq_batch, g_reps,
#ifdef VTV_WITH_CUBLASLT
              "compiled in"
#else
              "not compiled in (the toolkit at build time had none)"
#endif
  );
  try {
    measure_ceilings();
    bench_mae(o);
    bench_vqgan(o);
    bench_registered_variants(o);
  } catch (const std::exception& e) {
    std::printf("bench_cuda_kernels: stopped: %s\n", e.what());
    ++failures;
  }
  std::string json = "{\"device\":\"" + json_escape(p.detail) + "\",\"batch\":" + std::to_string(o.batch) +
                      ",\"vq_batch\":" + std::to_string(o.vq_batch);
  char buf[256];
  std::snprintf(buf, sizeof buf, ",\"ceilings\":{\"bw_gbs\":%.1f,\"fp32_tflops\":%.2f,\"mma_tflops\":%.2f,\"cublaslt_tflops\":%.2f},",
                ceil_.bw_gbs, ceil_.fp32_tflops, ceil_.mma_tflops, ceil_.lt_tflops);
  json += buf;
  breakdown(o, json);
  json += ",\"rows\":[";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::snprintf(buf, sizeof buf, "%s{\"name\":\"%s\",\"variant\":\"%s\",\"ms\":%.5f,\"calls\":%.0f,\"tflops\":%.2f}",
                  i ? "," : "", json_escape(r.name).c_str(), json_escape(r.variant).c_str(), r.ms, r.calls,
                  r.ms > 0 ? r.flops / (r.ms * 1e9) : 0.0);
    json += buf;
  }
  json += "],\"failures\":" + std::to_string(failures) + "}";
  std::printf("VTV_JSON %s\n", json.c_str());
  return failures ? 1 : 0;
}
