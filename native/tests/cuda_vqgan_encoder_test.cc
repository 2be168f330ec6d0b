// The VQGAN encoder on the GPU (cuda::VqganEncoderCuda and its kernels) against the CPU
// (cpu::conv2d for the Downsample, a direct double loop for the quantisation, model::VqganEncoder for the
// whole encoder, and the cpu engine's encode_tokens for the wiring). Whole-encoder runs use the tiny
// preset and real layer widths (random weights). Tokens are compared for exact agreement: fp32 must
// agree on at least 99% of tokens (the GPU sums each conv in another order, so latents differ in the
// last bits, and a token flips only where two codes are that close to equidistant; quantisation itself
// is exact and equal on both sides); bf16 must agree on at least kBf16EncoderTokenAgreement of tokens,
// and its latents' relative error is bounded.
// Host outputs are poisoned before each run so an element never written shows. Skipped, with the
// reason, where no GPU is usable.
#include <gtest/gtest.h>

#include "cuda_test_util.h"

#ifdef VTV_WITH_CUDA
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "core/thread_pool.h"
#include "cpu/conv.h"
#include "cpu/norm.h"
#include "cuda/device_buffer.h"
#include "cuda/vqgan_encoder_cuda.h"
#include "cuda/vqgan_kernels.h"
#include "model/vqgan_blocks.h"
#include "model/vqgan_encoder.h"
#include "model/weights_view.h"
#include "cuda_conv_check.h"
#include "test_weights.h"
#include "vtv/config.h"
#include "vtv/engine.h"
#include "vtv/error.h"
#include "vtv/weights.h"

namespace vtv::test {
namespace {

// ---- the Downsample conv -------------------------------------------------------------------------------

struct DownCase {
  const char* name;
  int N, Ci, Co, H, W;
  bool gn, stats;
  int groups;
};

// cuda::conv2d with downsample2x against cpu::conv2d with stride 2 and pad (0, 1, 0, 1) (the shape
// model::downsample_shape gives the CPU encoder), plus the statistics it leaves.
void run_down_case(const DownCase& dc, bool bf16) {
  const int64_t HW = int64_t(dc.H) * dc.W;
  cpu::Conv2dShape s;
  s.N = dc.N;
  s.Ci = dc.Ci;
  s.Co = dc.Co;
  s.H = dc.H;
  s.W = dc.W;
  s.k = 3;
  s.stride = 2;
  s.pad_top = s.pad_left = 0;
  s.pad_bottom = s.pad_right = 1;
  const int64_t Ho = s.out_h(), Wo = s.out_w();
  const int64_t in_n = dc.N * dc.Ci * HW, out_n = dc.N * dc.Co * Ho * Wo, K = int64_t(dc.Ci) * 9;
  std::vector<float> x = random_vector(size_t(in_n), 81, 1.0f, 0.3f);
  std::vector<float> w = random_vector(size_t(dc.Co * K), 82, 1.0f / std::sqrt(float(K)));
  std::vector<float> b = random_vector(size_t(dc.Co), 83, 0.05f);
  std::vector<float> gamma = random_vector(size_t(dc.Ci), 84, 0.1f, 1.0f), beta = random_vector(size_t(dc.Ci), 85, 0.1f);
  const float eps = 1e-6f;
  std::vector<float> xin = x;
  if (dc.gn) cpu::group_norm(pool(), x.data(), dc.N, dc.Ci, HW, dc.groups, eps, gamma.data(), beta.data(), true, xin.data());
  std::vector<float> wref = w;
  if (bf16) {
    xin = rounded_bf16(xin);
    wref = rounded_bf16(w);
  }
  std::vector<float> ref(static_cast<size_t>(out_n));
  cpu::conv2d(pool(), s, xin.data(), wref.data(), b.data(), ref.data());

  cuda::DeviceBuffer<float> dx(x), db(b), dg(gamma), dbe(beta), dy(static_cast<size_t>(out_n)), dw32;
  cuda::DeviceBuffer<uint16_t> dw16;
  if (bf16) dw16 = cuda::DeviceBuffer<uint16_t>(to_bf16_bits(w));
  else dw32 = cuda::DeviceBuffer<float>(w);
  cuda::DeviceBuffer<double> din_stats(group_sums(x, dc.N, dc.Ci, HW, dc.groups));
  cuda::DeviceBuffer<double> dout_stats(size_t(dc.N) * dc.groups * 2);
  dy.poison();
  dout_stats.poison();
  cuda::ConvArgs a;
  a.x = dx.get();
  a.N = dc.N;
  a.Ci = dc.Ci;
  a.H = dc.H;
  a.W = dc.W;
  a.downsample2x = true;
  a.Co = dc.Co;
  a.k = 3;
  a.w_f32 = bf16 ? nullptr : dw32.get();
  a.w_bf16 = bf16 ? dw16.get() : nullptr;
  a.bias = db.get();
  a.y = dy.get();
  if (dc.gn) a.norm = cuda::GroupNormIn{din_stats.get(), dg.get(), dbe.get(), dc.groups, eps, true};
  a.stats_out = dc.stats ? dout_stats.get() : nullptr;
  a.stats_groups = dc.groups;
  check_conv_output(a, Ho, Wo, ref, bf16, dc.name, std::string("downsample ") + dc.name, 86, eps);
}

const DownCase kDownCases[] = {
    // name                          N  Ci   Co   H    W    gn     stats  G
    {"128 224->112", 1, 128, 128, 224, 224, false, true, 32},
    {"256 28->14", 3, 256, 256, 28, 28, false, true, 32},
    {"tiny 16 56->28 gn", 2, 16, 16, 56, 56, true, true, 4},
    {"odd 24->40 9x13", 2, 24, 40, 9, 13, true, false, 4},
};

TEST(CudaVqganEncoderKernels, DownsampleConvF32MatchesCpu) {
  VTV_REQUIRE_GPU();
  for (const DownCase& c : kDownCases) run_down_case(c, false);
}

TEST(CudaVqganEncoderKernels, DownsampleConvBf16MatchesCpuOnRoundedInputs) {
  VTV_REQUIRE_GPU();
  for (const DownCase& c : kDownCases) run_down_case(c, true);
}

TEST(CudaVqganEncoderKernels, DownsampleRejectsBadArguments) {
  VTV_REQUIRE_GPU();
  cuda::DeviceBuffer<float> x(64), y(64), b(8), w(8 * 8 * 9);
  cuda::ConvArgs a;
  a.x = x.get();
  a.N = 1;
  a.Ci = 8;
  a.H = a.W = 2;
  a.Co = 8;
  a.k = 1;
  a.w_f32 = w.get();
  a.bias = b.get();
  a.y = y.get();
  a.downsample2x = true;
  EXPECT_THROW(cuda::conv2d(a), Error);  // 1x1
  a.k = 3;
  a.upsample2x = true;
  EXPECT_THROW(cuda::conv2d(a), Error);  // both directions
}

// map_pixels exactly as model::VqganEncoder (fmaf(x, std, mean), then 2t - 1), padding channels zero.
TEST(CudaVqganEncoderKernels, MapPixelsMatchesCpuAndZeroesPadding) {
  VTV_REQUIRE_GPU();
  const int N = 2, C = 8;
  const std::vector<float> canvases = make_canvases(N, 91);
  cuda::DeviceBuffer<float> dc(canvases), dx(size_t(N) * C * kImage * kImage);
  dx.poison();
  cuda::map_pixels(dc.get(), N, int64_t(kImage) * kImage, C, dx.get());
  cuda::device_synchronize();
  const std::vector<float> x = dx.to_host(dx.size());
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
  const int64_t plane = int64_t(kImage) * kImage;
  int64_t mismatches = 0;
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t i = 0; i < plane; ++i) {
        const float got = x[size_t((n * C + c) * plane + i)];
        const float want = c < 3 ? 2.0f * std::fmaf(canvases[size_t((n * 3 + c) * plane + i)], stdv[c], mean[c]) - 1.0f : 0.0f;
        if (!(got == want)) ++mismatches;
      }
  EXPECT_EQ(mismatches, 0) << "map_pixels values differing from 2 * fmaf(x, std, mean) - 1 (or non-zero padding)";
}

// nearest_code against a direct double loop, with a duplicated code (ties go to the first index), a
// latent exactly on a code, and an all-NaN latent (code 0, as the CPU).
TEST(CudaVqganEncoderKernels, NearestCodeIsExactWithFirstIndexTies) {
  VTV_REQUIRE_GPU();
  for (int E : {256, 16}) {
    const int N = 3, T = kPatches, V = E == 256 ? 1024 : 64;
    std::vector<float> codebook = random_vector(size_t(V) * E, 101);
    std::copy(codebook.begin() + 5 * E, codebook.begin() + 6 * E, codebook.begin() + 700 % V * E);  // code 700%V == code 5
    std::vector<float> z = random_vector(size_t(N) * E * T, 102, 0.8f);
    for (int e = 0; e < E; ++e) {
      z[size_t((0 * E + e) * T + 3)] = codebook[size_t(5 * E + e)];    // on the duplicated code: 5 wins
      z[size_t((1 * E + e) * T + 10)] = codebook[size_t(17 * E + e)];  // on code 17
      z[size_t((2 * E + e) * T + 0)] = std::numeric_limits<float>::quiet_NaN();
    }
    std::vector<double> norms(static_cast<size_t>(V));
    for (int v = 0; v < V; ++v) {
      double s = 0;
      for (int e = 0; e < E; ++e) s += double(codebook[size_t(v * E + e)]) * codebook[size_t(v * E + e)];
      norms[size_t(v)] = s;
    }
    std::vector<int32_t> want(size_t(N) * T);
    for (int n = 0; n < N; ++n)
      for (int t = 0; t < T; ++t) {
        double best = std::numeric_limits<double>::infinity();
        int32_t arg = 0;
        for (int v = 0; v < V; ++v) {
          double dot = 0;
          for (int e = 0; e < E; ++e) dot += double(z[size_t((n * E + e) * T + t)]) * codebook[size_t(v * E + e)];
          const double d = norms[size_t(v)] - 2.0 * dot;
          if (d < best) {
            best = d;
            arg = v;
          }
        }
        want[size_t(n * T + t)] = arg;
      }
    EXPECT_EQ(want[3], 5);
    EXPECT_EQ(want[size_t(T + 10)], 17);
    EXPECT_EQ(want[size_t(2 * T)], 0);
    cuda::DeviceBuffer<float> dz(z), dcb(codebook);
    cuda::DeviceBuffer<double> dn(norms);
    cuda::DeviceBuffer<int32_t> dt(want.size());
    dt.poison();
    cuda::nearest_code(dz.get(), N, E, T, dcb.get(), dn.get(), V, dt.get());
    cuda::device_synchronize();
    const std::vector<int32_t> got = dt.to_host(want.size());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "E " << E << " token " << i;
  }
}

// ---- the whole encoder ---------------------------------------------------------------------------------

struct EncModel {
  ModelConfig c;
  TempFile file{"vqgan_enc_cuda"};
  std::shared_ptr<Weights> weights;
  model::VqganEncoderW w;
  EncModel(const ModelConfig& config, uint32_t seed) : c(config) {
    RandomModelOptions o;
    o.seed = seed;
    o.mae = false;
    o.vqgan_encoder = true;
    write_random_model(file.path(), c, o);
    weights = Weights::open({file.path()});
    w = model::bind_vqgan_encoder(*weights, c);
  }
};

// Encodes n canvases on both sides; returns the token agreement (also printed and reported) and
// checks the latents against `latent_tol` (relative, max norm).
double compare_encoders(const EncModel& m, Precision prec, int n, int max_chunk, double latent_tol) {
  const std::vector<float> canvases = make_canvases(n, 111);
  std::vector<const float*> ptrs;
  for (int i = 0; i < n; ++i) ptrs.push_back(canvases.data() + int64_t(i) * kCanvasFloats);
  const int64_t zf = int64_t(m.c.vq.embed_dim) * kPatches;
  std::vector<int32_t> ref_tok(size_t(n) * kPatches);
  std::vector<float> ref_z(size_t(n * zf));
  model::VqganEncoder cpu_enc(m.c, m.w);
  const auto t0 = std::chrono::steady_clock::now();
  cpu_enc.run(pool(), ptrs, ref_tok.data(), ref_z.data());
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  cuda::VqganEncoderCuda gpu(m.c, m.w, prec, max_chunk);
  std::vector<int32_t> tok(ref_tok.size(), -1);       // poisoned: -1 is never a code
  std::vector<float> z(ref_z.size(), NAN);             // poisoned
  cuda::GpuTimer timer;
  timer.start();
  gpu.encode(canvases.data(), n, tok.data(), z.data());
  const float ms = timer.stop_ms();
  int64_t same = 0, out_of_range = 0;
  for (size_t i = 0; i < tok.size(); ++i) {
    if (tok[i] < 0 || tok[i] >= m.c.vq.n_embed) ++out_of_range;
    if (tok[i] == ref_tok[i]) ++same;
  }
  EXPECT_EQ(out_of_range, 0) << "tokens never written or outside [0, n_embed)";
  const double agreement = double(same) / double(tok.size());
  const Diff d = compare(z, ref_z);
  const std::string mode = precision_name(prec);
  EXPECT_LE(d.rel, latent_tol) << m.c.name << " " << mode << " latents: " << describe(d);
  std::printf("%s %s: token agreement %.4f (%lld of %lld); latents %s; gpu %.2f ms, cpu %.0f ms\n", m.c.name.c_str(),
              mode.c_str(), agreement, (long long)same, (long long)tok.size(), describe(d).c_str(), ms, cpu_ms);
  report("vqgan encoder " + m.c.name, mode, d.rel, agreement, ms);
  // Re-encoding gives the same tokens (no state leaks between passes).
  std::vector<int32_t> again(tok.size(), -1);
  gpu.encode(canvases.data(), n, again.data());
  EXPECT_EQ(again, tok) << "a second encode of the same canvases differs";
  return agreement;
}

TEST(CudaVqganEncoder, TinyFp32MatchesCpuEncoder) {
  VTV_REQUIRE_GPU();
  EncModel m(preset("tiny"), 121);
  // max_chunk 2 over 5 canvases: passes of 2, 2 and 1.
  EXPECT_GE(compare_encoders(m, Precision::F32, 5, 2, 1e-4), 0.99);
}

TEST(CudaVqganEncoder, TinyBf16TokensAgree) {
  VTV_REQUIRE_GPU();
  EncModel m(preset("tiny"), 122);
  // bf16 weights and activations through ~20 convolutions: latents within 5% of their range; a token
  // flips only where two codes are nearly equidistant, which bf16 cannot rule out, hence the bound.
  EXPECT_GE(compare_encoders(m, Precision::BF16, 3, 4, 5e-2), kBf16EncoderTokenAgreement);
}

TEST(CudaVqganEncoder, RealWidthFp32MatchesCpuEncoder) {
  VTV_REQUIRE_GPU();
  VTV_SKIP_ON_EMULATOR("the real-width encoder");
  EncModel m(preset("mae-vqgan-vit-large"), 123);
  EXPECT_GE(compare_encoders(m, Precision::F32, 2, 16, 1e-4), 0.99);
}

TEST(CudaVqganEncoder, RealWidthBf16TokensAgree) {
  VTV_REQUIRE_GPU();
  VTV_SKIP_ON_EMULATOR("the real-width encoder");
  EncModel m(preset("mae-vqgan-vit-large"), 124);
  EXPECT_GE(compare_encoders(m, Precision::BF16, 2, 16, 5e-2), kBf16EncoderTokenAgreement);
}

// Engine wiring: backend "cuda" encode_tokens agrees with backend "cpu" (tiny, fp32).
TEST(CudaVqganEncoder, EngineEncodeTokensMatchesCpuBackend) {
  VTV_REQUIRE_GPU();
  const ModelConfig c = preset("tiny");
  TempFile f("vqgan_enc_engine");
  RandomModelOptions o;
  o.seed = 131;
  o.vqgan_encoder = true;
  write_random_model(f.path(), c, o);
  auto weights = Weights::open({f.path()});
  EngineOptions cpu_o, gpu_o;
  cpu_o.backend = BackendKind::Cpu;
  gpu_o.backend = BackendKind::Cuda;
  cpu_o.need_vqgan_encoder = gpu_o.need_vqgan_encoder = true;
  Engine cpu_e(c, weights, cpu_o), gpu_e(c, weights, gpu_o);
  const int n = 3;
  const std::vector<float> canvases = make_canvases(n, 132);
  std::vector<int32_t> tc(size_t(n) * kPatches, -1), tg(tc.size(), -1);
  cpu_e.encode_tokens(canvases.data(), n, tc.data());
  gpu_e.encode_tokens(canvases.data(), n, tg.data());
  int64_t same = 0;
  for (size_t i = 0; i < tc.size(); ++i) {
    ASSERT_GE(tg[i], 0) << "token " << i << " never written";
    same += tc[i] == tg[i];
  }
  const double agreement = double(same) / double(tc.size());
  std::printf("engine encode_tokens cuda vs cpu: agreement %.4f\n", agreement);
  EXPECT_GE(agreement, 0.99);
}

}  // namespace
}  // namespace vtv::test

#else  // !VTV_WITH_CUDA

VTV_CUDA_NOT_COMPILED_IN_TEST(CudaVqganEncoder)

#endif
