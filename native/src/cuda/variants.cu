// The kernel variant registry (variants.h): the list of variants, the tuning table and the dispatch
// choice, and `vtv tune`'s timing loop with the tensor-core peak micro-kernel.
#include "cuda/variants.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>

#include <cuda_bf16.h>

#include "cuda/attention_variants.h"
#include "cuda/check.cuh"
#include "cuda/device_buffer.h"
#include "cuda/gemm_variants.h"
#include "cuda/conv_variants.h"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"
#include "cuda/mma_bf16.cuh"
#include "cuda/probe.h"
#include "cuda/vqgan_kernels.h"
#include "vtv/error.h"

namespace vtv::cuda {

const char* family_name(KernelFamily f) {
  switch (f) {
    case KernelFamily::Gemm: return "gemm";
    case KernelFamily::Conv3x3: return "conv3x3";
    case KernelFamily::ConvNhwc: return "conv_nhwc";
    case KernelFamily::Attention: return "attention";
    case KernelFamily::GroupNorm: return "groupnorm";
  }
  return "?";
}

namespace {

// Batch-like sizes are bucketed in the key (the next power of two), so a table tuned at one batch also
// serves the chunks and tails around it; the decoder's conv key leaves the sample count out (its chunks
// are at most 32 grids, and the per-sample shape decides the tiling).
int64_t bucket(int64_t v) {
  int64_t b = 1;
  while (b < v) b <<= 1;
  return b;
}

std::string gemm_unsupported_pipelined(const KernelShape& s) {
  if (!s.d[3]) return "needs the bf16 activations (x_bf16)";
  return "";
}
std::string gemm_unsupported_wgmma(const KernelShape& s) {
  const std::string why = gemm_wgmma_unavailable();
  if (!why.empty()) return why;
  if (!s.d[3]) return "needs the bf16 activations (x_bf16)";
  return "";
}
std::string gemm_unsupported_cublaslt(const KernelShape& s) {
  if (!cublaslt_unavailable().empty()) return cublaslt_unavailable();
  if (!s.d[3]) return "needs the bf16 activations (x_bf16)";
  return "";
}
std::string always(const KernelShape&) { return ""; }
std::string conv_nhwc_mma_sync_unsupported(const KernelShape&) {
  return nhwc_decoder_supported() ? "" : "needs cp.async (sm_80 or newer)";
}
std::string attention_unsupported(const KernelShape& s) {
  if (s.d[1] > 256) return "at most 256 tokens";
  if (s.d[3] != 8 && s.d[3] != 16 && s.d[3] != 32 && s.d[3] != 64) return "head_dim must be 8, 16, 32 or 64";
  return "";
}
// Both GroupNorm variants take what group_norm_nhwc accepts.
std::string group_norm_nhwc_unsupported(const KernelShape& s) {
  if (s.d[1] % 8 != 0) return "C must be a multiple of 8 (16-byte vectors)";
  if (s.d[1] > 512) return "C must be at most 512";
  return "";
}

std::mutex g_table_mutex;
std::map<std::string, std::string> g_table;
std::atomic<uint64_t> g_generation{0};
thread_local const KernelVariant* g_forced[kKernelFamilies] = {};
thread_local const char* g_last_run[kKernelFamilies] = {"", "", "", "", ""};
thread_local std::map<std::string, uint64_t> g_runs[kKernelFamilies];

}  // namespace

KernelShape gemm_shape(int64_t M, int64_t N, int64_t K, bool bf16_in) {
  KernelShape s;
  s.family = KernelFamily::Gemm;
  s.d[0] = M;
  s.d[1] = N;
  s.d[2] = K;
  s.d[3] = bf16_in ? 1 : 0;
  return s;
}
KernelShape conv3x3_shape(int64_t N, int64_t Ci, int64_t Co, int64_t H, int64_t W, bool up) {
  KernelShape s;
  s.family = KernelFamily::Conv3x3;
  s.d[0] = N;
  s.d[1] = Ci;
  s.d[2] = Co;
  s.d[3] = H;
  s.d[4] = W;
  s.d[5] = up ? 1 : 0;
  return s;
}
KernelShape conv_nhwc_shape(int64_t N, int64_t Ci, int64_t Co, int64_t H, int64_t W, bool up, int k) {
  KernelShape s = conv3x3_shape(N, Ci, Co, H, W, up);
  s.family = KernelFamily::ConvNhwc;
  s.d[6] = k;
  return s;
}
KernelShape attention_shape(int64_t B, int64_t tokens, int64_t heads, int64_t head_dim) {
  KernelShape s;
  s.family = KernelFamily::Attention;
  s.d[0] = B;
  s.d[1] = tokens;
  s.d[2] = heads;
  s.d[3] = head_dim;
  return s;
}
KernelShape group_norm_shape(int64_t N, int64_t C, int64_t HW, int64_t groups) {
  KernelShape s;
  s.family = KernelFamily::GroupNorm;
  s.d[0] = N;
  s.d[1] = C;
  s.d[2] = HW;
  s.d[3] = groups;
  return s;
}

std::string KernelShape::key() const {
  const auto S = [](int64_t v) { return std::to_string(v); };
  switch (family) {
    case KernelFamily::Gemm: return "gemm M" + S(bucket(d[0])) + " N" + S(d[1]) + " K" + S(d[2]);
    case KernelFamily::Conv3x3:
      return "conv3x3 Ci" + S(d[1]) + " Co" + S(d[2]) + " " + S(d[3]) + "x" + S(d[4]) + (d[5] ? " up2" : "");
    case KernelFamily::ConvNhwc:
      return "conv_nhwc " + S(d[6]) + "x" + S(d[6]) + " Ci" + S(d[1]) + " Co" + S(d[2]) + " " + S(d[3]) + "x" + S(d[4]) +
             (d[5] ? " up2" : "");
    case KernelFamily::Attention: return "attention B" + S(bucket(d[0])) + " T" + S(d[1]) + " H" + S(d[2]) + " d" + S(d[3]);
    case KernelFamily::GroupNorm: return "groupnorm N" + S(bucket(d[0])) + " C" + S(d[1]) + " HW" + S(d[2]) + " G" + S(d[3]);
  }
  return "?";
}

double KernelShape::flops() const {
  switch (family) {
    case KernelFamily::Gemm: return 2.0 * double(d[0]) * double(d[1]) * double(d[2]);
    case KernelFamily::Conv3x3: {
      const double ho = double(d[3] << d[5]), wo = double(d[4] << d[5]);
      return 2.0 * double(d[0]) * double(d[2]) * ho * wo * double(d[1]) * 9.0;
    }
    case KernelFamily::ConvNhwc: {
      const double ho = double(d[3] << d[5]), wo = double(d[4] << d[5]);
      return 2.0 * double(d[0]) * double(d[2]) * ho * wo * double(d[1]) * double(d[6] * d[6]);
    }
    case KernelFamily::Attention: return 4.0 * double(d[0]) * double(d[2]) * double(d[1]) * double(d[1]) * double(d[3]);
    case KernelFamily::GroupNorm: return 0.0;  // memory-bound: no TFLOP/s
  }
  return 0.0;
}

const std::vector<KernelVariant>& kernel_variants() {
  static const std::vector<KernelVariant> list = {
      {KernelFamily::Gemm, "baseline",
       "fp32 x rounded while staged, 128x128x32, 8 warps of 64x32, register double buffer, 32-bit fragment loads",
       always, true},
      {KernelFamily::Gemm, "pipelined", "bf16 x, 128x128x32, 4 warps of 64x64, 4-stage cp.async, ldmatrix",
       gemm_unsupported_pipelined, false},
      {KernelFamily::Gemm, "wgmma",
       "bf16 x, 128x128x32, 2 warpgroups of 64x128, 6-stage cp.async ring overlapping sm_90a wgmma.mma_async "
       "(wait_group 1)",
       gemm_unsupported_wgmma, false},
      {KernelFamily::Gemm, "cublaslt", "cublasLtMatmul (libcublasLt.so loaded at run time) + this package's epilogue",
       gemm_unsupported_cublaslt, false},
      {KernelFamily::Conv3x3, "baseline",
       "fp32 NCHW gathered per element, GroupNorm+SiLU per tap, 128x128x32 implicit GEMM, register double buffer",
       always, true},
      {KernelFamily::Conv3x3, "nhwc",
       "GroupNorm+SiLU once into bf16 NHWC, 16-byte cp.async row gathers, ldmatrix, 3-stage implicit GEMM",
       conv_nhwc_unsupported, false},
      {KernelFamily::Conv3x3, "wgmma",
       "nhwc's bf16 NHWC input and gathers, 2 warpgroups of 64x128, 6-stage ring with loads overlapping sm_90a "
       "wgmma.mma_async (wait_group 1)",
       conv_wgmma_unsupported, false},
      {KernelFamily::Conv3x3, "wgmma_n256",
       "wgmma with 128x256 block tiles (m64n256k16, 1 block per SM): fewer shared-memory bytes per FLOP",
       conv_wgmma_unsupported, false},
      {KernelFamily::ConvNhwc, "mma_sync",
       "bf16 NHWC in and out, 16-byte cp.async row gathers, ldmatrix, mma.sync 128x128x32, 3 stages",
       conv_nhwc_mma_sync_unsupported, true},
      {KernelFamily::ConvNhwc, "wgmma",
       "the same gathers into a 6-stage ring overlapping sm_90a wgmma.mma_async, 2 warpgroups of 64x128",
       conv_wgmma_unsupported, false},
      {KernelFamily::ConvNhwc, "wgmma_n256", "wgmma with 128x256 block tiles (m64n256k16, 1 block per SM)",
       conv_wgmma_unsupported, false},
      {KernelFamily::Attention, "baseline", "one block per (sample, head), fp32", attention_unsupported, true},
      {KernelFamily::Attention, "mma_sync",
       "one block per (sample, head), bf16 K/V in shared memory, warp per 16 queries, mma.sync QK^T and PV, "
       "fp32 softmax",
       attention_mma_unsupported, false},
      {KernelFamily::GroupNorm, "vec8",
       "bf16 NHWC GroupNorm(+SiLU) pass: 256 threads x 8 16-byte vectors of a flat chunk, scales and shifts "
       "in shared memory",
       group_norm_nhwc_unsupported, true},
      {KernelFamily::GroupNorm, "channel_regs",
       "bf16 NHWC GroupNorm(+SiLU) pass: (C/8) x k threads, each one 8-channel vector with its scales and "
       "shifts in registers, striding over pixels, 8 16-byte loads in flight",
       group_norm_nhwc_unsupported, false},
  };
  return list;
}

const KernelVariant* find_variant(KernelFamily f, const std::string& name) {
  for (const KernelVariant& v : kernel_variants()) {
    if (v.family == f && name == v.name) return &v;
  }
  return nullptr;
}

void set_tuning_table(const std::map<std::string, std::string>& winners) {
  std::lock_guard<std::mutex> lock(g_table_mutex);
  g_table = winners;
  ++g_generation;
}

std::map<std::string, std::string> tuning_table() {
  std::lock_guard<std::mutex> lock(g_table_mutex);
  return g_table;
}

uint64_t tuning_generation() { return g_generation.load(); }

const KernelVariant& choose_variant(const KernelShape& s) {
  const KernelVariant* forced = g_forced[static_cast<int>(s.family)];
  if (forced && forced->unsupported(s).empty()) return *forced;
  {
    std::lock_guard<std::mutex> lock(g_table_mutex);
    auto it = g_table.find(s.key());
    if (it != g_table.end()) {
      const KernelVariant* v = find_variant(s.family, it->second);
      if (v && v->unsupported(s).empty()) return *v;
    }
  }
  for (const KernelVariant& v : kernel_variants()) {
    if (v.family == s.family && v.is_default) return v;
  }
  throw Error(std::string("kernel variants: no default variant for ") + family_name(s.family));
}

void note_variant_run(KernelFamily family, const char* name) {
  g_last_run[static_cast<int>(family)] = name;
  ++g_runs[static_cast<int>(family)][name];
}

uint64_t variant_runs(KernelFamily family, const std::string& name) {
  const auto& m = g_runs[static_cast<int>(family)];
  auto it = m.find(name);
  return it == m.end() ? 0 : it->second;
}

std::string last_variant_run(KernelFamily family) { return g_last_run[static_cast<int>(family)]; }

ForceVariant::ForceVariant(KernelFamily family, const std::string& name) : family_(family) {
  const KernelVariant* v = find_variant(family, name);
  if (!v) throw Error(std::string("kernel variants: no ") + family_name(family) + " variant named '" + name + "'");
  previous_ = g_forced[static_cast<int>(family)];
  g_forced[static_cast<int>(family)] = v;
}

ForceVariant::~ForceVariant() { g_forced[static_cast<int>(family_)] = previous_; }

void prepare_kernel_variants() {
  gemm_pipelined_prepare();
  gemm_wgmma_prepare();
  conv_nhwc_prepare();
  conv_wgmma_prepare();
}

DeviceId current_device() {
  const Probe p = probe();
  if (!p.usable) throw Error("no usable CUDA GPU: " + p.detail);
  int dev = 0;
  VTV_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  VTV_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  DeviceId id;
  id.name = prop.name;
  id.major = prop.major;
  id.minor = prop.minor;
  id.emulated = p.emulated;
  return id;
}

std::vector<KernelShape> tuning_shapes(const std::string& set, int64_t batch) {
  check(batch > 0, "tuning shapes: batch must be positive, got " + std::to_string(batch));
  std::vector<KernelShape> s;
  if (set == "tiny") {
    // Every tail of the tiles (M, N, K not multiples of 128/128/32), one conv with and one without the
    // upsampling, for the emulator.
    s.push_back(gemm_shape(72, 96, 40, true));
    s.push_back(gemm_shape(130, 136, 64, true));
    s.push_back(conv3x3_shape(1, 32, 24, 6, 5, false));
    s.push_back(conv3x3_shape(1, 32, 16, 4, 4, true));
    s.push_back(conv_nhwc_shape(1, 32, 24, 6, 5, false, 3));
    s.push_back(conv_nhwc_shape(1, 32, 16, 4, 4, true, 3));
    s.push_back(conv_nhwc_shape(1, 64, 40, 5, 7, false, 1));
    s.push_back(attention_shape(2, 17, 2, 16));
    s.push_back(group_norm_shape(1, 32, 36, 8));
    s.push_back(group_norm_shape(2, 96, 35, 32));  // C / 8 = 12: channel_regs' block is 12 x 21
    return s;
  }
  check(set == "model", "tuning shapes: unknown set '" + set + "' (expected model or tiny)");
  // The MAE (ViT-L encoder 1024 wide, decoder 512 wide, MLP x4, vocabulary 1024) in zero-shot mode:
  // 50 encoder tokens (CLS + 49 query patches), 99 decoder tokens, 98 predicted rows.
  const int64_t E = 1024, D = 512, V = 1024, Ne = 50, Nd = 99;
  const int64_t me = batch * Ne, md = batch * Nd;
  for (const int64_t m : {me, md}) {
    const int64_t w = m == me ? E : D;
    s.push_back(gemm_shape(m, 3 * w, w, true));  // qkv
    s.push_back(gemm_shape(m, w, w, true));      // proj
    s.push_back(gemm_shape(m, 4 * w, w, true));  // fc1
    s.push_back(gemm_shape(m, w, 4 * w, true));  // fc2
  }
  s.push_back(gemm_shape(batch * (Ne - 1), E, 768, true));  // patch embedding
  s.push_back(gemm_shape(me, D, E, true));                  // decoder_embed
  s.push_back(gemm_shape(batch * (Nd - 1), V, D, true));    // prediction head
  // The VQGAN decoder's 3x3 convolutions (ch 128, ch_mult 1,1,2,2,4; 14x14 latents), per distinct
  // shape, at its chunk of 32 grids.
  const int64_t n = std::min<int64_t>(batch, 32);
  s.push_back(conv3x3_shape(n, 256, 512, 14, 14, false));
  s.push_back(conv3x3_shape(n, 512, 512, 14, 14, false));
  s.push_back(conv3x3_shape(n, 512, 512, 14, 14, true));
  s.push_back(conv3x3_shape(n, 512, 256, 28, 28, false));
  s.push_back(conv3x3_shape(n, 256, 256, 28, 28, false));
  s.push_back(conv3x3_shape(n, 256, 256, 28, 28, true));
  s.push_back(conv3x3_shape(n, 256, 256, 56, 56, false));
  s.push_back(conv3x3_shape(n, 256, 256, 56, 56, true));
  s.push_back(conv3x3_shape(n, 256, 128, 112, 112, false));
  s.push_back(conv3x3_shape(n, 128, 128, 112, 112, false));
  s.push_back(conv3x3_shape(n, 128, 128, 112, 112, true));
  s.push_back(conv3x3_shape(n, 128, 128, 224, 224, false));
  // The same decoder in the bf16 NHWC layout (conv2d_nhwc): its 3x3 convs, and the 1x1 convs (attention's
  // qkv and projection at 14x14, the two ResnetBlock shortcuts that change the width).
  for (const KernelShape& c : std::vector<KernelShape>(s.end() - 12, s.end())) {
    s.push_back(conv_nhwc_shape(c.d[0], c.d[1], c.d[2], c.d[3], c.d[4], c.d[5] != 0, 3));
  }
  s.push_back(conv_nhwc_shape(n, 512, 1536, 14, 14, false, 1));
  s.push_back(conv_nhwc_shape(n, 512, 512, 14, 14, false, 1));
  s.push_back(conv_nhwc_shape(n, 512, 256, 28, 28, false, 1));
  s.push_back(conv_nhwc_shape(n, 256, 128, 112, 112, false, 1));
  s.push_back(attention_shape(batch, Ne, 16, 64));
  s.push_back(attention_shape(batch, Nd, 16, 32));
  // The bf16 NHWC decoder's GroupNorm passes (group_norm_nhwc), per distinct (C, HW): each level's
  // ResnetBlock norms (the first block of a level normalises the wider input of the level above, at
  // this level's resolution), the 14x14 attention norms and norm_out (128 at 224x224).
  const int64_t gn[][2] = {{512, 14}, {512, 28}, {256, 28}, {256, 56}, {256, 112}, {128, 112}, {128, 224}};
  for (const auto& cr : gn) s.push_back(group_norm_shape(n, cr[0], cr[1] * cr[1], 32));
  return s;
}

namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

std::vector<uint16_t> bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &v[i], 4);
    u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even (finite inputs)
    out[i] = static_cast<uint16_t>(u >> 16);
  }
  return out;
}

// Median milliseconds of `reps` runs of `run` after one warm-up (which also surfaces argument errors).
template <class Run>
double time_ms(int reps, Run&& run) {
  run();
  VTV_CUDA_CHECK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  VTV_CUDA_CHECK(cudaEventCreate(&a));
  VTV_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    VTV_CUDA_CHECK(cudaEventRecord(a));
    run();
    VTV_CUDA_CHECK(cudaEventRecord(b));
    VTV_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    VTV_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// The inputs of one shape, on the device, and a call of the family's dispatcher on them. A conv call
// has what the decoder gives its convs (tap-major weights, a workspace), so that every conv variant can
// take it rather than fall back.
struct Problem {
  KernelShape s;
  DeviceBuffer<float> x, y, bias, gamma, beta, res;
  DeviceBuffer<uint16_t> x16, w16, taps, workspace, y16;
  DeviceBuffer<double> stats;

  explicit Problem(const KernelShape& shape) : s(shape) {
    const auto up = [](const std::vector<float>& v) { return DeviceBuffer<float>(v); };
    switch (s.family) {
      case KernelFamily::Gemm: {
        const size_t M = size_t(s.d[0]), N = size_t(s.d[1]), K = size_t(s.d[2]);
        const std::vector<float> xv = random_floats(M * K, 1, 1.0f);
        x = up(xv);
        x16 = DeviceBuffer<uint16_t>(bf16_bits(xv));
        w16 = DeviceBuffer<uint16_t>(bf16_bits(random_floats(N * K, 2, 1.0f / std::sqrt(float(K)))));
        bias = up(random_floats(N, 3, 0.1f));
        res = up(random_floats(M * N, 4, 1.0f));
        y = DeviceBuffer<float>(M * N);
        break;
      }
      case KernelFamily::Conv3x3: {
        const size_t Nn = size_t(s.d[0]), Ci = size_t(s.d[1]), Co = size_t(s.d[2]), HW = size_t(s.d[3] * s.d[4]);
        const size_t out = Nn * Co * (HW << (2 * s.d[5]));
        x = up(random_floats(Nn * Ci * HW, 1, 1.0f));
        w16 = DeviceBuffer<uint16_t>(bf16_bits(random_floats(Co * Ci * 9, 2, 1.0f / std::sqrt(float(Ci * 9)))));
        bias = up(random_floats(Co, 3, 0.05f));
        gamma = up(random_floats(Ci, 5, 0.1f));
        beta = up(random_floats(Ci, 6, 0.1f));
        y = DeviceBuffer<float>(out);
        // GroupNorm statistics of 32 groups (or fewer), as the producing conv leaves them: mean 0, var 1.
        const int G = int(std::min<int64_t>(32, s.d[1] / 8));
        std::vector<double> st(Nn * size_t(G) * 2);
        for (size_t i = 0; i < st.size(); i += 2) {
          st[i] = 0.0;
          st[i + 1] = double(Ci / size_t(G) * HW);
        }
        stats = DeviceBuffer<double>(st);
        taps = DeviceBuffer<uint16_t>(Co * 9 * Ci);
        conv_weights_to_taps(w16.get(), int(Co), int(Ci), taps.get());
        workspace = DeviceBuffer<uint16_t>((conv2d_workspace_bytes(conv_args()) + 1) / 2);
        break;
      }
      case KernelFamily::ConvNhwc: {
        const size_t Nn = size_t(s.d[0]), Ci = size_t(s.d[1]), Co = size_t(s.d[2]), HW = size_t(s.d[3] * s.d[4]);
        const size_t kk = size_t(s.d[6] * s.d[6]);
        x16 = DeviceBuffer<uint16_t>(bf16_bits(random_floats(Nn * HW * Ci, 1, 1.0f)));
        taps = DeviceBuffer<uint16_t>(bf16_bits(random_floats(Co * kk * Ci, 2, 1.0f / std::sqrt(float(Ci * kk)))));
        bias = up(random_floats(Co, 3, 0.05f));
        y16 = DeviceBuffer<uint16_t>(Nn * Co * (HW << (2 * s.d[5])));
        stats = DeviceBuffer<double>(Nn * 32 * 2);
        break;
      }
      case KernelFamily::Attention: {
        const size_t B = size_t(s.d[0]), T = size_t(s.d[1]), H = size_t(s.d[2]), dh = size_t(s.d[3]);
        x = up(random_floats(B * T * 3 * H * dh, 1, 1.0f));
        y = DeviceBuffer<float>(B * T * H * dh);
        break;
      }
      case KernelFamily::GroupNorm: {
        // The NHWC decoder's pass: bf16 NHWC in and out.
        const size_t Nn = size_t(s.d[0]), C = size_t(s.d[1]), HW = size_t(s.d[2]), G = size_t(s.d[3]);
        x16 = DeviceBuffer<uint16_t>(bf16_bits(random_floats(Nn * HW * C, 1, 1.0f)));
        y16 = DeviceBuffer<uint16_t>(Nn * HW * C);
        gamma = up(random_floats(C, 5, 0.1f));
        beta = up(random_floats(C, 6, 0.1f));
        std::vector<double> st(Nn * G * 2);
        for (size_t i = 0; i < st.size(); i += 2) {
          st[i] = 0.0;
          st[i + 1] = double(C / G * HW);
        }
        stats = DeviceBuffer<double>(st);
        break;
      }
    }
  }

  void run() {
    switch (s.family) {
      case KernelFamily::Gemm: {
        LinearArgs a;
        a.x = x.get();
        a.x_bf16 = x16.get();
        a.M = s.d[0];
        a.N = s.d[1];
        a.K = s.d[2];
        a.w_bf16 = w16.get();
        a.bias = bias.get();
        a.y = y.get();
        a.residual = res.get();
        linear_bf16(a, nullptr);
        break;
      }
      case KernelFamily::Conv3x3:
        conv2d(conv_args(), nullptr);
        break;
      case KernelFamily::ConvNhwc: {
        ConvNhwcArgs a;
        a.x = x16.get();
        a.N = s.d[0];
        a.Ci = int(s.d[1]);
        a.Co = int(s.d[2]);
        a.H = int(s.d[3]);
        a.W = int(s.d[4]);
        a.upsample2x = s.d[5] != 0;
        a.k = int(s.d[6]);
        a.w_taps = taps.get();
        a.bias = bias.get();
        a.y = y16.get();
        a.stats_out = stats.get();
        a.stats_groups = int(std::gcd<int64_t>(32, s.d[2]));
        conv2d_nhwc(a, nullptr);
        break;
      }
      case KernelFamily::Attention:
        mha_attention(x.get(), s.d[0], s.d[1], int(s.d[2]), int(s.d[3]), 0.125f, y.get(), nullptr, nullptr);
        break;
      case KernelFamily::GroupNorm:
        group_norm_nhwc(x16.get(), s.d[0], int(s.d[1]), s.d[2],
                        GroupNormIn{stats.get(), gamma.get(), beta.get(), int(s.d[3]), 1e-6f, true}, y16.get(), nullptr);
        break;
    }
  }

  ConvArgs conv_args() const {
    ConvArgs a;
    a.x = x.get();
    a.N = s.d[0];
    a.Ci = int(s.d[1]);
    a.Co = int(s.d[2]);
    a.H = int(s.d[3]);
    a.W = int(s.d[4]);
    a.upsample2x = s.d[5] != 0;
    a.k = 3;
    a.w_bf16 = w16.get();
    a.bias = bias.get();
    a.y = y.get();
    a.norm = GroupNormIn{stats.get(), gamma.get(), beta.get(), int(std::min<int64_t>(32, s.d[1] / 8)), 1e-6f, true};
    a.w_bf16_taps = taps.get();
    a.workspace = workspace.get();
    a.workspace_bytes = workspace.size() * sizeof(uint16_t);
    return a;
  }
};

}  // namespace

std::vector<VariantTiming> tune_kernels(const std::vector<KernelShape>& shapes, int reps) {
  check(reps > 0, "tune_kernels: reps must be positive, got " + std::to_string(reps));
  current_device();  // throws, saying why, without a usable device
  prepare_kernel_variants();
  std::vector<VariantTiming> rows;
  for (const KernelShape& s : shapes) {
    Problem p(s);
    for (const KernelVariant& v : kernel_variants()) {
      if (v.family != s.family) continue;
      VariantTiming t;
      t.family = family_name(s.family);
      t.shape = s.key();
      t.variant = v.name;
      t.skipped = v.unsupported(s);
      if (t.skipped.empty()) {
        ForceVariant force(s.family, v.name);
        t.ms = time_ms(reps, [&] { p.run(); });
        t.tflops = t.ms > 0 ? s.flops() / (t.ms * 1e-3) / 1e12 : 0.0;
        // The GEMM, conv, attention and GroupNorm dispatchers record what ran: a call that fell back timed
        // another kernel.
        const bool recorded = s.family == KernelFamily::Gemm || s.family == KernelFamily::Conv3x3 ||
                              s.family == KernelFamily::ConvNhwc || s.family == KernelFamily::Attention ||
                              s.family == KernelFamily::GroupNorm;
        if (recorded && last_variant_run(s.family) != v.name) {
          t.skipped = "the call fell back to " + last_variant_run(s.family);
          t.ms = t.tflops = 0.0;
        }
      }
      rows.push_back(t);
    }
  }
  return rows;
}

std::map<std::string, std::string> tuning_winners(const std::vector<VariantTiming>& rows) {
  std::map<std::string, std::string> best;
  std::map<std::string, double> best_ms;
  for (const VariantTiming& r : rows) {
    if (!r.skipped.empty()) continue;
    auto it = best_ms.find(r.shape);
    if (it == best_ms.end() || r.ms < it->second) {
      best_ms[r.shape] = r.ms;
      best[r.shape] = r.variant;
    }
  }
  return best;
}

namespace {

constexpr int kPeakThreads = 256, kPeakChains = 8;

// Independent mma.sync chains in registers: nothing but tensor-core issue. The operands are per-thread
// values the compiler cannot fold; the store after the loop keeps the chains alive.
__global__ void __launch_bounds__(kPeakThreads) mma_peak_kernel(float* out, int iters) {
  const uint32_t seed = threadIdx.x * 2654435761u;
  const uint32_t a[4] = {seed, seed ^ 0x3F803F80u, seed + 1u, seed ^ 0x3C003C00u};
  const uint32_t b[2] = {seed ^ 0x3F003F00u, seed + 7u};
  float acc[kPeakChains][4];
#pragma unroll
  for (int c = 0; c < kPeakChains; ++c)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[c][i] = 0.0f;
  for (int it = 0; it < iters; ++it) {
#pragma unroll
    for (int c = 0; c < kPeakChains; ++c) mma_bf16_16816(acc[c], a, b);
  }
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < kPeakChains; ++c) s += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
  out[blockIdx.x * kPeakThreads + threadIdx.x] = s;
}

}  // namespace

double measured_tensor_peak_tflops() {
  const DeviceId dev = current_device();
  int sms = 1;
  if (!dev.emulated) {
    int d = 0;
    VTV_CUDA_CHECK(cudaGetDevice(&d));
    VTV_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, d));
  }
  const int blocks = dev.emulated ? 1 : sms * 8, iters = dev.emulated ? 4 : 8192;
  DeviceBuffer<float> out(size_t(blocks) * kPeakThreads);
  const double ms = time_ms(dev.emulated ? 1 : 5, [&] {
    VTV_LAUNCH("mma_peak_kernel", static_cast<unsigned>(blocks), kPeakThreads, 0, nullptr, mma_peak_kernel, out.get(), iters);
  });
  const double flops = double(blocks) * (kPeakThreads / 32) * kPeakChains * double(iters) * (2.0 * 16 * 8 * 16);
  return ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0.0;
}

}  // namespace vtv::cuda
