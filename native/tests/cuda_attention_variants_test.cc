// The attention variants of the kernel registry (cuda/variants.h, cuda/attention_variants.h): every
// registered Attention variant, forced, against cpu::mha_attention on the model's sequences at two heads
// and two samples (and a short ragged one), with and without the task-vector patch (scattered
// patched positions, a whole patched 16-query tile, a wholly patched head, the zero-shot position shift),
// and the fallback to the baseline where a variant cannot run the call. Skipped, with the reason, where no
// GPU is usable.
#include <gtest/gtest.h>

#include "cuda_test_util.h"

#ifdef VTV_WITH_CUDA
#include <cmath>
#include <random>

#include "cpu/attention.h"
#include "cuda/attention_variants.h"
#include "cuda/device_buffer.h"
#include "cuda/kernels.h"
#include "cuda/variants.h"
#include "expect_error.h"
#include "vtv/config.h"
#include "vtv/error.h"

namespace vtv::test {
namespace {

using cuda::DeviceBuffer;
using cuda::KernelFamily;

// bf16's unit roundoff: round to nearest with 8 significant bits.
constexpr double kBf16U = 1.0 / 512;

struct Case {
  int64_t B;
  int N, H, dh;
  bool patching;
};

// One call of mha_attention under the forced variant, checked against the CPU twice:
//  (a) against cpu::mha_attention on Q, K, V rounded to bf16 (what the tensor cores multiply). What the
//      variant still rounds is P: bf16(e_j) = e_j (1 + eps_j), |eps_j| <= u, while the normaliser sums the
//      unrounded e_j (the baseline's form), so out - ref = sum_j e_j eps_j v_j / sum_j e_j and
//      |out - ref| <= u * max_j |v_j|; fp32 accumulation order adds ~1e-6 relative. Bound: u max|v| (1 + 1e-3).
//  (b) against cpu::mha_attention on the fp32 inputs, which adds the rounding of V (u max|v|) and of Q and
//      K: the scaled score of (query i, key j) moves by delta_ij = scale |q~_i.k~_j - q_i.k_j| (computed
//      here from the data, q~ and k~ the rounded vectors), so query i's softmax weights by factors within
//      exp(+-2 delta_i), delta_i = max_j delta_ij, and its output by at most (exp(2 delta_i) - 1) max|v|.
//      Bound, per output row: max|v| (2u + exp(2 delta_i) - 1) (1 + 1e-3), max|v| over the row's head.
// Patched positions are copies of the means: both references match them exactly. A call that ran the
// fp32 baseline rounds nothing: it is held to CudaAttention's 1e-4 of max|ref| against (b) instead.
struct Result {
  double err_rounded = 0, err_full = 0, bound_rounded = 0, bound_full = 0, ref_max = 0;
  double ratio_rounded = 0, ratio_full = 0;  // the largest error / bound over the elements
  std::string ran;
};

Result run_case(const Case& c, const std::string& variant) {
  const int64_t C = int64_t(c.H) * c.dh, B = c.B;
  const int N = c.N;
  const int shift = (N == kZeroShotEncTokens || N == kZeroShotDecTokens) ? kZeroShotShift : 0;
  const float scale = static_cast<float>(std::pow(double(c.dh), -0.5));
  const std::vector<float> qkv = random_vector(static_cast<size_t>(B * N * 3 * C), uint32_t(N * 7 + c.dh), 1.5f);
  const std::vector<float> means = random_vector(static_cast<size_t>(N + shift) * C, uint32_t(N + 3));
  // The mask: bits from a non-byte-aligned offset, as in the engine's layout. Sample 0: ~30% of (head,
  // position) and, when N > 32, all of head 1's positions 16..31 (a whole 16-query tile); sample 1: head 0
  // entirely (K and V never loaded), head 1 a few positions; further samples: nothing.
  const int64_t bit_offset = 11, bits = bit_offset + int64_t(c.H) * N + 3, stride = (bits + 7) / 8;
  std::vector<uint8_t> mask(static_cast<size_t>(B * stride), 0);
  std::mt19937 rng(uint32_t(N + c.dh));
  auto set_bit = [&](int64_t b, int64_t i) {
    mask[static_cast<size_t>(b * stride + (i >> 3))] |= uint8_t(1u << (i & 7));
  };
  for (int h = 0; h < c.H; ++h) {
    for (int p = 0; p < N; ++p) {
      const int64_t i = bit_offset + int64_t(h) * N + p;
      if (rng() % 100 < 30 || (h == 1 && N > 32 && p >= 16 && p < 32)) set_bit(0, i);
      if (B > 1 && (h == 0 || p % 5 == 0)) set_bit(1, i);
    }
  }
  cpu::HeadPatch cp;
  cp.mask = mask.data();
  cp.mask_stride = stride;
  cp.bit_offset = bit_offset;
  cp.means = means.data();
  cp.position_shift = shift;
  std::vector<float> ref(static_cast<size_t>(B * N * C)), ref_rounded(ref.size());
  cpu::mha_attention(pool(), qkv.data(), B, N, c.H, c.dh, scale, ref.data(), c.patching ? &cp : nullptr);
  cpu::mha_attention(pool(), rounded_bf16(qkv).data(), B, N, c.H, c.dh, scale, ref_rounded.data(),
                     c.patching ? &cp : nullptr);

  DeviceBuffer<float> dqkv(qkv), dmeans(means), dout(ref.size());
  DeviceBuffer<uint8_t> dmask(mask);
  dout.poison();
  cuda::HeadPatch gp;
  gp.mask = dmask.get();
  gp.mask_stride = stride;
  gp.bit_offset = bit_offset;
  gp.means = dmeans.get();
  gp.position_shift = shift;
  {
    cuda::ForceVariant force(KernelFamily::Attention, variant);
    cuda::mha_attention(dqkv.get(), B, N, c.H, c.dh, scale, dout.get(), c.patching ? &gp : nullptr);
  }
  const std::vector<float> got = dout.to_host(ref.size());

  Result r;
  r.ran = cuda::last_variant_run(KernelFamily::Attention);
  const Diff dr = compare(got, ref_rounded), df = compare(got, ref);
  r.err_rounded = dr.max_abs;
  r.err_full = df.max_abs;
  r.ref_max = df.ref_max;
  // The bounds, per (sample, head): max|v|, and each query's delta_i for (b).
  const std::vector<float> qkv_r = rounded_bf16(qkv);
  double worst_a = 0, worst_b = 0;  // the largest error / bound ratios
  int64_t patched = 0, exact_mismatches = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int h = 0; h < c.H; ++h) {
      auto at = [&](const std::vector<float>& x, int part, int p, int d) {
        return double(x[size_t(((b * N + p) * 3 + part) * C + h * c.dh + d)]);
      };
      double vmax = 0;
      for (int p = 0; p < N; ++p)
        for (int d = 0; d < c.dh; ++d) vmax = std::max(vmax, std::fabs(at(qkv, 2, p, d)));
      const double bound_a = kBf16U * vmax * (1 + 1e-3);
      r.bound_rounded = std::max(r.bound_rounded, bound_a);
      for (int i = 0; i < N; ++i) {
        double delta = 0;
        for (int j = 0; j < N; ++j) {
          double s = 0, s_r = 0;
          for (int d = 0; d < c.dh; ++d) {
            s += at(qkv, 0, i, d) * at(qkv, 1, j, d);
            s_r += at(qkv_r, 0, i, d) * at(qkv_r, 1, j, d);
          }
          delta = std::max(delta, scale * std::fabs(s_r - s));
        }
        const double bound_b = vmax * (2 * kBf16U + std::expm1(2 * delta)) * (1 + 1e-3);
        r.bound_full = std::max(r.bound_full, bound_b);
        const int64_t bit = bit_offset + int64_t(h) * N + i;
        const bool is_patched = c.patching && ((mask[size_t(b * stride + (bit >> 3))] >> (bit & 7)) & 1);
        patched += is_patched;
        for (int d = 0; d < c.dh; ++d) {
          const size_t k = size_t((b * N + i) * C + h * c.dh + d);
          if (is_patched) {  // the task mean, bit for bit
            const int src = i == 0 ? 0 : i + shift;
            exact_mismatches += got[k] != means[size_t((int64_t(src) * c.H + h) * c.dh + d)];
          }
          worst_a = std::max(worst_a, std::fabs(double(got[k]) - ref_rounded[k]) / bound_a);
          worst_b = std::max(worst_b, std::fabs(double(got[k]) - ref[k]) / bound_b);
        }
      }
    }
  }
  EXPECT_EQ(dr.nonfinite, 0) << describe(dr);
  EXPECT_EQ(exact_mismatches, 0) << "patched outputs that are not their task mean";
  if (c.patching) EXPECT_GT(patched, N) << "the mask patches a whole head and more";
  if (r.ran == "baseline") {
    EXPECT_LE(df.rel, 1e-4) << "vs fp32 inputs: " << describe(df);
  } else {
    EXPECT_LE(worst_a, 1.0) << "vs bf16-rounded inputs, error / bound " << worst_a << ": " << describe(dr);
    EXPECT_LE(worst_b, 1.0) << "vs fp32 inputs, error / bound " << worst_b << ": " << describe(df);
  }
  r.ratio_rounded = worst_a;
  r.ratio_full = worst_b;
  EXPECT_EQ(df.nonfinite, 0) << describe(df);
  return r;
}

std::vector<std::string> attention_variants() {
  std::vector<std::string> out;
  for (const cuda::KernelVariant& v : cuda::kernel_variants()) {
    if (v.family == KernelFamily::Attention) out.push_back(v.name);
  }
  return out;
}

TEST(CudaAttentionVariants, EveryVariantMatchesCpuWithAndWithoutThePatch) {
  VTV_REQUIRE_GPU();
  cuda::mha_prepare();
  ASSERT_GE(attention_variants().size(), 2u);
  for (const std::string& name : attention_variants()) {
    // 50 and 13 (a ragged tile) run mma_sync's 64-key kernel; the zero-shot decoder's 99 and the one-shot
    // decoder's 197 its 128- and 256-key ones, with warps that take several 16-query tiles.
    for (int N : {kZeroShotEncTokens, 13, kZeroShotDecTokens, kOneShotDecTokens}) {
      for (int dh : {16, 32, 64}) {
        for (bool patching : {false, true}) {
          const Case c{2, N, 2, dh, patching};
          SCOPED_TRACE(name + ": N " + std::to_string(N) + " dh " + std::to_string(dh) + (patching ? " patched" : ""));
          const std::string why = cuda::find_variant(KernelFamily::Attention, name)->unsupported(
              cuda::attention_shape(c.B, N, c.H, dh));
          const Result r = run_case(c, name);
          EXPECT_EQ(r.ran, why.empty() ? name : std::string("baseline")) << why;
          std::printf("attention %-8s N %2d dh %2d %-9s ran %-8s max|err| vs bf16-rounded inputs %.3g "
                      "(%.2f of its bound), vs fp32 inputs %.3g (%.2f of its bound), rel to max|ref| %.3g\n",
                      name.c_str(), N, dh, patching ? "patched" : "unpatched", r.ran.c_str(), r.err_rounded,
                      r.ratio_rounded, r.err_full, r.ratio_full, r.err_full / r.ref_max);
        }
      }
    }
  }
}

// The tiny model's decoder head dim (8) is too narrow for k16 tensor-core steps: mma_sync says so and the
// dispatch runs the baseline; so does a qkv pointer that is not 16-byte aligned (float4 staging). The
// argument checks are mha_attention's own, whichever variant is forced.
TEST(CudaAttentionVariants, MmaSyncFallsBackToTheBaselineWhereItCannotRun) {
  VTV_REQUIRE_GPU();
  const cuda::KernelVariant* mma = cuda::find_variant(KernelFamily::Attention, "mma_sync");
  ASSERT_NE(mma, nullptr);
  EXPECT_FALSE(mma->is_default);
  EXPECT_EQ(mma->unsupported(cuda::attention_shape(2, 50, 2, 64)), "");
  EXPECT_NE(mma->unsupported(cuda::attention_shape(2, 50, 2, 8)).find("head_dim must be 16, 32 or 64"),
            std::string::npos);
  EXPECT_NE(mma->unsupported(cuda::attention_shape(2, 300, 2, 64)).find("at most 256 tokens"), std::string::npos);

  const Result r8 = run_case({2, 13, 2, 8, true}, "mma_sync");
  EXPECT_EQ(r8.ran, "baseline");

  const int64_t B = 1, N = 13, H = 2, dh = 32, C = H * dh;
  DeviceBuffer<float> qkv(random_vector(size_t(B * N * 3 * C) + 4, 5, 1.0f)), out(size_t(B * N * C));
  cuda::ForceVariant force(KernelFamily::Attention, "mma_sync");
  cuda::mha_attention(qkv.get(), B, N, int(H), int(dh), 0.125f, out.get(), nullptr);
  EXPECT_EQ(cuda::last_variant_run(KernelFamily::Attention), "mma_sync");
  cuda::mha_attention(qkv.get() + 1, B, N, int(H), int(dh), 0.125f, out.get(), nullptr);
  EXPECT_EQ(cuda::last_variant_run(KernelFamily::Attention), "baseline") << "qkv is not 16-byte aligned";

  expect_error([&] { cuda::mha_attention(qkv.get(), B, 300, int(H), int(dh), 0.125f, out.get(), nullptr); },
               {"at most 256 tokens"});
  expect_error([&] { cuda::mha_attention(qkv.get(), B, N, int(H), int(dh), 0.0f, out.get(), nullptr); },
               {"scale must be positive"});
  cuda::HeadPatch half;
  half.mask = reinterpret_cast<const uint8_t*>(qkv.get());
  expect_error([&] { cuda::mha_attention(qkv.get(), B, N, int(H), int(dh), 0.125f, out.get(), &half); },
               {"needs both mask and means"});
}

}  // namespace
}  // namespace vtv::test

#else
VTV_CUDA_NOT_COMPILED_IN_TEST(CudaAttentionVariants)
#endif
