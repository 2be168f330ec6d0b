// Every CPU kernel against a plain naive reference (double accumulation) on random non-zero inputs.
// Outputs are poisoned with NaN before each call, so an element the kernel forgets to write fails.
// Sizes are deliberately not multiples of the GEMM tiles (MR, NR, KC) and large enough to take the
// multi-threaded and multi-K-block paths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "cpu/conv.h"
#include "cpu/elementwise.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "vtv/error.h"

namespace vtv::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

ThreadPool& pool() {
  static ThreadPool p(2);
  return p;
}

// Uniform in +-[0.05, 1]: never zero, mixed signs.
std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(0.05f, 1.0f);
  std::bernoulli_distribution sign(0.5);
  std::vector<float> v(n);
  for (auto& x : v) x = (sign(rng) ? 1.0f : -1.0f) * mag(rng) * scale;
  return v;
}

// |got - ref| <= rtol * (|ref| + max|ref|) element-wise; NaN fails.
void expect_close(const std::vector<float>& got, const std::vector<double>& ref, double rtol, const char* what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double scale = 0;
  for (double r : ref) scale = std::max(scale, std::fabs(r));
  int reported = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(double(got[i]) - ref[i]);
    const bool ok = std::isfinite(got[i]) && err <= rtol * (std::fabs(ref[i]) + scale);
    if (!ok && reported++ < 5) ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << ref[i];
  }
  EXPECT_EQ(reported, 0) << what << ": " << reported << " elements out of tolerance";
}

// erfc form: 1 + erf(x) cancels to 0 in double for x < -6.
double gelu_ref(double x) { return 0.5 * x * std::erfc(-x / std::sqrt(2.0)); }

// ---- sgemm / linear ---------------------------------------------------------------------------------

struct GemmCase {
  int64_t M, N, K;
};

class SgemmTest : public ::testing::TestWithParam<GemmCase> {};

TEST_P(SgemmTest, AllTransposesAndBetas) {
  const auto [M, N, K] = GetParam();
  for (int ta = 0; ta < 2; ++ta) {
    for (int tb = 0; tb < 2; ++tb) {
      for (float beta : {0.0f, 1.0f}) {
        // Leading dimensions padded beyond the row length, to catch ld/width mix-ups.
        const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
        auto A = random_vector((ta ? K : M) * lda, 1 + ta);
        auto B = random_vector((tb ? N : K) * ldb, 3 + tb);
        auto C0 = random_vector(M * ldc, 7);
        std::vector<float> C(C0);
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? kNaN : C0[i * ldc + j];
        sgemm(pool(), ta, tb, M, N, K, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
        std::vector<float> got;
        std::vector<double> ref;
        for (int64_t i = 0; i < M; ++i) {
          for (int64_t j = 0; j < N; ++j) {
            double s = beta == 0.0f ? 0.0 : C0[i * ldc + j];
            for (int64_t k = 0; k < K; ++k) {
              const double a = ta ? A[k * lda + i] : A[i * lda + k];
              const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
              s += a * b;
            }
            ref.push_back(s);
            got.push_back(C[i * ldc + j]);
          }
          // The padding columns of C are not part of the product and must be left alone.
          for (int64_t j = N; j < ldc; ++j) ASSERT_EQ(C[i * ldc + j], C0[i * ldc + j]) << "sgemm wrote past N";
        }
        std::string what = "sgemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta);
        expect_close(got, ref, 1e-5, what.c_str());
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SgemmTest,
                         ::testing::Values(GemmCase{1, 1, 1}, GemmCase{13, 37, 29}, GemmCase{67, 131, 513},
                                           GemmCase{250, 20, 100}, GemmCase{301, 2100, 19}, GemmCase{5, 300, 700}));

std::vector<double> linear_ref(const std::vector<float>& x, int64_t M, int64_t K, const std::vector<float>& W,
                               const float* bias, int64_t N, bool gelu, const std::vector<float>* residual) {
  std::vector<double> y(M * N);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = bias ? bias[j] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += double(x[i * K + k]) * W[j * K + k];
      if (gelu) s = gelu_ref(s);
      if (residual) s += (*residual)[i * N + j];
      y[i * N + j] = s;
    }
  }
  return y;
}

TEST(Linear, BiasGeluResidualCombinations) {
  const int64_t M = 67, K = 300, N = 150;
  auto x = random_vector(M * K, 11, 0.5f);
  auto W = random_vector(N * K, 12, 0.5f);
  auto bias = random_vector(N, 13);
  auto res = random_vector(M * N, 14);
  for (bool use_bias : {false, true}) {
    for (bool gelu : {false, true}) {
      for (int mode = 0; mode < 3; ++mode) {  // 0: no residual, 1: separate residual, 2: residual aliasing y
        std::vector<float> y(M * N, kNaN);
        const float* r = nullptr;
        if (mode == 1) r = res.data();
        if (mode == 2) {
          y = res;
          r = y.data();
        }
        linear(pool(), x.data(), M, K, W.data(), use_bias ? bias.data() : nullptr, N, y.data(),
               gelu ? Epilogue::Gelu : Epilogue::None, r);
        auto ref = linear_ref(x, M, K, W, use_bias ? bias.data() : nullptr, N, gelu, mode ? &res : nullptr);
        std::string what = "linear bias=" + std::to_string(use_bias) + " gelu=" + std::to_string(gelu) +
                           " residual mode=" + std::to_string(mode);
        expect_close(y, ref, 1e-5, what.c_str());
      }
    }
  }
}

// Pre-packed weights give linear()'s bits exactly (same panels, same kernel), on shapes that take the
// one-row-block path (M <= 512), the several-row-blocks path, N not a multiple of the panel width and K
// over one K block; with every epilogue.
TEST(Linear, PackedWeightsMatchUnpacked) {
  struct Case {
    int64_t M, K, N;
  };
  for (const Case c : {Case{1, 7, 5}, Case{50, 300, 100}, Case{67, 1024, 150}, Case{600, 513, 97}}) {
    auto x = random_vector(c.M * c.K, 51, 0.5f);
    auto W = random_vector(c.N * c.K, 52, 0.5f);
    auto bias = random_vector(c.N, 53);
    auto res = random_vector(c.M * c.N, 54);
    const PackedLinear packed(pool(), W.data(), c.N, c.K);
    EXPECT_EQ(packed.N(), c.N);
    EXPECT_EQ(packed.K(), c.K);
    for (bool gelu : {false, true}) {
      for (int mode = 0; mode < 3; ++mode) {  // 0: no residual, 1: separate residual, 2: residual aliasing y
        std::vector<float> a(c.M * c.N, kNaN), b(c.M * c.N, kNaN);
        const float *ra = nullptr, *rb = nullptr;
        if (mode == 1) ra = rb = res.data();
        if (mode == 2) a = b = res, ra = a.data(), rb = b.data();
        const Epilogue e = gelu ? Epilogue::Gelu : Epilogue::None;
        linear(pool(), x.data(), c.M, c.K, W.data(), bias.data(), c.N, a.data(), e, ra);
        linear(pool(), x.data(), c.M, c.K, packed, bias.data(), b.data(), e, rb);
        EXPECT_EQ(a, b) << "M=" << c.M << " K=" << c.K << " N=" << c.N << " gelu=" << gelu << " mode=" << mode;
      }
    }
  }
  const PackedLinear packed(pool(), random_vector(12, 55).data(), 3, 4);
  std::vector<float> x(5), y(3);
  EXPECT_THROW(linear(pool(), x.data(), 1, 5, packed, nullptr, y.data()), Error);
}

TEST(Linear, GeluAccurateOverWideRange) {
  // x = identity-like so the pre-activations sweep [-12, 12], including the tail where 1 + erf is tiny.
  const int64_t M = 241, K = 1, N = 3;
  std::vector<float> x(M), W = {1.0f, 0.5f, -0.25f};
  for (int64_t i = 0; i < M; ++i) x[i] = -12.0f + 0.1f * i + 0.013f;
  std::vector<float> y(M * N, kNaN);
  linear(pool(), x.data(), M, K, W.data(), nullptr, N, y.data(), Epilogue::Gelu);
  for (int64_t i = 0; i < M * N; ++i) {
    const double pre = double(x[i / N]) * W[i % N], want = gelu_ref(pre);
    // Relative, even in the far negative tail where 1 + erf is tiny (the float rounding of x^2/2 - c
    // inside exp() limits it there to a few 1e-6).
    const double rtol = pre > -4.0 ? 2e-6 : 1e-5;
    EXPECT_NEAR(y[i], want, rtol * std::fabs(want) + 1e-37) << "gelu(" << pre << ")";
  }
}

TEST(Gemm, ImplementationNameIsHonest) {
  const std::string name = gemm_implementation();
#if defined(VTV_WITH_OPENBLAS)
  EXPECT_EQ(name, "openblas");
#elif defined(__AVX512F__)
  EXPECT_NE(name.find("avx512"), std::string::npos) << name;
#elif defined(__AVX2__)
  EXPECT_NE(name.find("avx2"), std::string::npos) << name;
#else
  EXPECT_NE(name.find("scalar"), std::string::npos) << name;
#endif
}

// ---- conv2d -----------------------------------------------------------------------------------------

std::vector<double> conv_ref(const Conv2dShape& s, const std::vector<float>& x, const std::vector<float>& w,
                             const float* bias, const std::vector<float>* residual) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  std::vector<double> y(s.N * s.Co * oh * ow);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t co = 0; co < s.Co; ++co)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double acc = bias ? bias[co] : 0.0;
          for (int64_t ci = 0; ci < s.Ci; ++ci)
            for (int ky = 0; ky < s.k; ++ky)
              for (int kx = 0; kx < s.k; ++kx) {
                int64_t iy = oy * s.stride + ky - s.pad_top, ix = ox * s.stride + kx - s.pad_left;
                if (iy < 0 || ix < 0 || iy >= s.in_h() || ix >= s.in_w()) continue;
                if (s.upsample2x) iy /= 2, ix /= 2;  // nearest x2: upsampled (iy, ix) reads (iy/2, ix/2)
                acc += double(w[((co * s.Ci + ci) * s.k + ky) * s.k + kx]) * x[((n * s.Ci + ci) * s.H + iy) * s.W + ix];
              }
          const int64_t o = ((n * s.Co + co) * oh + oy) * ow + ox;
          if (residual) acc += (*residual)[o];
          y[o] = acc;
        }
  return y;
}

Conv2dShape make_shape(int64_t N, int64_t Ci, int64_t H, int64_t W, int64_t Co, int k, int stride, int pt, int pl, int pb,
                       int pr, bool up) {
  Conv2dShape s;
  s.N = N, s.Ci = Ci, s.H = H, s.W = W, s.Co = Co, s.k = k, s.stride = stride;
  s.pad_top = pt, s.pad_left = pl, s.pad_bottom = pb, s.pad_right = pr, s.upsample2x = up;
  return s;
}

// Which implementation check_conv calls: conv2d (dispatching as configured), or one 3x3 variant.
enum class ConvEntry { kDispatch, kDirect, kWinograd };

void check_conv(const Conv2dShape& s, const char* what, ConvEntry entry = ConvEntry::kDispatch, double rtol = 1e-5) {
  const int64_t ysize = s.N * s.Co * s.out_h() * s.out_w();
  auto x = random_vector(s.N * s.Ci * s.H * s.W, 21);
  auto w = random_vector(s.Co * s.Ci * s.k * s.k, 22, 0.3f);
  auto bias = random_vector(s.Co, 23);
  auto res = random_vector(ysize, 24);
  for (int mode = 0; mode < 3; ++mode) {  // 0: bias only, 1: bias + separate residual, 2: no bias, residual aliasing y
    std::vector<float> y(ysize, kNaN);
    const float* r = nullptr;
    if (mode == 1) r = res.data();
    if (mode == 2) {
      y = res;
      r = y.data();
    }
    const float* b = mode == 2 ? nullptr : bias.data();
    if (entry == ConvEntry::kDirect) {
      conv2d_direct(pool(), s, x.data(), w.data(), b, y.data(), r);
    } else if (entry == ConvEntry::kWinograd) {
      conv2d_winograd(pool(), s, x.data(), w.data(), b, y.data(), r);
    } else {
      conv2d(pool(), s, x.data(), w.data(), b, y.data(), r);
    }
    auto ref = conv_ref(s, x, w, b, mode ? &res : nullptr);
    std::string name = std::string(what) + " mode=" + std::to_string(mode);
    expect_close(y, ref, rtol, name.c_str());
  }
}

TEST(Conv2d, ThreeByThreePadOne) { check_conv(make_shape(2, 5, 9, 11, 7, 3, 1, 1, 1, 1, 1, false), "3x3"); }
TEST(Conv2d, ThreeByThreeManyChannels) { check_conv(make_shape(1, 40, 20, 21, 30, 3, 1, 1, 1, 1, 1, false), "3x3 K>KC"); }
TEST(Conv2d, ThreeByThreeManyBands) {
  // Tall enough for several row bands, spread over the threads (two samples, odd width).
  check_conv(make_shape(2, 5, 64, 70, 11, 3, 1, 1, 1, 1, 1, false), "3x3 bands");
}
TEST(Conv2d, ThreeByThreeChannelGroups) {
  // Too few column panels to balance: output channels are split between threads too.
  check_conv(make_shape(1, 7, 6, 5, 30, 3, 1, 1, 1, 1, 1, false), "3x3 channel groups");
}
TEST(Conv2d, OneByOne) { check_conv(make_shape(2, 37, 7, 9, 19, 1, 1, 0, 0, 0, 0, false), "1x1"); }
TEST(Conv2d, StrideTwoAsymmetricPad) {
  // The VQGAN Downsample: F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 convolution without padding.
  check_conv(make_shape(2, 6, 10, 13, 5, 3, 2, 0, 0, 1, 1, false), "3x3 s2 pad(0,1,0,1)");
}
TEST(Conv2d, UpsampleFolded) { check_conv(make_shape(1, 9, 7, 11, 13, 3, 1, 1, 1, 1, 1, true), "upsample2x 3x3"); }
TEST(Conv2d, UpsampleLarge) { check_conv(make_shape(1, 32, 12, 12, 24, 3, 1, 1, 1, 1, 1, true), "upsample2x 3x3 K>KC"); }

// ---- the two 3x3 variants: direct (reference) and Winograd F(4x4, 3x3) ------------------------------

// Winograd against the double-precision reference, on shapes that take every path of its tiling: output
// sizes that are not multiples of 4 (partial tiles), runs of tiles that wrap to the next tile row and the
// next sample inside one 16-tile vector, tile rows narrower and wider than 16 tiles, output channels not a
// multiple of the GEMM's 8, more than 256 input channels (two K blocks), blocks of two panels, and few
// tiles (output channels split between threads). Every case runs bias, residual and in-place residual.
TEST(Conv3x3Winograd, MatchesReference) {
  struct Case {
    int64_t N, Ci, H, W, Co;
    bool up;
    const char* what;
  };
  const Case cases[] = {
      {1, 3, 5, 7, 2, false, "tiny, partial tiles"},
      {3, 7, 9, 13, 11, false, "3 samples, runs wrap rows and samples"},
      {2, 16, 30, 70, 9, false, "tile rows wider than 16 tiles"},
      {1, 300, 10, 10, 17, false, "Ci > 256: two K blocks"},
      {2, 8, 52, 56, 24, false, "many tiles: two-panel blocks"},
      {1, 24, 7, 9, 40, true, "upsampled"},
      {2, 12, 14, 14, 16, true, "upsampled, two samples"},
      {1, 33, 14, 14, 64, false, "14x14: few tiles, channel groups"},
  };
  for (const Case& c : cases) {
    check_conv(make_shape(c.N, c.Ci, c.H, c.W, c.Co, 3, 1, 1, 1, 1, 1, c.up), c.what, ConvEntry::kWinograd, 2e-5);
    check_conv(make_shape(c.N, c.Ci, c.H, c.W, c.Co, 3, 1, 1, 1, 1, 1, c.up), c.what, ConvEntry::kDirect, 1e-5);
  }
}

// The two variants on the VQGAN decoder's own 3x3 shapes (batch 1; one sample and its channels as in
// ViT-L's decoder), with activations of the decoder's scale (GroupNorm + swish outputs, O(1)) and
// weights of its random-init scale (1/sqrt(fan_in)). The Winograd error is measured against the direct
// conv (itself within ~1e-7 of double precision) relative to the output's largest value; printed, and
// held to 5e-5. Measured on the dev machine (AVX-512): max 1.0e-5 to 1.9e-5, rms 4e-7 to 7e-7.
TEST(Conv3x3Winograd, ErrorOnDecoderShapes) {
  struct Case {
    int64_t Ci, H, Co;
    bool up;
  };
  const Case cases[] = {{512, 14, 512, false}, {512, 14, 512, true}, {512, 28, 256, false}, {256, 28, 256, true},
                        {256, 56, 256, false}, {256, 56, 256, true}, {256, 112, 128, false}, {128, 112, 128, true},
                        {128, 224, 128, false}};
  for (const Case& c : cases) {
    const Conv2dShape s = make_shape(1, c.Ci, c.H, c.H, c.Co, 3, 1, 1, 1, 1, 1, c.up);
    const int64_t ysize = s.Co * s.out_h() * s.out_w();
    auto x = random_vector(s.Ci * s.H * s.W, 31);
    auto w = random_vector(s.Co * s.Ci * 9, 32, 1.0f / std::sqrt(float(s.Ci * 9)));
    auto b = random_vector(s.Co, 33, 0.1f);
    std::vector<float> yd(ysize, kNaN), yw(ysize, kNaN);
    conv2d_direct(pool(), s, x.data(), w.data(), b.data(), yd.data());
    conv2d_winograd(pool(), s, x.data(), w.data(), b.data(), yw.data());
    double scale = 0, max_err = 0, sq = 0;
    for (int64_t i = 0; i < ysize; ++i) {
      ASSERT_TRUE(std::isfinite(yw[i])) << "element " << i;
      scale = std::max(scale, std::fabs(double(yd[i])));
      const double e = std::fabs(double(yw[i]) - yd[i]);
      max_err = std::max(max_err, e);
      sq += e * e;
    }
    const double rms = std::sqrt(sq / ysize);
    std::printf("winograd vs direct, %s%ldx%ld %ld->%ld: max |d| %.2e, rms %.2e of max|y| %.2f\n", c.up ? "up2x " : "",
                long(s.out_h()), long(s.out_w()), long(c.Ci), long(c.Co), max_err / scale, rms / scale, scale);
    EXPECT_LE(max_err, 5e-5 * scale) << c.Ci << "->" << c.Co << " at " << s.out_h();
  }
}

// The setting picks the variant conv2d runs: kDirect gives conv2d_direct's bits, kWinograd
// conv2d_winograd's; shapes Winograd cannot take stay direct under every setting.
TEST(Conv3x3Winograd, SettingSelectsVariant) {
  const Conv2dShape s = make_shape(1, 64, 20, 20, 64, 3, 1, 1, 1, 1, 1, false);
  auto x = random_vector(s.Ci * s.H * s.W, 41);
  auto w = random_vector(s.Co * s.Ci * 9, 42, 0.05f);
  const int64_t ysize = s.Co * s.out_h() * s.out_w();
  std::vector<float> yd(ysize), yw(ysize), y(ysize);
  conv2d_direct(pool(), s, x.data(), w.data(), nullptr, yd.data());
  conv2d_winograd(pool(), s, x.data(), w.data(), nullptr, yw.data());
  ASSERT_NE(yd, yw);
  const Conv3x3Algo saved = conv3x3_algo();
  set_conv3x3_algo(Conv3x3Algo::kDirect);
  EXPECT_EQ(conv3x3_choice(s, 2), Conv3x3Algo::kDirect);
  conv2d(pool(), s, x.data(), w.data(), nullptr, y.data());
  EXPECT_EQ(y, yd);
  set_conv3x3_algo(Conv3x3Algo::kWinograd);
  EXPECT_EQ(conv3x3_choice(s, 2), Conv3x3Algo::kWinograd);
  conv2d(pool(), s, x.data(), w.data(), nullptr, y.data());
  EXPECT_EQ(y, yw);
  EXPECT_EQ(conv3x3_choice(make_shape(1, 64, 20, 20, 64, 3, 2, 0, 0, 1, 1, false), 2), Conv3x3Algo::kDirect);
  EXPECT_EQ(conv3x3_choice(make_shape(1, 64, 20, 20, 64, 1, 1, 0, 0, 0, 0, false), 2), Conv3x3Algo::kDirect);
  set_conv3x3_algo(saved);
  EXPECT_THROW(conv2d_winograd(pool(), make_shape(1, 4, 8, 8, 4, 3, 2, 1, 1, 1, 1, false), x.data(), w.data(),
                               nullptr, y.data()),
               Error);
}

// A weight cache gives the uncached bits, transforms each weight tensor once, and refuses a weight
// pointer seen with another shape.
TEST(Conv3x3Winograd, WeightCacheReusesTransforms) {
  const Conv2dShape s = make_shape(2, 40, 16, 12, 24, 3, 1, 1, 1, 1, 1, false);
  auto x = random_vector(s.N * s.Ci * s.H * s.W, 61);
  auto w = random_vector(s.Co * s.Ci * 9, 62, 0.05f);
  auto b = random_vector(s.Co, 63);
  const int64_t ysize = s.N * s.Co * s.out_h() * s.out_w();
  std::vector<float> plain(ysize, kNaN), cached(ysize, kNaN);
  conv2d_winograd(pool(), s, x.data(), w.data(), b.data(), plain.data());
  ConvWeightCache cache;
  conv2d_winograd(pool(), s, x.data(), w.data(), b.data(), cached.data(), nullptr, &cache);
  EXPECT_EQ(plain, cached);
  const int64_t bytes = cache.bytes();
  EXPECT_EQ(bytes, int64_t(36 * 24 * 40 * sizeof(float)));  // 36 x Co (a multiple of 8 here) x Ci
  std::fill(cached.begin(), cached.end(), kNaN);
  conv2d_winograd(pool(), s, x.data(), w.data(), b.data(), cached.data(), nullptr, &cache);
  EXPECT_EQ(plain, cached);
  EXPECT_EQ(cache.bytes(), bytes);
  Conv2dShape other = s;
  other.Ci = 20;
  EXPECT_THROW(conv2d_winograd(pool(), other, x.data(), w.data(), b.data(), cached.data(), nullptr, &cache), Error);
}

TEST(Conv2d, ShapeArithmetic) {
  auto s = make_shape(1, 1, 7, 9, 1, 3, 2, 0, 0, 1, 1, false);
  EXPECT_EQ(s.out_h(), 3);  // torch: pad to 8x10, then floor((8-3)/2)+1 = 3, floor((10-3)/2)+1 = 4
  EXPECT_EQ(s.out_w(), 4);
  s.upsample2x = true, s.stride = 1, s.pad_top = s.pad_left = 1;
  EXPECT_EQ(s.out_h(), 14);
  EXPECT_EQ(s.out_w(), 18);
}

// ---- norms ------------------------------------------------------------------------------------------

TEST(LayerNorm, MatchesReferenceAndAliases) {
  const int64_t rows = 7, C = 1027;
  auto x = random_vector(rows * C, 31, 3.0f);
  for (auto& v : x) v += 2.0f;  // a non-zero mean
  auto g = random_vector(C, 32), b = random_vector(C, 33);
  std::vector<double> ref(rows * C);
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, v = 0;
    for (int64_t c = 0; c < C; ++c) m += x[r * C + c];
    m /= C;
    for (int64_t c = 0; c < C; ++c) v += (x[r * C + c] - m) * (x[r * C + c] - m);
    v /= C;
    for (int64_t c = 0; c < C; ++c) ref[r * C + c] = (x[r * C + c] - m) / std::sqrt(v + 1e-6) * g[c] + b[c];
  }
  std::vector<float> y(rows * C, kNaN);
  layer_norm(pool(), x.data(), rows, C, g.data(), b.data(), 1e-6f, y.data());
  expect_close(y, ref, 1e-5, "layer_norm");
  std::vector<float> inplace(x);
  layer_norm(pool(), inplace.data(), rows, C, g.data(), b.data(), 1e-6f, inplace.data());
  expect_close(inplace, ref, 1e-5, "layer_norm in place");
}

void check_group_norm(int64_t N, int64_t C, int64_t HW, int groups, bool swish) {
  auto x = random_vector(N * C * HW, 41, 2.0f);
  for (auto& v : x) v += 1.5f;
  auto g = random_vector(C, 42), b = random_vector(C, 43);
  const int64_t cpg = C / groups;
  std::vector<double> ref(N * C * HW);
  for (int64_t n = 0; n < N; ++n)
    for (int gi = 0; gi < groups; ++gi) {
      const int64_t base = (n * C + gi * cpg) * HW, cnt = cpg * HW;
      double m = 0, v = 0;
      for (int64_t i = 0; i < cnt; ++i) m += x[base + i];
      m /= cnt;
      for (int64_t i = 0; i < cnt; ++i) v += (x[base + i] - m) * (x[base + i] - m);
      v /= cnt;
      for (int64_t i = 0; i < cnt; ++i) {
        const int64_t c = gi * cpg + i / HW;
        double y = (x[base + i] - m) / std::sqrt(v + 1e-6) * g[c] + b[c];
        if (swish) y = y / (1.0 + std::exp(-y));
        ref[base + i] = y;
      }
    }
  std::vector<float> y(x.size(), kNaN);
  group_norm(pool(), x.data(), N, C, HW, groups, 1e-6f, g.data(), b.data(), swish, y.data());
  std::string what = "group_norm swish=" + std::to_string(swish) + " HW=" + std::to_string(HW);
  expect_close(y, ref, 1e-5, what.c_str());
  std::vector<float> inplace(x);
  group_norm(pool(), inplace.data(), N, C, HW, groups, 1e-6f, g.data(), b.data(), swish, inplace.data());
  expect_close(inplace, ref, 1e-5, (what + " in place").c_str());
}

TEST(GroupNorm, Plain) { check_group_norm(2, 12, 37, 4, false); }
TEST(GroupNorm, Swish) { check_group_norm(2, 12, 37, 4, true); }
TEST(GroupNorm, LargeGroups) { check_group_norm(1, 32, 4001, 2, true); }

// ---- attention --------------------------------------------------------------------------------------

// Reference per-head attention output O[b][i][h][:] (no patching).
std::vector<double> mha_ref(const std::vector<float>& qkv, int64_t B, int64_t N, int H, int dh, double scale) {
  const int64_t C = int64_t(H) * dh, row = 3 * C;
  std::vector<double> out(B * N * C);
  std::vector<double> s(N);
  for (int64_t b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int64_t i = 0; i < N; ++i) {
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j < N; ++j) {
          double d = 0;
          for (int e = 0; e < dh; ++e)
            d += double(qkv[(b * N + i) * row + h * dh + e]) * qkv[(b * N + j) * row + C + h * dh + e];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        for (int64_t j = 0; j < N; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (int e = 0; e < dh; ++e) {
          double o = 0;
          for (int64_t j = 0; j < N; ++j) o += s[j] / sum * qkv[(b * N + j) * row + 2 * C + h * dh + e];
          out[(b * N + i) * C + h * dh + e] = o;
        }
      }
  return out;
}

TEST(MhaAttention, MatchesReference) {
  for (auto [N, H, dh] : {std::tuple<int64_t, int, int>{13, 4, 8}, {50, 16, 64}, {99, 3, 32}}) {
    const int64_t B = 3, C = int64_t(H) * dh;
    auto qkv = random_vector(B * N * 3 * C, 51, 2.0f);
    std::vector<float> out(B * N * C, kNaN);
    const float scale = 1.0f / std::sqrt(float(dh));
    mha_attention(pool(), qkv.data(), B, N, H, dh, scale, out.data());
    expect_close(out, mha_ref(qkv, B, N, H, dh, scale), 1e-5, "mha_attention");
  }
}

TEST(MhaAttention, HeadPatchBitLayoutShiftAndCapture) {
  const int64_t B = 3, N = 50;
  const int H = 4, dh = 16;
  const int64_t C = int64_t(H) * dh, shift = 98, tokens = N + shift, bit_offset = 13;
  const int64_t stride = (bit_offset + H * N + 7) / 8 + 5;  // bytes per sample, with slack
  auto qkv = random_vector(B * N * 3 * C, 61);
  auto means = random_vector(tokens * H * dh, 62, 5.0f);
  // Random mask bits, set through the documented formula: bit (bit_offset + h*N + p) of sample b is at
  // byte b*stride + (bit >> 3), position bit & 7. Sample 2 has every head of position 0 patched.
  std::vector<uint8_t> mask(B * stride, 0);
  std::mt19937 rng(63);
  std::vector<bool> patched(B * H * N, false);
  for (int64_t b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int64_t p = 0; p < N; ++p) {
        const bool on = (rng() % 3 == 0) || (b == 2 && p == 0);
        if (!on) continue;
        patched[(b * H + h) * N + p] = true;
        const int64_t bit = bit_offset + h * N + p;
        mask[b * stride + (bit >> 3)] |= uint8_t(1u << (bit & 7));
      }
  // Bits outside this layer's range are set too; they must be ignored.
  for (int64_t b = 0; b < B; ++b) mask[b * stride] |= 0x0f, mask[b * stride + stride - 1] = 0xff;
  for (int64_t bit = 0; bit < bit_offset; ++bit) mask[(bit >> 3)] |= uint8_t(1u << (bit & 7));

  HeadPatch patch;
  patch.mask = mask.data();
  patch.mask_stride = stride;
  patch.bit_offset = bit_offset;
  patch.means = means.data();
  patch.position_shift = int(shift);

  auto capture0 = random_vector(N * C, 64);
  std::vector<float> capture(capture0), out(B * N * C, kNaN);
  const float scale = 0.25f;
  mha_attention(pool(), qkv.data(), B, N, H, dh, scale, out.data(), &patch, capture.data());

  auto ref = mha_ref(qkv, B, N, H, dh, scale);
  int64_t n_patched = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t p = 0; p < N; ++p)
      for (int h = 0; h < H; ++h) {
        const int64_t src = p == 0 ? 0 : p + shift;
        const bool is_patched = patched[(b * H + h) * N + p];
        n_patched += is_patched;
        for (int e = 0; e < dh; ++e) {
          const int64_t o = (b * N + p) * C + h * dh + e;
          if (is_patched) {
            ASSERT_EQ(out[o], means[(src * H + h) * dh + e]) << "patched b=" << b << " p=" << p << " h=" << h;
            ref[o] = out[o];
          }
        }
      }
  EXPECT_GT(n_patched, B * H * N / 5);
  expect_close(out, ref, 1e-5, "mha_attention patched (unpatched heads)");

  std::vector<double> cref(N * C);
  for (int64_t i = 0; i < N * C; ++i) {
    cref[i] = capture0[i];
    for (int64_t b = 0; b < B; ++b) cref[i] += ref[b * N * C + i];
  }
  expect_close(capture, cref, 1e-5, "mha_attention capture");
}

TEST(MhaAttention, ZeroShiftPatchUsesSamePosition) {
  const int64_t B = 1, N = 5;
  const int H = 2, dh = 4, C = H * dh;
  auto qkv = random_vector(B * N * 3 * C, 71);
  auto means = random_vector(N * H * dh, 72);
  std::vector<uint8_t> mask(2, 0xff);  // every (head, position) patched
  HeadPatch patch{mask.data(), 2, 0, means.data(), 0};
  std::vector<float> out(B * N * C, kNaN);
  mha_attention(pool(), qkv.data(), B, N, H, dh, 0.5f, out.data(), &patch);
  for (int64_t p = 0; p < N; ++p)
    for (int h = 0; h < H; ++h)
      for (int e = 0; e < dh; ++e) ASSERT_EQ(out[p * C + h * dh + e], means[(p * H + h) * dh + e]);
}

void check_spatial_attention(int64_t B, int64_t C, int64_t HW) {
  auto q = random_vector(B * C * HW, 81), k = random_vector(B * C * HW, 82), v = random_vector(B * C * HW, 83);
  std::vector<float> out(B * C * HW, kNaN);
  spatial_attention(pool(), q.data(), k.data(), v.data(), B, C, HW, out.data());
  std::vector<double> ref(B * C * HW), s(HW);
  const double scale = 1.0 / std::sqrt(double(C));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < HW; ++i) {
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < HW; ++j) {
        double d = 0;
        for (int64_t c = 0; c < C; ++c) d += double(q[(b * C + c) * HW + i]) * k[(b * C + c) * HW + j];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      for (int64_t j = 0; j < HW; ++j) sum += (s[j] = std::exp(s[j] - mx));
      for (int64_t c = 0; c < C; ++c) {
        double o = 0;
        for (int64_t j = 0; j < HW; ++j) o += s[j] / sum * v[(b * C + c) * HW + j];
        ref[(b * C + c) * HW + i] = o;
      }
    }
  expect_close(out, ref, 1e-5, "spatial_attention");
}

TEST(SpatialAttention, Small) { check_spatial_attention(2, 16, 37); }
TEST(SpatialAttention, QueryBlocks) { check_spatial_attention(1, 8, 600); }

// ---- argmax -----------------------------------------------------------------------------------------

TEST(ArgmaxRows, FirstIndexOnTies) {
  const int64_t rows = 300, cols = 37;
  std::mt19937 rng(91);
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = float(int(rng() % 5)) - 2.0f + 0.5f;  // few distinct values: many ties
  std::vector<int32_t> out(rows, -1);
  argmax_rows(pool(), x.data(), rows, cols, out.data());
  for (int64_t r = 0; r < rows; ++r) {
    int64_t best = 0;
    for (int64_t c = 1; c < cols; ++c)
      if (x[r * cols + c] > x[r * cols + best]) best = c;
    ASSERT_EQ(out[r], best) << "row " << r;
  }
}

}  // namespace
}  // namespace vtv::cpu
