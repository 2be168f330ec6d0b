// The kernel variant registry (cuda/variants.h): every registered variant of the bf16 GEMM and of the
// bf16 3x3 convolution against the CPU on the same small versions of the model's shapes (every tile
// tail, every epilogue), the tuning table's steering of the dispatch, and `vtv tune`'s timing loop on
// tiny shapes. A variant that cannot run on this machine (cuBLASLt without libcublasLt.so, and always on
// the CPU CUDA emulator) must say why, and the dispatch must then fall back to a variant that can.
// Skipped, with the reason, where no GPU is usable.
#include <gtest/gtest.h>

#include "cuda_test_util.h"

#ifdef VTV_WITH_CUDA
#include <cmath>
#include <cstring>
#include <set>

#include "cpu/conv.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cuda/device_buffer.h"
#include "cuda/kernels.h"
#include "cuda/variants.h"
#include "cuda/vqgan_kernels.h"
#include "cuda_conv_check.h"
#include "expect_error.h"
#include "vtv/error.h"

namespace vtv::test {
namespace {

using cuda::DeviceBuffer;
using cuda::KernelFamily;

std::vector<std::string> variant_names(KernelFamily f) {
  std::vector<std::string> out;
  for (const cuda::KernelVariant& v : cuda::kernel_variants()) {
    if (v.family == f) out.push_back(v.name);
  }
  return out;
}

// Every family's first variant is its default: "baseline" (its first kernel), except the bf16 NHWC
// decoder's families, which have no older kernel to keep: conv_nhwc's first is the mma.sync kernel, and
// groupnorm's the vec8 pass (group_norm_nhwc; the fp32 NCHW group_norm_apply is no variant).
const char* first_variant(KernelFamily f) {
  switch (f) {
    case KernelFamily::ConvNhwc: return "mma_sync";
    case KernelFamily::GroupNorm: return "vec8";
    default: return "baseline";
  }
}

TEST(CudaVariants, EveryFamilyHasOneDefaultBaselineAndUniqueNames) {
  for (KernelFamily f : {KernelFamily::Gemm, KernelFamily::Conv3x3, KernelFamily::ConvNhwc, KernelFamily::Attention,
                         KernelFamily::GroupNorm}) {
    const std::vector<std::string> names = variant_names(f);
    ASSERT_FALSE(names.empty()) << cuda::family_name(f);
    EXPECT_EQ(names.front(), first_variant(f)) << cuda::family_name(f);
    EXPECT_TRUE(cuda::find_variant(f, names.front())->is_default) << cuda::family_name(f);
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), names.size()) << cuda::family_name(f);
    int defaults = 0;
    for (const cuda::KernelVariant& v : cuda::kernel_variants()) defaults += v.family == f && v.is_default;
    EXPECT_EQ(defaults, 1) << cuda::family_name(f);
  }
  EXPECT_GE(variant_names(KernelFamily::Gemm).size(), 2u);
  EXPECT_GE(variant_names(KernelFamily::Conv3x3).size(), 2u);
  EXPECT_GE(variant_names(KernelFamily::ConvNhwc).size(), 2u);
  EXPECT_EQ(variant_names(KernelFamily::GroupNorm), (std::vector<std::string>{"vec8", "channel_regs"}));
  EXPECT_GE(variant_names(KernelFamily::Attention).size(), 2u);
}

// ---- GEMM: every variant on the MAE's Linears, small -----------------------------------------------

struct GemmCase {
  const char* name;
  int64_t M, K, N;
  bool gelu, residual, in_place, argmax_only, bf16_out;
};

// Small versions of qkv, proj (in-place residual), fc1 (GELU, bf16 copy for fc2), fc2, the prediction
// head (argmax only), and the tails of every tile dimension.
const GemmCase kGemmCases[] = {
    {"qkv", 150, 64, 192, false, false, false, false, false},
    {"proj (residual in place)", 150, 64, 64, false, true, true, false, false},
    {"fc1 (GELU, bf16 copy)", 150, 64, 256, true, false, false, false, true},
    {"fc2 (residual)", 150, 256, 64, false, true, false, false, false},
    {"head (argmax only)", 98, 64, 160, false, false, false, true, false},
    {"tails", 77, 40, 50, true, true, false, false, false},
};

void run_gemm_variant(const GemmCase& c, const std::string& variant) {
  SCOPED_TRACE(std::string(c.name) + " variant " + variant);
  const uint32_t seed = static_cast<uint32_t>(c.M * 31 + c.K * 7 + c.N);
  const std::vector<float> x = random_vector(size_t(c.M * c.K), seed);
  const std::vector<float> w = random_vector(size_t(c.N * c.K), seed + 1, 1.0f / std::sqrt(float(c.K)));
  const std::vector<float> bias = random_vector(size_t(c.N), seed + 2, 0.1f);
  const std::vector<float> res = random_vector(size_t(c.M * c.N), seed + 3);
  const std::vector<float> xr = rounded_bf16(x), wr = rounded_bf16(w);
  std::vector<float> ref = res;
  cpu::linear(pool(), xr.data(), c.M, c.K, wr.data(), bias.data(), c.N, ref.data(),
              c.gelu ? cpu::Epilogue::Gelu : cpu::Epilogue::None, c.residual ? ref.data() : nullptr);

  DeviceBuffer<float> dx(x), db(bias), dres(res), dy(size_t(c.M * c.N));
  DeviceBuffer<uint16_t> dx16(to_bf16_bits(x)), dw16(to_bf16_bits(w)), dy16(size_t(c.M * c.N));
  DeviceBuffer<unsigned long long> keys(size_t(c.M));
  cuda::LinearArgs a;
  a.x = dx.get();
  a.x_bf16 = dx16.get();
  a.M = c.M;
  a.K = c.K;
  a.N = c.N;
  a.w_bf16 = dw16.get();
  a.bias = db.get();
  a.epilogue = c.gelu ? cuda::Epilogue::Gelu : cuda::Epilogue::None;
  if (c.in_place) {
    dy.upload(res.data(), res.size());
    a.residual = dy.get();
  } else {
    dy.poison();
    a.residual = c.residual ? dres.get() : nullptr;
  }
  a.y = c.argmax_only ? nullptr : dy.get();
  if (c.bf16_out) {
    dy16.poison();
    a.y_bf16 = dy16.get();
  }
  if (c.argmax_only) {
    cuda::argmax_keys_reset(keys.get(), c.M);
    a.argmax_keys = keys.get();
  }
  {
    cuda::ForceVariant force(KernelFamily::Gemm, variant);
    cuda::linear(a);
  }
  const cuda::KernelVariant* var = cuda::find_variant(KernelFamily::Gemm, variant);
  if (var->unsupported(cuda::gemm_shape(c.M, c.N, c.K, true)).empty()) {
    EXPECT_EQ(cuda::last_variant_run(KernelFamily::Gemm), variant) << "the forced variant did not run";
  }
  cuda::device_synchronize();
  if (c.argmax_only) {
    DeviceBuffer<int32_t> idx(size_t(c.M));
    cuda::argmax_keys_to_index(keys.get(), c.M, idx.get());
    const std::vector<int32_t> got = idx.to_host(size_t(c.M));
    for (int64_t r = 0; r < c.M; ++r) {
      const float* lr = ref.data() + r * c.N;
      const int32_t g = got[size_t(r)];
      ASSERT_TRUE(g >= 0 && g < c.N) << "row " << r;
      const float best = *std::max_element(lr, lr + c.N);
      EXPECT_GE(lr[g], best - 1e-3f * std::fabs(best) - 1e-5f) << "row " << r << " picked column " << g;
    }
    return;
  }
  const std::vector<float> got = dy.to_host(size_t(c.M * c.N));
  const Diff d = compare(got, ref);
  EXPECT_EQ(d.nonfinite, 0) << "unwritten outputs, first at " << d.first_nonfinite;
  EXPECT_LE(d.rel, 1e-3) << describe(d);
  if (c.bf16_out) {
    const std::vector<uint16_t> got16 = dy16.to_host(size_t(c.M * c.N));
    const std::vector<uint16_t> want16 = to_bf16_bits(got);
    int64_t differ = 0;
    for (size_t i = 0; i < got16.size(); ++i) differ += got16[i] != want16[i];
    EXPECT_EQ(differ, 0) << "the bf16 copy is not y rounded to nearest even";
  }
}

TEST(CudaVariants, EveryGemmVariantMatchesCpuOnTheMaeShapes) {
  VTV_REQUIRE_GPU();
  cuda::prepare_kernel_variants();  // the device probes (wgmma) run here, before any variant is asked
  for (const std::string& v : variant_names(KernelFamily::Gemm)) {
    const cuda::KernelVariant* var = cuda::find_variant(KernelFamily::Gemm, v);
    const std::string why = var->unsupported(cuda::gemm_shape(64, 64, 64, true));
    if (!why.empty()) {
      // Not runnable here: it says why, and a call forced to it runs a variant that can.
      std::printf("gemm variant %s not runnable here: %s\n", v.c_str(), why.c_str());
      EXPECT_TRUE(v == "cublaslt" || (v == "wgmma" && !cuda::probe().emulated))
          << "only cuBLASLt, and wgmma off sm_90a, may depend on the machine";
    }
    for (const GemmCase& c : kGemmCases) run_gemm_variant(c, v);
  }
}

TEST(CudaVariants, PipelinedGemmReadsOnlyTheBf16Activations) {
  VTV_REQUIRE_GPU();
  // With x unset, the call must run a variant that reads x_bf16 (and gets the same result).
  const int64_t M = 40, K = 32, N = 24;
  const std::vector<float> x = random_vector(size_t(M * K), 5), w = random_vector(size_t(N * K), 6, 0.2f);
  std::vector<float> ref(size_t(M * N));
  cpu::linear(pool(), rounded_bf16(x).data(), M, K, rounded_bf16(w).data(), nullptr, N, ref.data());
  DeviceBuffer<uint16_t> dx16(to_bf16_bits(x)), dw16(to_bf16_bits(w));
  DeviceBuffer<float> dy(size_t(M * N));
  dy.poison();
  cuda::LinearArgs a;
  a.x_bf16 = dx16.get();
  a.M = M;
  a.K = K;
  a.N = N;
  a.w_bf16 = dw16.get();
  a.y = dy.get();
  cuda::linear(a);  // the table says nothing: the default (baseline) cannot read bf16, so pipelined runs
  EXPECT_EQ(cuda::last_variant_run(KernelFamily::Gemm), "pipelined");
  const Diff d = compare(dy.to_host(size_t(M * N)), ref);
  EXPECT_LE(d.rel, 1e-3) << describe(d);
  cuda::LinearArgs f = a;
  f.w_bf16 = nullptr;
  f.w_f32 = reinterpret_cast<const float*>(dw16.get());
  EXPECT_THROW(cuda::linear(f), Error) << "the fp32 path needs x";
}

// ---- the 3x3 convolution: every variant on the decoder's shapes, small ----------------------------

struct ConvVariantCase {
  const char* name;
  int N, Ci, Co, H, W;
  bool up, gn, residual, stats, taps;
};

const ConvVariantCase kConvCases[] = {
    {"resnet conv (GN+SiLU, residual, stats)", 2, 32, 40, 6, 5, false, true, true, true, true},
    {"upsample conv (x2, stats)", 1, 64, 32, 4, 3, true, false, false, true, false},
    {"GN+SiLU, ragged map", 1, 32, 16, 7, 9, false, true, false, false, false},
    // Two channel tiles and two pixel tiles, both partial (136 = 128 + 8 channels, 143 = 128 + 15 pixels).
    {"partial tiles both ways (GN+SiLU, stats)", 1, 32, 136, 13, 11, false, true, false, true, false},
    // 16 x 34 = 544 output pixels: three pixel tiles of 256 and five of 128, the last ones partial.
    {"more than 256 pixels (upsampled, GN+SiLU)", 1, 32, 24, 8, 17, true, true, false, true, false},
};

void run_conv_variant(const ConvVariantCase& cc, const std::string& variant) {
  SCOPED_TRACE(std::string(cc.name) + " variant " + variant);
  const int64_t HW = int64_t(cc.H) * cc.W, Ho = cc.up ? 2 * cc.H : cc.H, Wo = cc.up ? 2 * cc.W : cc.W;
  const int64_t out_n = cc.N * cc.Co * Ho * Wo, K = int64_t(cc.Ci) * 9;
  const int groups = 8;
  std::vector<float> x = random_vector(size_t(cc.N * cc.Ci * HW), 21, 1.0f, 0.3f);
  std::vector<float> w = random_vector(size_t(cc.Co * K), 22, 1.0f / std::sqrt(float(K)));
  std::vector<float> b = random_vector(size_t(cc.Co), 23, 0.05f);
  std::vector<float> gamma = random_vector(size_t(cc.Ci), 24, 0.1f, 1.0f), beta = random_vector(size_t(cc.Ci), 25, 0.1f);
  std::vector<float> res = random_vector(size_t(out_n), 26);
  const float eps = 1e-6f;
  std::vector<float> xin = x;
  if (cc.gn) cpu::group_norm(pool(), x.data(), cc.N, cc.Ci, HW, groups, eps, gamma.data(), beta.data(), true, xin.data());
  xin = rounded_bf16(xin);
  const std::vector<float> wref = rounded_bf16(w);
  cpu::Conv2dShape s;
  s.N = cc.N;
  s.Ci = cc.Ci;
  s.Co = cc.Co;
  s.H = cc.H;
  s.W = cc.W;
  s.k = 3;
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = 1;
  s.upsample2x = cc.up;
  std::vector<float> ref(static_cast<size_t>(out_n));
  cpu::conv2d(pool(), s, xin.data(), wref.data(), b.data(), ref.data(), cc.residual ? res.data() : nullptr);

  DeviceBuffer<float> dx(x), db(b), dg(gamma), dbe(beta), dy(static_cast<size_t>(out_n));
  DeviceBuffer<uint16_t> dw16(to_bf16_bits(w)), taps(size_t(cc.Co * K));
  DeviceBuffer<double> dstats(group_sums(x, cc.N, cc.Ci, HW, groups)), sout(size_t(cc.N) * groups * 2);
  if (cc.residual) dy.upload(res.data(), res.size());
  else dy.poison();
  cuda::ConvArgs a;
  a.x = dx.get();
  a.N = cc.N;
  a.Ci = cc.Ci;
  a.H = cc.H;
  a.W = cc.W;
  a.upsample2x = cc.up;
  a.Co = cc.Co;
  a.k = 3;
  a.w_bf16 = dw16.get();
  a.bias = db.get();
  a.residual = cc.residual ? dy.get() : nullptr;
  a.y = dy.get();
  if (cc.gn) a.norm = cuda::GroupNormIn{dstats.get(), dg.get(), dbe.get(), groups, eps, true};
  if (cc.stats) {
    a.stats_out = sout.get();
    a.stats_groups = groups;
  }
  if (cc.taps) {
    cuda::conv_weights_to_taps(dw16.get(), cc.Co, cc.Ci, taps.get());
    a.w_bf16_taps = taps.get();
  }
  DeviceBuffer<uint16_t> ws((cuda::conv2d_workspace_bytes(a) + 1) / 2);
  ws.poison();
  a.workspace = ws.get();
  a.workspace_bytes = ws.size() * sizeof(uint16_t);
  cuda::ForceVariant force(KernelFamily::Conv3x3, variant);
  check_conv_output(a, Ho, Wo, ref, true, cc.name, std::string("conv variant ") + variant + " " + cc.name, 27, eps);
  const cuda::KernelVariant* var = cuda::find_variant(KernelFamily::Conv3x3, variant);
  if (var->unsupported(cuda::conv3x3_shape(cc.N, cc.Ci, cc.Co, cc.H, cc.W, cc.up)).empty()) {
    EXPECT_EQ(cuda::last_variant_run(KernelFamily::Conv3x3), variant) << "the forced variant did not run";
  } else {
    EXPECT_EQ(cuda::last_variant_run(KernelFamily::Conv3x3), "baseline") << "a variant that cannot run falls back";
  }
}

TEST(CudaVariants, EveryConvVariantMatchesCpuOnTheDecoderShapes) {
  VTV_REQUIRE_GPU();
  cuda::prepare_kernel_variants();  // the device probes (wgmma) run here, before any variant is asked
  for (const std::string& v : variant_names(KernelFamily::Conv3x3)) {
    const std::string why = cuda::find_variant(KernelFamily::Conv3x3, v)->unsupported(cuda::conv3x3_shape(1, 32, 16, 8, 8, false));
    if (!why.empty()) {
      // Not runnable here: it says why, and a call forced to it runs the baseline.
      std::printf("conv3x3 variant %s not runnable here: %s\n", v.c_str(), why.c_str());
      EXPECT_TRUE(v.rfind("wgmma", 0) == 0 && !cuda::probe().emulated) << "only wgmma off sm_90a may depend on the machine";
    }
    for (const ConvVariantCase& c : kConvCases) run_conv_variant(c, v);
  }
}

// A 1x1 convolution is not a 3x3 family call: forced to any 3x3 variant it still runs the baseline's
// 1x1 kernel, matches the CPU, and records no 3x3 run.
TEST(CudaVariants, OneByOneConvsStayOnTheBaselineUnderEveryConvVariant) {
  VTV_REQUIRE_GPU();
  cuda::prepare_kernel_variants();
  const int N = 1, Ci = 64, Co = 40, H = 5, W = 7;
  const int64_t HW = int64_t(H) * W;
  const std::vector<float> x = random_vector(size_t(N * Ci * HW), 31), w = random_vector(size_t(Co * Ci), 32, 0.125f);
  const std::vector<float> b = random_vector(size_t(Co), 33, 0.05f);
  cpu::Conv2dShape s;
  s.N = N;
  s.Ci = Ci;
  s.Co = Co;
  s.H = H;
  s.W = W;
  s.k = 1;
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = 0;
  std::vector<float> ref(size_t(N * Co * HW));
  cpu::conv2d(pool(), s, rounded_bf16(x).data(), rounded_bf16(w).data(), b.data(), ref.data(), nullptr);
  DeviceBuffer<float> dx(x), db(b), dy(ref.size());
  DeviceBuffer<uint16_t> dw16(to_bf16_bits(w));
  for (const std::string& v : variant_names(KernelFamily::Conv3x3)) {
    SCOPED_TRACE("conv3x3 variant " + v);
    cuda::ForceVariant force(KernelFamily::Conv3x3, v);
    cuda::ConvArgs a;
    a.x = dx.get();
    a.N = N;
    a.Ci = Ci;
    a.H = H;
    a.W = W;
    a.Co = Co;
    a.k = 1;
    a.w_bf16 = dw16.get();
    a.bias = db.get();
    a.y = dy.get();
    dy.poison();
    const uint64_t runs = cuda::variant_runs(KernelFamily::Conv3x3, v);
    cuda::conv2d(a);
    EXPECT_EQ(cuda::variant_runs(KernelFamily::Conv3x3, v), runs) << "a 1x1 conv was counted as a 3x3 run";
    const Diff d = compare(dy.to_host(ref.size()), ref);
    EXPECT_EQ(d.nonfinite, 0) << describe(d);
    EXPECT_LE(d.rel, 1e-3) << describe(d);
  }
}

// ---- the bf16 NHWC decoder's convolutions: every conv_nhwc variant ------------------------------------

struct ConvNhwcCase {
  const char* name;
  int N, Ci, Co, H, W, k;
  bool up, residual, stats;
};

const ConvNhwcCase kConvNhwcCases[] = {
    {"resnet conv2 (residual, stats)", 2, 32, 40, 6, 5, 3, false, true, true},
    {"upsample conv (x2, stats)", 1, 64, 32, 4, 3, 3, true, false, true},
    // K = 72 and 144: k tiles that cross taps and a last k tile that is partial.
    {"8 channels in (the tiny model's widths)", 1, 8, 16, 7, 9, 3, false, false, true},
    {"16 channels in, upsampled", 1, 16, 8, 5, 6, 3, true, true, false},
    // Two channel tiles and two pixel tiles, both partial (136 = 128 + 8 channels, 143 = 128 + 15 pixels).
    {"partial tiles both ways (stats)", 1, 32, 136, 13, 11, 3, false, false, true},
    // 16 x 34 = 544 output pixels: three pixel tiles of 256 and five of 128, the last ones partial.
    {"more than 256 pixels (upsampled)", 1, 32, 24, 8, 17, 3, true, false, true},
    {"1x1, attention's qkv (K = 48 < 2 k tiles)", 2, 48, 144, 5, 7, 1, false, false, false},
    {"1x1, attention's projection (residual, stats)", 1, 64, 64, 4, 4, 1, false, true, true},
};

// conv2d_nhwc forced to `variant` against cpu::conv2d on the same bf16 values: every output within its
// bf16 rounding (2^-8 relative) plus 1e-4 of the fp32 sum, and the statistics exactly those of the stored
// bf16 values (up to the order of the double sums).
void run_conv_nhwc_variant(const ConvNhwcCase& cc, const std::string& variant) {
  SCOPED_TRACE(std::string(cc.name) + " conv_nhwc variant " + variant);
  const int64_t HW = int64_t(cc.H) * cc.W, Ho = cc.up ? 2 * cc.H : cc.H, Wo = cc.up ? 2 * cc.W : cc.W;
  const int64_t P = Ho * Wo, out_n = cc.N * cc.Co * P, K = int64_t(cc.Ci) * cc.k * cc.k;
  const int groups = 8;
  const std::vector<float> x = rounded_bf16(random_vector(size_t(cc.N * cc.Ci * HW), 41, 1.0f, 0.3f));
  const std::vector<float> w = rounded_bf16(random_vector(size_t(cc.Co * K), 42, 1.0f / std::sqrt(float(K))));
  const std::vector<float> b = random_vector(size_t(cc.Co), 43, 0.05f);
  const std::vector<float> res = rounded_bf16(random_vector(size_t(out_n), 44));
  cpu::Conv2dShape s;
  s.N = cc.N;
  s.Ci = cc.Ci;
  s.Co = cc.Co;
  s.H = cc.H;
  s.W = cc.W;
  s.k = cc.k;
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = cc.k / 2;
  s.upsample2x = cc.up;
  std::vector<float> ref(static_cast<size_t>(out_n));
  cpu::conv2d(pool(), s, x.data(), w.data(), b.data(), ref.data(), cc.residual ? res.data() : nullptr);

  // Tap-major weights [Co][ky][kx][Ci] (a 1x1 conv's [Co][Ci] as is).
  std::vector<float> taps(w.size());
  for (int64_t co = 0; co < cc.Co; ++co)
    for (int64_t ci = 0; ci < cc.Ci; ++ci)
      for (int64_t t = 0; t < cc.k * cc.k; ++t) taps[size_t((co * cc.k * cc.k + t) * cc.Ci + ci)] = w[size_t((co * cc.Ci + ci) * cc.k * cc.k + t)];
  DeviceBuffer<uint16_t> dx(to_bf16_bits(to_nhwc(x, cc.N, cc.Ci, HW))), dtaps(to_bf16_bits(taps));
  DeviceBuffer<uint16_t> dy(static_cast<size_t>(out_n));
  if (cc.residual) dy.upload(to_bf16_bits(to_nhwc(res, cc.N, cc.Co, P)).data(), size_t(out_n));
  else dy.poison();
  DeviceBuffer<float> db(b);
  DeviceBuffer<double> sout(size_t(cc.N) * groups * 2);
  sout.poison();
  cuda::ConvNhwcArgs a;
  a.x = dx.get();
  a.N = cc.N;
  a.Ci = cc.Ci;
  a.H = cc.H;
  a.W = cc.W;
  a.upsample2x = cc.up;
  a.Co = cc.Co;
  a.k = cc.k;
  a.w_taps = dtaps.get();
  a.bias = db.get();
  a.residual = cc.residual ? dy.get() : nullptr;
  a.y = dy.get();
  if (cc.stats) {
    a.stats_out = sout.get();
    a.stats_groups = groups;
  }
  cuda::ForceVariant force(KernelFamily::ConvNhwc, variant);
  cuda::conv2d_nhwc(a);
  const cuda::KernelVariant* var = cuda::find_variant(KernelFamily::ConvNhwc, variant);
  const cuda::KernelShape shape = cuda::conv_nhwc_shape(cc.N, cc.Ci, cc.Co, cc.H, cc.W, cc.up, cc.k);
  EXPECT_EQ(cuda::last_variant_run(KernelFamily::ConvNhwc), var->unsupported(shape).empty() ? variant : "mma_sync")
      << "a forced variant runs when it can, else the default";
  const std::vector<float> got = to_nchw(bf16_to_floats(dy.to_host(size_t(out_n))), cc.N, cc.Co, P);
  int64_t bad = 0, first_bad = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - ref[i]) <= std::ldexp(std::fabs(ref[i]), -8) + 1e-4f)) {
      if (first_bad < 0) first_bad = int64_t(i);
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << "outputs outside bf16 rounding of the CPU's; first at " << first_bad << ": got "
                    << (first_bad >= 0 ? got[size_t(first_bad)] : 0.0f) << " ref " << (first_bad >= 0 ? ref[size_t(first_bad)] : 0.0f)
                    << "; " << describe(compare(got, ref));
  if (cc.stats) {
    const std::vector<double> want = group_sums(got, cc.N, cc.Co, P, groups), have = sout.to_host(want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(have[i], want[i], 1e-9 * (std::fabs(want[i]) + double(P) * cc.Co / groups)) << "statistic " << i;
    }
  }
}

TEST(CudaVariants, EveryConvNhwcVariantMatchesCpuOn3x3And1x1) {
  VTV_REQUIRE_GPU();
  cuda::prepare_kernel_variants();
  ASSERT_TRUE(cuda::nhwc_decoder_supported()) << "every device this build targets (sm_80+) runs the NHWC convs";
  const std::vector<std::string> names = variant_names(KernelFamily::ConvNhwc);
  EXPECT_GE(names.size(), 2u);
  for (const std::string& v : names) {
    const std::string why = cuda::find_variant(KernelFamily::ConvNhwc, v)->unsupported(cuda::conv_nhwc_shape(1, 32, 16, 8, 8, false, 3));
    if (!why.empty()) {
      std::printf("conv_nhwc variant %s not runnable here: %s\n", v.c_str(), why.c_str());
      EXPECT_TRUE(v.rfind("wgmma", 0) == 0 && !cuda::probe().emulated) << "only wgmma off sm_90a may depend on the machine";
    }
    for (const ConvNhwcCase& c : kConvNhwcCases) run_conv_nhwc_variant(c, v);
  }
}

TEST(CudaVariants, ConvNhwcRejectsBadArguments) {
  VTV_REQUIRE_GPU();
  DeviceBuffer<uint16_t> x(64 * 16), w(16 * 9 * 16), y(64 * 16 + 8);
  DeviceBuffer<float> b(16);
  cuda::ConvNhwcArgs a;
  a.x = x.get();
  a.N = 1;
  a.Ci = 16;
  a.H = a.W = 8;
  a.Co = 16;
  a.w_taps = w.get();
  a.bias = b.get();
  a.y = y.get();
  cuda::ConvNhwcArgs bad = a;
  bad.Ci = 12;
  expect_error([&] { cuda::conv2d_nhwc(bad); }, {"Ci must be a multiple of 8"});
  bad = a;
  bad.k = 5;
  expect_error([&] { cuda::conv2d_nhwc(bad); }, {"kernel size must be 1 or 3"});
  bad = a;
  bad.y = y.get() + 1;
  expect_error([&] { cuda::conv2d_nhwc(bad); }, {"16-byte aligned"});
  bad = a;
  bad.stats_out = reinterpret_cast<double*>(x.get());
  bad.stats_groups = 3;
  expect_error([&] { cuda::conv2d_nhwc(bad); }, {"not a multiple of stats_groups"});
  bad = a;
  bad.bias = nullptr;
  expect_error([&] { cuda::conv2d_nhwc(bad); }, {"must be set"});
}

// ---- the tuning table and `vtv tune` ----------------------------------------------------------------

TEST(CudaVariants, TheTuningTableSteersTheDispatchAndFallsBack) {
  const cuda::KernelShape bf16_in = cuda::gemm_shape(300, 96, 64, true), f32_in = cuda::gemm_shape(300, 96, 64, false);
  EXPECT_EQ(bf16_in.key(), "gemm M512 N96 K64");  // M bucketed to the next power of two
  EXPECT_EQ(bf16_in.key(), f32_in.key());
  EXPECT_EQ(std::string(cuda::choose_variant(bf16_in).name), "baseline");
  const uint64_t gen = cuda::tuning_generation();
  cuda::set_tuning_table({{bf16_in.key(), "pipelined"}, {"conv3x3 Ci32 Co16 8x8", "no-such-variant"}});
  EXPECT_GT(cuda::tuning_generation(), gen);
  EXPECT_EQ(std::string(cuda::choose_variant(bf16_in).name), "pipelined");
  EXPECT_EQ(std::string(cuda::choose_variant(f32_in).name), "baseline") << "pipelined cannot read fp32 activations";
  EXPECT_EQ(std::string(cuda::choose_variant(cuda::conv3x3_shape(4, 32, 16, 8, 8, false)).name), "baseline");
  {
    cuda::ForceVariant force(KernelFamily::Gemm, "baseline");
    EXPECT_EQ(std::string(cuda::choose_variant(bf16_in).name), "baseline");
  }
  EXPECT_EQ(std::string(cuda::choose_variant(bf16_in).name), "pipelined");
  EXPECT_THROW(cuda::ForceVariant(KernelFamily::Gemm, "no-such-variant"), Error);
  cuda::set_tuning_table({});
  EXPECT_EQ(std::string(cuda::choose_variant(bf16_in).name), "baseline");
}

// The GroupNorm pass (group_norm_nhwc) runs the table's variant, and the default without an entry.
TEST(CudaVariants, TheTuningTableSteersTheGroupNormPass) {
  VTV_REQUIRE_GPU();
  const int64_t N = 2, HW = 9;
  const int C = 64, G = 32;
  DeviceBuffer<double> dst(std::vector<double>(size_t(N) * G * 2, 1.0));
  DeviceBuffer<float> dg(std::vector<float>(C, 1.0f)), dbe(std::vector<float>(C, 0.0f));
  DeviceBuffer<uint16_t> dx(std::vector<uint16_t>(size_t(N * HW * C), 0x3F80)), dy(size_t(N * HW * C));
  const cuda::GroupNormIn norm{dst.get(), dg.get(), dbe.get(), G, 1e-6f, true};
  const cuda::KernelShape shape = cuda::group_norm_shape(N, C, HW, G);
  EXPECT_EQ(shape.key(), "groupnorm N2 C64 HW9 G32");
  cuda::set_tuning_table({});
  cuda::group_norm_nhwc(dx.get(), N, C, HW, norm, dy.get());
  EXPECT_EQ(cuda::last_variant_run(KernelFamily::GroupNorm), "vec8");
  cuda::set_tuning_table({{shape.key(), "channel_regs"}});
  cuda::group_norm_nhwc(dx.get(), N, C, HW, norm, dy.get());
  EXPECT_EQ(cuda::last_variant_run(KernelFamily::GroupNorm), "channel_regs");
  cuda::set_tuning_table({});
  cuda::device_synchronize();
}

TEST(CudaVariants, TuneTimesEverySupportingVariantOnTinyShapes) {
  VTV_REQUIRE_GPU();
  const std::vector<cuda::KernelShape> shapes = cuda::tuning_shapes("tiny", 1);
  const std::vector<cuda::VariantTiming> rows = cuda::tune_kernels(shapes, 1);
  size_t expected = 0;
  for (const cuda::KernelShape& s : shapes) {
    for (const cuda::KernelVariant& v : cuda::kernel_variants()) expected += v.family == s.family;
  }
  ASSERT_EQ(rows.size(), expected);
  for (const cuda::VariantTiming& r : rows) {
    if (r.skipped.empty()) {
      EXPECT_GT(r.ms, 0.0) << r.shape << " " << r.variant;
    } else {
      EXPECT_EQ(r.ms, 0.0) << r.shape << " " << r.variant;
    }
    // The timed conv call has what the decoder gives (taps, workspace), the GroupNorm call bf16 NHWC maps:
    // on the emulator every conv and groupnorm variant runs its own kernel rather than fall back to the
    // default under its name; so does every attention variant on the tiny shape (head dim 16).
    if (cuda::probe().emulated && (r.family == "conv3x3" || r.family == "conv_nhwc" || r.family == "groupnorm" ||
                                   r.family == "attention")) {
      EXPECT_EQ(r.skipped, "") << r.shape << " " << r.variant;
    }
  }
  const std::map<std::string, std::string> winners = cuda::tuning_winners(rows);
  EXPECT_EQ(winners.size(), shapes.size());
  for (const auto& [shape, variant] : winners) {
    double best = 1e300, winner_ms = -1;
    for (const cuda::VariantTiming& r : rows) {
      if (r.shape != shape || !r.skipped.empty()) continue;
      best = std::min(best, r.ms);
      if (r.variant == variant) winner_ms = r.ms;
    }
    EXPECT_EQ(winner_ms, best) << shape;
  }
  EXPECT_GT(cuda::measured_tensor_peak_tflops(), 0.0);
  EXPECT_THROW(cuda::tuning_shapes("huge", 1), Error);
}

}  // namespace
}  // namespace vtv::test

#else
VTV_CUDA_NOT_COMPILED_IN_TEST(CudaVariants)
#endif
