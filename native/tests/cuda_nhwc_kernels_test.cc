// The bf16 NHWC decoder's non-conv kernels (vqgan_kernels.h, "The bf16 NHWC decoder") against their NCHW
// counterparts and the CPU, on bf16-rounded inputs so that both sides see the same values:
//   group_norm_nhwc       every variant of the groupnorm family (vec8, channel_regs), forced, bit-exact
//                         against group_norm_apply (the same fp32 code, group_norm.cuh) on the NCHW
//                         transpose, rounded to bf16, so bit-identical to each other; within a bf16
//                         rounding of cpu::group_norm
//   codebook_lookup_nhwc  bit-exact against codebook_lookup rounded to bf16 and transposed; NaN for a bad token
//   spatial_attention_nhwc within a bf16 rounding (2^-8 relative, plus fp32 summation noise) of
//                          cpu::spatial_attention
//   conv_out_pixels_nhwc  within 1e-5 of conv_out_pixels without a norm (it sums in the same order: equal)
// Sizes stay small (the CPU CUDA emulator runs them in CI) but include the real widths (512 channels,
// 14x14) and odd ones. Outputs are poisoned before each run so an element never written shows.
#include <gtest/gtest.h>

#include "cuda_test_util.h"

#ifdef VTV_WITH_CUDA
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/attention.h"
#include "cpu/norm.h"
#include "cuda/device_buffer.h"
#include "cuda/variants.h"
#include "cuda/vqgan_kernels.h"
#include "expect_error.h"
#include "vtv/config.h"
#include "vtv/error.h"

namespace vtv::test {
namespace {

// Number of elements whose bits differ, and the first of them.
struct BitDiff {
  int64_t count = 0, first = -1;
};
BitDiff bit_diff(const std::vector<uint16_t>& got, const std::vector<uint16_t>& ref) {
  BitDiff d;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != ref[i]) {
      if (d.first < 0) d.first = int64_t(i);
      ++d.count;
    }
  return d;
}

// ---- group_norm_nhwc -----------------------------------------------------------------------------------

struct GnCase {
  int C;
  int H, W;
  bool swish, in_place;
  int G = 32;
};

std::vector<std::string> group_norm_variants() {
  std::vector<std::string> out;
  for (const cuda::KernelVariant& v : cuda::kernel_variants())
    if (v.family == cuda::KernelFamily::GroupNorm) out.push_back(v.name);
  return out;
}

// Every groupnorm variant, forced, on one case: each bit-exact against group_norm_apply rounded to bf16
// (and so against each other), and each must be the one that ran.
void run_group_norm_case(const GnCase& gc) {
  const int64_t N = 2, HW = int64_t(gc.H) * gc.W;
  const int C = gc.C, G = gc.G;
  const float eps = 1e-6f;
  const std::string shape = "C=" + std::to_string(C) + " G=" + std::to_string(G) + " " + std::to_string(gc.H) + "x" +
                            std::to_string(gc.W) + (gc.swish ? " swish" : "") + (gc.in_place ? " in-place" : "");
  // NCHW values that bf16 holds exactly, with a per-channel offset so that groups differ; the statistics
  // are a real reduction of them (in double, as the producing conv's epilogue leaves them).
  std::vector<float> x = random_vector(size_t(N * C * HW), 51, 1.3f);
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) x[size_t((n * C + c) * HW + i)] += 0.05f * float(c % 7) - 0.1f * float(n);
  x = rounded_bf16(x);
  const std::vector<float> gamma = random_vector(size_t(C), 52, 0.2f, 1.0f), beta = random_vector(size_t(C), 53, 0.3f);
  cuda::DeviceBuffer<double> dst(group_sums(x, N, C, HW, G));
  cuda::DeviceBuffer<float> dg(gamma), dbe(beta), dx(x), dref(x.size());
  const cuda::GroupNormIn norm{dst.get(), dg.get(), dbe.get(), G, eps, gc.swish};

  // Reference 1: group_norm_apply (fp32 NCHW) on the same values and statistics, rounded to bf16.
  dref.poison();
  cuda::group_norm_apply(dx.get(), N, C, HW, norm, dref.get());
  cuda::device_synchronize();
  const std::vector<uint16_t> ref_bits = to_nhwc(to_bf16_bits(dref.to_host(x.size())), N, C, HW);

  // Reference 2: cpu::group_norm (its own two-pass statistics). bf16 keeps 8 significant bits, so rounding
  // to nearest moves a value by at most 2^-8 of itself (half an ulp of 2^-7 times its binade): in the max
  // norm within 2^-8 of max|ref|, plus the statistics' fp32-level differences (1e-4 is ample).
  std::vector<float> cref(x.size());
  cpu::group_norm(pool(), x.data(), N, C, HW, G, eps, gamma.data(), beta.data(), gc.swish, cref.data());

  const std::vector<uint16_t> x_bits = to_nhwc(to_bf16_bits(x), N, C, HW);
  std::vector<uint16_t> first;  // the first variant's output
  for (const std::string& variant : group_norm_variants()) {
    const std::string name = "group_norm_nhwc[" + variant + "] " + shape;
    cuda::DeviceBuffer<uint16_t> dxh(x_bits), dyh(x.size());
    dyh.poison();
    uint16_t* y = gc.in_place ? dxh.get() : dyh.get();
    const uint64_t runs = cuda::variant_runs(cuda::KernelFamily::GroupNorm, variant);
    {
      cuda::ForceVariant force(cuda::KernelFamily::GroupNorm, variant);
      cuda::group_norm_nhwc(dxh.get(), N, C, HW, norm, y);
    }
    cuda::device_synchronize();
    EXPECT_EQ(cuda::last_variant_run(cuda::KernelFamily::GroupNorm), variant) << name << ": fell back";
    EXPECT_EQ(cuda::variant_runs(cuda::KernelFamily::GroupNorm, variant), runs + 1) << name;
    const std::vector<uint16_t> got = gc.in_place ? dxh.to_host(x.size()) : dyh.to_host(x.size());
    const BitDiff bd = bit_diff(got, ref_bits);
    EXPECT_EQ(bd.count, 0) << name << ": differs from group_norm_apply rounded to bf16 at " << bd.count
                           << " elements, first " << bd.first << " (got bits " << (bd.first >= 0 ? got[bd.first] : 0)
                           << ", ref " << (bd.first >= 0 ? ref_bits[bd.first] : 0) << ")";
    if (first.empty()) {
      first = got;
    } else {
      EXPECT_EQ(bit_diff(got, first).count, 0) << name << ": differs from the first variant's output";
    }

    const Diff d = compare(to_nchw(bf16_to_floats(got), N, C, HW), cref);
    EXPECT_LE(d.rel, 1.0 / 256 + 1e-4) << name << " vs cpu::group_norm: " << describe(d);
    std::printf("%s: %lld bits differ from group_norm_apply; vs cpu::group_norm %s\n", name.c_str(),
                (long long)bd.count, describe(d).c_str());
    report(name, "bf16", d.rel, -1, -1);
  }
}

TEST(CudaNhwcKernels, GroupNormNhwcMatchesGroupNormApplyBitExact) {
  VTV_REQUIRE_GPU();
  const GnCase cases[] = {
      {32, 14, 14, false, false}, {32, 7, 5, true, false},   {64, 14, 14, true, false},
      {64, 7, 5, false, true},    {512, 14, 14, true, false}, {512, 7, 5, true, true},
      {512, 14, 14, false, true},
      // C / 8 = 12 does not divide the block's 256 threads: a thread's vectors change channels (vec8);
      // channel_regs' block is 12 x 21.
      {96, 14, 14, true, false},  {96, 7, 5, false, true},
  };
  for (const GnCase& c : cases) run_group_norm_case(c);
}

// Both variants on C in {8, 32, 96, 512}, odd HW, with and without swish, in place too. The larger maps
// give channel_regs several steps of pixels per thread, and a last block that runs out part-way (its step
// count falls with the device's SM count; the emulator reports one per CPU core: up to 16 here).
TEST(CudaNhwcKernels, GroupNormNhwcVariantsAreBitIdentical) {
  VTV_REQUIRE_GPU();
  ASSERT_EQ(group_norm_variants(), (std::vector<std::string>{"vec8", "channel_regs"}));
  const GnCase cases[] = {
      // C = 8: one vector per pixel; channel_regs' block is 1 x 256. 2 channels per group.
      {8, 7, 5, true, false, 4},     {8, 9, 13, false, true, 4},    {8, 63, 65, true, false, 4},
      // C = 32, one channel per group: channel_regs' block is 4 x 64.
      {32, 3, 3, false, false},      {32, 81, 81, true, true},      {32, 81, 81, false, false},
      {96, 35, 37, true, false},     {96, 35, 37, false, true},     {96, 1, 1, true, false},
      // C = 512: channel_regs' block is 64 x 4.
      {512, 15, 17, false, false},   {512, 15, 17, true, true},     {512, 63, 65, true, false},
  };
  for (const GnCase& c : cases) run_group_norm_case(c);
}

TEST(CudaNhwcKernels, GroupNormNhwcRejectsBadArguments) {
  VTV_REQUIRE_GPU();
  const int C = 64, G = 32;
  const int64_t N = 2, HW = 35;
  cuda::DeviceBuffer<double> dst(std::vector<double>(size_t(N) * G * 2, 1.0));
  cuda::DeviceBuffer<float> dg(std::vector<float>(512, 1.0f)), dbe(std::vector<float>(512, 0.0f));
  cuda::DeviceBuffer<uint16_t> dx(size_t(N * 512 * HW) + 8), dy(size_t(N * 512 * HW) + 8);
  const cuda::GroupNormIn norm{dst.get(), dg.get(), dbe.get(), G, 1e-6f, true};
  auto run = [&](int64_t n, int c, const cuda::GroupNormIn& g, const uint16_t* x, uint16_t* y) {
    return [=] { cuda::group_norm_nhwc(x, n, c, HW, g, y); };
  };
  expect_error(run(-1, C, norm, dx.get(), dy.get()), {"group_norm_nhwc", "sizes must be positive"});
  expect_error(run(N, 0, norm, dx.get(), dy.get()), {"group_norm_nhwc", "sizes must be positive"});
  expect_error(run(N, 36, norm, dx.get(), dy.get()), {"group_norm_nhwc", "multiple of 8", "36"});
  expect_error(run(N, 520, cuda::GroupNormIn{dst.get(), dg.get(), dbe.get(), 8, 1e-6f, true}, dx.get(), dy.get()),
               {"group_norm_nhwc", "at most 512", "520"});
  cuda::GroupNormIn no_stats = norm;
  no_stats.stats = nullptr;
  expect_error(run(N, C, no_stats, dx.get(), dy.get()), {"group_norm_nhwc", "stats, gamma and beta"});
  cuda::GroupNormIn no_gamma = norm;
  no_gamma.gamma = nullptr;
  expect_error(run(N, C, no_gamma, dx.get(), dy.get()), {"group_norm_nhwc", "stats, gamma and beta"});
  expect_error(run(N, 40, norm, dx.get(), dy.get()), {"group_norm_nhwc", "C 40 is not a multiple of groups 32"});
  expect_error(run(N, C, norm, dx.get() + 1, dy.get()), {"group_norm_nhwc", "16-byte aligned"});
  expect_error(run(N, C, norm, dx.get(), dy.get() + 4), {"group_norm_nhwc", "16-byte aligned"});
  expect_error(run(N, C, norm, nullptr, dy.get()), {"group_norm_nhwc", "x and y must be set"});
  // N = 0 is a valid empty launch.
  cuda::group_norm_nhwc(dx.get(), 0, C, HW, norm, dy.get());
  cuda::device_synchronize();
}

// ---- codebook_lookup_nhwc ------------------------------------------------------------------------------

TEST(CudaNhwcKernels, CodebookLookupNhwcMatchesNchwRoundedAndBadTokensGiveNaN) {
  VTV_REQUIRE_GPU();
  for (int C : {32, 512}) {
    const int N = 3, V = 64;
    const std::vector<float> table = random_vector(size_t(V * C), 61);
    std::vector<int32_t> tok(size_t(N) * kPatches);
    for (size_t i = 0; i < tok.size(); ++i) tok[i] = static_cast<int32_t>((i * 37 + 5) % V);
    tok[5] = V;  // out of range: NaN
    tok[kPatches + 7] = -1;
    tok[2 * kPatches + kPatches - 1] = 1 << 30;
    cuda::DeviceBuffer<float> dt(table), dz(size_t(N) * C * kPatches);
    cuda::DeviceBuffer<uint16_t> dzh(size_t(N) * C * kPatches);
    cuda::DeviceBuffer<int32_t> dtok(tok);
    dz.poison();
    dzh.poison();
    cuda::codebook_lookup(dtok.get(), N, dt.get(), V, C, dz.get());
    cuda::codebook_lookup_nhwc(dtok.get(), N, dt.get(), V, C, dzh.get());
    cuda::device_synchronize();
    const std::vector<float> z = dz.to_host(dz.size());
    const std::vector<uint16_t> zh = dzh.to_host(dzh.size());
    int64_t mismatches = 0, nans = 0;
    for (int n = 0; n < N; ++n)
      for (int t = 0; t < kPatches; ++t)
        for (int c = 0; c < C; ++c) {
          const int32_t id = tok[size_t(n * kPatches + t)];
          const uint16_t got = zh[size_t((int64_t(n) * kPatches + t) * C + c)];
          const float ref = z[size_t((int64_t(n) * C + c) * kPatches + t)];
          if (id < 0 || id >= V) {
            ASSERT_TRUE(std::isnan(bf16_to_float(got))) << "C " << C << ": bad token at n " << n << " t " << t
                                                       << " must give NaN, got bits " << got;
            ++nans;
          } else if (got != to_bf16_bits({ref})[0]) {
            ADD_FAILURE() << "C " << C << " n " << n << " t " << t << " c " << c << ": bits " << got << ", want "
                          << to_bf16_bits({ref})[0] << " (" << ref << ")";
            if (++mismatches > 10) return;
          }
        }
    EXPECT_EQ(nans, 3 * C);
    std::printf("codebook_lookup_nhwc C=%d: %lld mismatches, %lld NaN elements for the 3 bad tokens\n", C,
                (long long)mismatches, (long long)nans);
  }
  cuda::DeviceBuffer<uint16_t> dzh(size_t(kPatches) * 16);
  cuda::DeviceBuffer<float> dt(size_t(4) * 12);
  cuda::DeviceBuffer<int32_t> dtok{size_t(kPatches)};
  expect_error([&] { cuda::codebook_lookup_nhwc(dtok.get(), 1, dt.get(), 4, 12, dzh.get()); },
               {"codebook_lookup_nhwc", "multiple of 8", "12"});
  expect_error([&] { cuda::codebook_lookup_nhwc(dtok.get(), 1, dt.get(), 4, 8, dzh.get() + 1); },
               {"codebook_lookup_nhwc", "16-byte aligned"});
}

// ---- spatial_attention_nhwc ----------------------------------------------------------------------------

TEST(CudaNhwcKernels, SpatialAttentionNhwcMatchesCpu) {
  VTV_REQUIRE_GPU();
  for (int C : {512, 32}) {
    for (int HW : {196, 13}) {
      const int B = 2;
      // qkv as the qkv 1x1 conv stores it, [B][HW][3C], bf16; the CPU gets the same values as [B][C][HW].
      const std::vector<float> qkv = rounded_bf16(random_vector(size_t(B) * HW * 3 * C, 71));
      std::vector<float> q(size_t(B) * C * HW), k(q.size()), v(q.size()), ref(q.size());
      for (int b = 0; b < B; ++b)
        for (int i = 0; i < HW; ++i)
          for (int c = 0; c < C; ++c) {
            const size_t src = (size_t(b) * HW + i) * 3 * C + c, dst = (size_t(b) * C + c) * HW + i;
            q[dst] = qkv[src];
            k[dst] = qkv[src + C];
            v[dst] = qkv[src + 2 * C];
          }
      cpu::spatial_attention(pool(), q.data(), k.data(), v.data(), B, C, HW, ref.data());
      cuda::DeviceBuffer<uint16_t> dqkv(to_bf16_bits(qkv)), dout(q.size());
      dout.poison();
      cuda::spatial_attention_nhwc(dqkv.get(), B, C, HW, dout.get());
      cuda::device_synchronize();
      const std::vector<float> got = to_nchw(bf16_to_floats(dout.to_host(q.size())), B, C, HW);
      const Diff d = compare(got, ref);
      // The output is rounded to bf16 once: within half an ulp, i.e. 2^-8 of the element (8 significant
      // bits), of the kernel's fp32 value, which differs from the CPU's only in summation order (the fp32
      // NCHW kernel agrees to 1e-5 relative). So per element |got - ref| <= 2^-8 |ref| + 1e-5 max|ref|, and
      // in the max norm rel <= 2^-8 + 1e-5.
      EXPECT_LE(d.rel, 1.0 / 256 + 1e-5) << "C " << C << " HW " << HW << ": " << describe(d);
      int64_t over = 0, first = -1;
      double worst_ratio = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double bound = std::ldexp(std::fabs(double(ref[i])), -8) + 1e-5 * d.ref_max;
        const double e = std::fabs(double(got[i]) - double(ref[i]));
        worst_ratio = std::max(worst_ratio, e / bound);
        if (!(e <= bound)) {
          if (first < 0) first = int64_t(i);
          ++over;
        }
      }
      EXPECT_EQ(over, 0) << "C " << C << " HW " << HW << ": " << over << " elements beyond 2^-8 |ref| + 1e-5 max|ref|, first "
                         << first << " (got " << (first >= 0 ? got[first] : 0) << ", ref " << (first >= 0 ? ref[first] : 0)
                         << ")";
      std::printf("spatial_attention_nhwc C=%d HW=%d: %s; worst element at %.3f of its bound\n", C, HW,
                  describe(d).c_str(), worst_ratio);
      report("spatial_attention_nhwc C=" + std::to_string(C) + " HW=" + std::to_string(HW), "bf16", d.rel, -1, -1);
    }
  }
  cuda::DeviceBuffer<uint16_t> dqkv(size_t(3) * 16 * 16), dout(size_t(16) * 16);
  expect_error([&] { cuda::spatial_attention_nhwc(dqkv.get(), 1, 12, 16, dout.get()); },
               {"spatial_attention_nhwc", "multiple of 8", "12"});
  expect_error([&] { cuda::spatial_attention_nhwc(dqkv.get(), 1, 16, 300, dout.get()); },
               {"spatial_attention_nhwc", "HW <= 256", "300"});
}

// ---- conv_out_pixels_nhwc ------------------------------------------------------------------------------

TEST(CudaNhwcKernels, ConvOutPixelsNhwcMatchesNchwWithoutNorm) {
  VTV_REQUIRE_GPU();
  struct Case {
    int Ci, H, W;
  };
  for (const Case& cc : {Case{128, 28, 28}, Case{512, 7, 5}, Case{8, 13, 9}}) {
    const int N = 2, Ci = cc.Ci, H = cc.H, W = cc.W;
    const int64_t HW = int64_t(H) * W;
    // An already normalised (GroupNorm + swish) map: values around [-0.3, 3], as bf16 stores them. The
    // weights are scaled so that a fair share of the pixels lands inside (-1, 1), not all clamped.
    std::vector<float> x = random_vector(size_t(N * Ci * HW), 81, 1.0f, 0.2f);
    for (float& v : x) v = round_bf16(v / (1.0f + std::exp(-v)));
    const std::vector<float> w = random_vector(size_t(3 * Ci * 9), 82, 1.0f / std::sqrt(9.0f * Ci));
    const std::vector<float> b = random_vector(3, 83, 0.05f);
    cuda::DeviceBuffer<float> dx(x), dw(w), db(b), dref(size_t(N) * 3 * HW), dout(size_t(N) * 3 * HW);
    cuda::DeviceBuffer<uint16_t> dxh(to_nhwc(to_bf16_bits(x), N, Ci, HW));
    dref.poison();
    dout.poison();
    cuda::conv_out_pixels(dx.get(), N, Ci, H, W, cuda::GroupNormIn{}, dw.get(), db.get(), dref.get());
    cuda::conv_out_pixels_nhwc(dxh.get(), N, Ci, H, W, dw.get(), db.get(), dout.get());
    cuda::device_synchronize();
    const std::vector<float> ref = dref.to_host(dref.size()), got = dout.to_host(dout.size());
    const Diff d = compare(got, ref);
    int64_t unclamped = 0;
    for (float v : ref) unclamped += (v > 0.0f && v < 1.0f);
    EXPECT_LE(d.max_abs, 1e-5) << "Ci " << Ci << " " << H << "x" << W << ": " << describe(d);
    EXPECT_EQ(d.nonfinite, 0);
    EXPECT_GT(unclamped, int64_t(ref.size()) / 4) << "too many clamped pixels: the sums were barely compared";
    std::printf("conv_out_pixels_nhwc Ci=%d %dx%d: max abs %.3g (%lld of %zu pixels unclamped)\n", Ci, H, W, d.max_abs,
                (long long)unclamped, ref.size());
    report("conv_out_pixels_nhwc Ci=" + std::to_string(Ci), "bf16", d.rel, -1, -1);
  }
  cuda::DeviceBuffer<uint16_t> dxh(size_t(2) * 16 * 16);
  cuda::DeviceBuffer<float> dw(size_t(27) * 16), db(3), dout(size_t(3) * 16);
  expect_error([&] { cuda::conv_out_pixels_nhwc(dxh.get(), 1, 12, 4, 4, dw.get(), db.get(), dout.get()); },
               {"conv_out_pixels_nhwc", "multiple of 8", "12"});
  expect_error([&] { cuda::conv_out_pixels_nhwc(dxh.get() + 1, 1, 16, 4, 4, dw.get(), db.get(), dout.get()); },
               {"conv_out_pixels_nhwc", "16-byte aligned"});
}

}  // namespace
}  // namespace vtv::test

#else  // !VTV_WITH_CUDA

VTV_CUDA_NOT_COMPILED_IN_TEST(CudaNhwcKernels)

#endif
