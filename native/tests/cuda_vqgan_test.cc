// The VQGAN decoder and the pixel losses on the GPU (cuda::VqganCuda and its kernels) against the CPU
// (cpu::conv2d, cpu::group_norm, cpu::spatial_attention, model::VqganDecoder, model::score_cell).
// Kernel tests run at the real layer widths (512/256/128 channels, 14..224 px) and at the tiny preset's;
// whole-decoder tests run the tiny preset and the real decoder (random weights, 2 grids). fp32 must
// agree to 1e-4 relative on pixels (before rounding); bf16 is held to the tolerances stated at each
// test, and the loss differences are printed. Device outputs are poisoned (NaN) before each run so an
// element never written shows. Skipped, with the reason, where no GPU is usable.
#include <gtest/gtest.h>

#include "cuda_test_util.h"

#ifdef VTV_WITH_CUDA
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "cpu/conv.h"
#include "cpu/norm.h"
#include "cuda/device_buffer.h"
#include "cuda/kernels.h"
#include "cuda/vqgan_cuda.h"
#include "cuda/variants.h"
#include "cuda/vqgan_kernels.h"
#include "model/losses.h"
#include "model/vqgan_decoder.h"
#include "model/weights_view.h"
#include "model/work_sharing.h"
#include "cuda_conv_check.h"
#include "test_weights.h"
#include "vtv/config.h"
#include "vtv/engine.h"
#include "vtv/error.h"
#include "vtv/weights.h"

namespace vtv::test {
namespace {

struct ConvCase {
  const char* name;
  int N, Ci, Co, H, W, k;
  bool up, gn, swish, residual, stats;
  int groups;
};

// One conv through cuda::conv2d against cpu::group_norm (prologue) + cpu::conv2d (+ residual), and the
// statistics it leaves against those of the CPU output (checked by normalising the GPU output with them,
// group_norm_apply, against cpu::group_norm of the same output).
void run_conv_case(const ConvCase& cc, bool bf16) {
  const int64_t HW = int64_t(cc.H) * cc.W, Ho = cc.up ? 2 * cc.H : cc.H, Wo = cc.up ? 2 * cc.W : cc.W;
  const int64_t in_n = cc.N * cc.Ci * HW, out_n = cc.N * cc.Co * Ho * Wo, K = int64_t(cc.Ci) * cc.k * cc.k;
  std::vector<float> x = random_vector(size_t(in_n), 11, 1.0f, 0.3f);
  std::vector<float> w = random_vector(size_t(cc.Co * K), 12, 1.0f / std::sqrt(float(K)));
  std::vector<float> b = random_vector(size_t(cc.Co), 13, 0.05f);
  std::vector<float> gamma = random_vector(size_t(cc.Ci), 14, 0.1f, 1.0f), beta = random_vector(size_t(cc.Ci), 15, 0.1f);
  std::vector<float> res = random_vector(size_t(out_n), 16);
  const float eps = 1e-6f;

  // CPU reference: the prologue explicitly, then the conv.
  std::vector<float> xin = x;
  if (cc.gn) cpu::group_norm(pool(), x.data(), cc.N, cc.Ci, HW, cc.groups, eps, gamma.data(), beta.data(), cc.swish, xin.data());
  std::vector<float> wref = w;
  if (bf16) {
    xin = rounded_bf16(xin);
    wref = rounded_bf16(w);
  }
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
  cpu::conv2d(pool(), s, xin.data(), wref.data(), b.data(), ref.data(), cc.residual ? res.data() : nullptr);

  cuda::DeviceBuffer<float> dx(x), db(b), dg(gamma), dbe(beta), dy(static_cast<size_t>(out_n)), dres(res), dw32;
  cuda::DeviceBuffer<uint16_t> dw16;
  if (bf16) dw16 = cuda::DeviceBuffer<uint16_t>(to_bf16_bits(w));
  else dw32 = cuda::DeviceBuffer<float>(w);
  cuda::DeviceBuffer<double> din_stats(group_sums(x, cc.N, cc.Ci, HW, cc.groups));
  cuda::DeviceBuffer<double> dout_stats(size_t(cc.N) * cc.groups * 2);
  dy.poison();
  dout_stats.poison();
  if (cc.residual) cuda::copy_to_device(dy.get(), res.data(), sizeof(float) * size_t(out_n));  // y aliases residual
  cuda::ConvArgs a;
  a.x = dx.get();
  a.N = cc.N;
  a.Ci = cc.Ci;
  a.H = cc.H;
  a.W = cc.W;
  a.upsample2x = cc.up;
  a.Co = cc.Co;
  a.k = cc.k;
  a.w_f32 = bf16 ? nullptr : dw32.get();
  a.w_bf16 = bf16 ? dw16.get() : nullptr;
  a.bias = db.get();
  a.residual = cc.residual ? dy.get() : nullptr;
  a.y = dy.get();
  if (cc.gn) a.norm = cuda::GroupNormIn{din_stats.get(), dg.get(), dbe.get(), cc.groups, eps, cc.swish};
  a.stats_out = cc.stats ? dout_stats.get() : nullptr;
  a.stats_groups = cc.groups;
  check_conv_output(a, Ho, Wo, ref, bf16, cc.name, std::string("conv ") + cc.name, 17, eps);
}

const ConvCase kConvCases[] = {
    // name                       N  Ci   Co   H    W   k  up     gn     swish  resid  stats  G
    {"3x3 512->512 14x14 gn+res", 3, 512, 512, 14, 14, 3, false, true, true, true, true, 32},
    {"1x1 512->256 28x28 nin", 2, 512, 256, 28, 28, 1, false, false, false, false, false, 32},
    {"3x3 256->256 up 28->56", 2, 256, 256, 28, 28, 3, true, false, false, false, true, 32},
    {"3x3 128->128 112x112 gn", 1, 128, 128, 112, 112, 3, false, true, true, false, true, 32},
    {"1x1 512->1536 qkv gn", 2, 512, 1536, 14, 14, 1, false, true, false, false, false, 32},
    {"tiny 3x3 8->16 up 14->28", 3, 8, 16, 14, 14, 3, true, true, true, true, true, 4},
    {"odd 3x3 24->40 9x13", 2, 24, 40, 9, 13, 3, false, true, true, true, true, 4},
};

TEST(CudaVqganKernels, ConvF32MatchesCpu) {
  VTV_REQUIRE_GPU();
  for (const ConvCase& c : kConvCases) run_conv_case(c, false);
}

TEST(CudaVqganKernels, ConvBf16MatchesCpuOnRoundedInputs) {
  VTV_REQUIRE_GPU();
  for (const ConvCase& c : kConvCases) run_conv_case(c, true);
}

TEST(CudaVqganKernels, SpatialAttentionMatchesCpu) {
  VTV_REQUIRE_GPU();
  for (int C : {512, 32}) {
    const int B = 3, HW = 196;
    std::vector<float> qkv = random_vector(size_t(B) * 3 * C * HW, 21);
    std::vector<float> q(size_t(B) * C * HW), k(q.size()), v(q.size()), ref(q.size());
    for (int b = 0; b < B; ++b)
      for (int64_t i = 0; i < int64_t(C) * HW; ++i) {
        q[size_t(b * C * HW + i)] = qkv[size_t(b * 3 * C * HW + i)];
        k[size_t(b * C * HW + i)] = qkv[size_t(b * 3 * C * HW + C * HW + i)];
        v[size_t(b * C * HW + i)] = qkv[size_t(b * 3 * C * HW + 2 * C * HW + i)];
      }
    cpu::spatial_attention(pool(), q.data(), k.data(), v.data(), B, C, HW, ref.data());
    cuda::DeviceBuffer<float> dqkv(qkv), dout(q.size());
    dout.poison();
    cuda::spatial_attention(dqkv.get(), B, C, HW, dout.get());
    cuda::device_synchronize();
    const Diff d = compare(dout.to_host(q.size()), ref);
    EXPECT_LE(d.rel, 1e-5) << "C " << C << ": " << describe(d);
    report("spatial_attention C=" + std::to_string(C), "fp32", d.rel, -1, -1);
  }
}

TEST(CudaVqganKernels, ConvOutPixelsMatchesCpu) {
  VTV_REQUIRE_GPU();
  for (int Ci : {128, 8}) {
    const int N = 2, H = 224, W = 224, G = Ci == 128 ? 32 : 4;
    const int64_t HW = int64_t(H) * W;
    std::vector<float> x = random_vector(size_t(N * Ci * HW), 31, 1.0f, 0.2f);
    std::vector<float> w = random_vector(size_t(3 * Ci * 9), 32, 1.0f / std::sqrt(9.0f * Ci));
    std::vector<float> b = random_vector(3, 33, 0.05f), gamma = random_vector(size_t(Ci), 34, 0.1f, 1.0f),
                       beta = random_vector(size_t(Ci), 35, 0.1f);
    std::vector<float> h(x.size()), ref(static_cast<size_t>(N * 3 * HW));
    cpu::group_norm(pool(), x.data(), N, Ci, HW, G, 1e-6f, gamma.data(), beta.data(), true, h.data());
    cpu::Conv2dShape s;
    s.N = N;
    s.Ci = Ci;
    s.Co = 3;
    s.H = H;
    s.W = W;
    s.k = 3;
    cpu::conv2d(pool(), s, h.data(), w.data(), b.data(), ref.data());
    for (float& v : ref) v = (std::min(1.0f, std::max(-1.0f, v)) + 1.0f) / 2.0f;
    cuda::DeviceBuffer<float> dx(x), dw(w), db(b), dg(gamma), dbe(beta), dout(ref.size());
    cuda::DeviceBuffer<double> dst(group_sums(x, N, Ci, HW, G));
    dout.poison();
    cuda::conv_out_pixels(dx.get(), N, Ci, H, W, cuda::GroupNormIn{dst.get(), dg.get(), dbe.get(), G, 1e-6f, true}, dw.get(),
                          db.get(), dout.get());
    cuda::device_synchronize();
    const Diff d = compare(dout.to_host(ref.size()), ref);
    EXPECT_LE(d.rel, 1e-4) << "Ci " << Ci << ": " << describe(d);
    report("conv_out+clamp Ci=" + std::to_string(Ci), "fp32", d.rel, -1, -1);
  }
}

TEST(CudaVqganKernels, CodebookLookupAndBadTokens) {
  VTV_REQUIRE_GPU();
  const int N = 3, V = 64, C = 32;
  std::vector<float> table = random_vector(size_t(V * C), 41);
  std::vector<int32_t> tok(size_t(N) * kPatches);
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = static_cast<int32_t>((i * 37) % V);
  tok[5] = V;  // out of range: NaN
  tok[kPatches + 7] = -1;
  cuda::DeviceBuffer<float> dt(table), dz(size_t(N) * C * kPatches);
  cuda::DeviceBuffer<int32_t> dtok(tok);
  dz.poison();
  cuda::codebook_lookup(dtok.get(), N, dt.get(), V, C, dz.get());
  cuda::device_synchronize();
  const std::vector<float> z = dz.to_host(dz.size());
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int t = 0; t < kPatches; ++t) {
        const int32_t id = tok[size_t(n * kPatches + t)];
        const float got = z[size_t((n * C + c) * kPatches + t)];
        if (id < 0 || id >= V) {
          ASSERT_TRUE(std::isnan(got)) << "bad token at n " << n << " t " << t << " must give NaN";
        } else {
          ASSERT_EQ(got, table[size_t(id * C + c)]) << "n " << n << " c " << c << " t " << t;
        }
      }
}

TEST(CudaVqganKernels, CellScoresMatchScoreCell) {
  VTV_REQUIRE_GPU();
  const int images = 3, targets_n = 2;
  const int64_t px = int64_t(3) * kImage * kImage;
  std::mt19937 rng(51);
  std::uniform_real_distribution<float> u(-0.05f, 1.05f);
  std::vector<float> pixels(static_cast<size_t>(images * px));
  for (auto& p : pixels) p = u(rng);
  // Values on the truncation edges: exactly k/255 and just below.
  for (int i = 0; i < 1000; ++i) pixels[size_t(i * 97)] = float(i % 256) / 255.0f;
  std::vector<uint8_t> targets(static_cast<size_t>(targets_n * model::kCellBytes));
  for (auto& t : targets) t = static_cast<uint8_t>(rng() % 256);
  // Image 2 and target 1 near the IoU threshold: R+G+B around 382.5.
  for (int64_t i = 0; i < model::kCellBytes; ++i) targets[size_t(model::kCellBytes + i)] = static_cast<uint8_t>(127 + (i % 3));
  for (int64_t i = 0; i < px; ++i) pixels[size_t(2 * px + i)] = (127.0f + float(i % 3)) / 255.0f + 1e-4f;
  const std::vector<int32_t> ji = {0, 1, 2, 2, 0}, jt = {0, 1, 1, 0, 1};
  cuda::DeviceBuffer<float> dp(pixels), dl(ji.size()), dm(ji.size());
  cuda::DeviceBuffer<uint8_t> dtg(targets);
  cuda::DeviceBuffer<int32_t> dji(ji), djt(jt);
  for (Loss loss : {Loss::IoU, Loss::MSE}) {
    dl.poison();
    dm.poison();
    cuda::cell_scores(loss, dp.get(), dtg.get(), dji.get(), djt.get(), int64_t(ji.size()), dl.get(), dm.get());
    cuda::device_synchronize();
    const std::vector<float> gl = dl.to_host(ji.size()), gm = dm.to_host(ji.size());
    for (size_t j = 0; j < ji.size(); ++j) {
      const model::Score s = model::score_cell(loss, pixels.data() + ji[j] * px, targets.data() + jt[j] * model::kCellBytes);
      if (loss == Loss::IoU) {
        EXPECT_EQ(gm[j], s.metric) << "IoU job " << j;
        EXPECT_EQ(gl[j], s.loss) << "IoU job " << j;
      } else {
        EXPECT_NEAR(gm[j], s.metric, 1e-6 * std::max(1.0f, std::fabs(s.metric))) << "MSE job " << j;
        EXPECT_NEAR(gl[j], s.loss, 1e-6 * std::max(1.0f, std::fabs(s.loss))) << "MSE job " << j;
      }
    }
  }
}

// ---- the whole decoder ---------------------------------------------------------------------------------

struct VqModel {
  ModelConfig c;
  TempFile file{"vqgan_cuda"};
  std::shared_ptr<Weights> weights;
  model::VqganDecoderW w;
  explicit VqModel(const ModelConfig& config, uint32_t seed) : c(config) {
    RandomModelOptions o;
    o.seed = seed;
    o.mae = false;
    write_random_model(file.path(), c, o);
    weights = Weights::open({file.path()});
    w = model::bind_vqgan_decoder(*weights, c);
  }
};

std::vector<int32_t> random_grids(int n, int V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> g(size_t(n) * kPatches);
  for (auto& t : g) t = static_cast<int32_t>(rng() % uint32_t(V));
  return g;
}

// Decodes `grids` on both sides and scores every (grid, target) pair; checks pixels against `pixel_tol`
// (relative, max norm) and prints the loss differences.
void compare_decoders(const VqModel& m, Precision prec, int n, int max_chunk, double pixel_tol,
                      double max_iou_diff, double max_mse_rel, bool nhwc = true) {
  const int64_t px = int64_t(3) * kImage * kImage;
  const std::vector<int32_t> grids = random_grids(n, m.c.vq.n_embed, 61);
  std::vector<const int32_t*> gp;
  for (int i = 0; i < n; ++i) gp.push_back(grids.data() + int64_t(i) * kPatches);
  std::vector<float> ref(static_cast<size_t>(n * px));
  model::VqganDecoder cpu_dec(m.c, m.w);
  const auto t0 = std::chrono::steady_clock::now();
  cpu_dec.run(pool(), gp, ref.data());
  const double cpu_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  // Targets: the CPU's own decoded cells rounded, and a second target of mid-grey noise.
  const int T = 2;
  std::vector<uint8_t> targets(static_cast<size_t>(T * model::kCellBytes));
  for (int64_t i = 0; i < model::kCellBytes; ++i) {
    const int ch = int(i / (model::kCell * model::kCell)), r = int(i % (model::kCell * model::kCell));
    targets[size_t(i)] = model::pixel_to_byte(
        ref[size_t(ch * kImage * kImage + (model::kCellStart + r / model::kCell) * kImage + model::kCellStart + r % model::kCell)]);
    targets[size_t(model::kCellBytes + i)] = static_cast<uint8_t>(100 + (i * 7919) % 60);
  }
  std::vector<int32_t> jg, jt;
  for (int g = 0; g < n; ++g)
    for (int t = 0; t < T; ++t) {
      jg.push_back(g);
      jt.push_back(t);
    }
  for (bool graphs : {true, false}) {
    cuda::VqganCuda gpu(m.c, m.w, prec, max_chunk, graphs, nhwc);
    // bf16 keeps its maps NHWC when asked (every device this build targets runs those kernels).
    EXPECT_EQ(gpu.nhwc(), nhwc && prec == Precision::BF16);
    for (Loss loss : {Loss::IoU, Loss::MSE}) {
      std::vector<float> pixels(size_t(n * px), NAN), losses(jg.size(), NAN), metrics(jg.size(), NAN);
      cuda::VqganScoreJobs sj;
      sj.loss = loss;
      sj.count = int64_t(jg.size());
      sj.grid = jg.data();
      sj.target = jt.data();
      sj.targets = targets.data();
      sj.num_targets = T;
      cuda::GpuTimer timer;
      timer.start();
      gpu.run(grids.data(), n, sj, {pixels.data(), losses.data(), metrics.data()});
      const float ms = timer.stop_ms();
      const Diff d = compare(pixels, ref);
      double mean_abs = 0;
      for (size_t i = 0; i < pixels.size(); ++i) mean_abs += std::fabs(double(pixels[i]) - double(ref[i]));
      mean_abs /= double(pixels.size());
      const std::string mode =
          std::string(precision_name(prec)) + (gpu.nhwc() ? " nhwc" : "") + (graphs ? "" : " direct");
      EXPECT_LE(d.rel, pixel_tol) << m.c.name << " " << mode << " pixels: " << describe(d);
      // The max norm bounds the worst pixel; the mean catches an error spread over the image, which a
      // wrong kernel makes and bf16 rounding does not.
      EXPECT_LE(mean_abs, pixel_tol / 10) << m.c.name << " " << mode << " mean |pixel difference|";
      std::printf("%s %s: mean |pixel difference| %.3g\n", m.c.name.c_str(), mode.c_str(), mean_abs);
      double worst_loss = 0;
      for (size_t j = 0; j < jg.size(); ++j) {
        const model::Score s_gpu_pixels = model::score_cell(loss, pixels.data() + jg[j] * px, targets.data() + jt[j] * model::kCellBytes);
        const model::Score s_cpu = model::score_cell(loss, ref.data() + jg[j] * px, targets.data() + jt[j] * model::kCellBytes);
        // The device scoring must equal scoring the device pixels on the host...
        if (loss == Loss::IoU) EXPECT_EQ(metrics[j], s_gpu_pixels.metric) << "job " << j;
        else EXPECT_NEAR(metrics[j], s_gpu_pixels.metric, 1e-6 * std::max(1.0f, s_gpu_pixels.metric)) << "job " << j;
        EXPECT_EQ(losses[j], loss == Loss::IoU ? -metrics[j] : metrics[j]) << "job " << j;
        // ...and be close to the CPU decoder's.
        const double diff = std::fabs(double(metrics[j]) - double(s_cpu.metric));
        // MSE relative to the CPU's, floored at 0.01: the first target is the CPU's own decode, whose
        // MSE is 0, so a bare relative difference there would divide by zero.
        worst_loss = std::max(worst_loss, loss == Loss::IoU ? diff : diff / std::max(0.01, double(std::fabs(s_cpu.metric))));
      }
      std::printf("%s %s %s: pixel %s; worst %s difference to the CPU decoder %.3g; gpu %.2f ms, cpu %.0f ms\n",
                  m.c.name.c_str(), mode.c_str(), loss == Loss::IoU ? "IoU" : "MSE", describe(d).c_str(),
                  loss == Loss::IoU ? "IoU (absolute)" : "MSE (relative, floor 0.01)", worst_loss, ms, cpu_ms);
      EXPECT_LE(worst_loss, loss == Loss::IoU ? max_iou_diff : max_mse_rel) << m.c.name << " " << mode;
      report("vqgan " + m.c.name + (loss == Loss::IoU ? " IoU" : " MSE"), mode, d.rel, worst_loss, ms);
    }
    if (graphs) {
      EXPECT_TRUE(gpu.graphs_enabled()) << "a capture failed: " << gpu.graph_capture_error();
    }
  }
}

TEST(CudaVqgan, TinyFp32MatchesCpuDecoder) {
  VTV_REQUIRE_GPU();
  VqModel m(preset("tiny"), 71);
  // max_chunk 2 over 5 grids: passes of 2, 2 and 1 (two graph sizes).
  compare_decoders(m, Precision::F32, 5, 2, 1e-4, 0.01, 1e-3);
}

TEST(CudaVqgan, TinyBf16WithinTolerance) {
  VTV_REQUIRE_GPU();
  VqModel m(preset("tiny"), 72);
  // bf16 maps (NHWC) and weights through ~30 convolutions: the worst pixel within 7% of the range, the
  // mean within 0.7%, losses printed. The maps, the residual stream and q, k, v are rounded to bf16 here
  // (the NCHW layout keeps them fp32), so the error is larger than the NCHW test's: on this model the
  // mean is 0.0026 against 0.0017, the worst pixel 0.051 against 0.036.
  compare_decoders(m, Precision::BF16, 3, 4, 7e-2, 0.1, 0.1);
}

TEST(CudaVqgan, TinyBf16NchwWithinTolerance) {
  VTV_REQUIRE_GPU();
  VqModel m(preset("tiny"), 72);
  // The same with fp32 NCHW maps between the bf16 convs (nhwc off).
  compare_decoders(m, Precision::BF16, 3, 4, 5e-2, 0.1, 0.1, false);
}

// The whole tiny bf16 decoder with each registered conv variant forced (cuda/variants.h), graphs on: the
// conv3x3 variants with fp32 NCHW maps (nhwc off), the conv_nhwc variants with bf16 NHWC maps. A forced
// variant runs where it can (the tiny model's 32-channel 3x3 convs for the NCHW nhwc/wgmma variants, every
// conv for the conv_nhwc ones; the rest fall back); pixels stay within the bf16 tolerance of the CPU
// decoder, and the forced variant must have run.
TEST(CudaVqgan, TinyBf16OnEveryConvVariantWithinTolerance) {
  VTV_REQUIRE_GPU();
  VqModel m(preset("tiny"), 73);
  const int n = 2;
  const int64_t px = int64_t(3) * kImage * kImage;
  const std::vector<int32_t> grids = random_grids(n, m.c.vq.n_embed, 63);
  std::vector<const int32_t*> gp;
  for (int i = 0; i < n; ++i) gp.push_back(grids.data() + int64_t(i) * kPatches);
  std::vector<float> ref(static_cast<size_t>(n * px));
  model::VqganDecoder(m.c, m.w).run(pool(), gp, ref.data());
  for (const cuda::KernelVariant& v : cuda::kernel_variants()) {
    if (v.family != cuda::KernelFamily::Conv3x3 && v.family != cuda::KernelFamily::ConvNhwc) continue;
    const bool nhwc = v.family == cuda::KernelFamily::ConvNhwc;
    SCOPED_TRACE(std::string(cuda::family_name(v.family)) + " variant " + v.name);
    cuda::ForceVariant force(v.family, v.name);
    const uint64_t before = cuda::variant_runs(v.family, v.name);
    cuda::VqganCuda gpu(m.c, m.w, Precision::BF16, n, true, nhwc);
    ASSERT_EQ(gpu.nhwc(), nhwc);
    std::vector<float> pixels(static_cast<size_t>(n * px), NAN);
    gpu.run(grids.data(), n, cuda::VqganScoreJobs{}, {pixels.data(), nullptr, nullptr});
    // wgmma off sm_90a says why it cannot run (cuda_variants_test checks that); then the default runs.
    const cuda::KernelShape shape = nhwc ? cuda::conv_nhwc_shape(n, 32, 32, 14, 14, false, 3)
                                         : cuda::conv3x3_shape(n, 32, 32, 14, 14, false);
    if (v.unsupported(shape).empty()) {
      EXPECT_GT(cuda::variant_runs(v.family, v.name), before) << "the forced variant never ran";
    }
    const Diff d = compare(pixels, ref);
    std::printf("tiny bf16 decoder, %s %s: pixels %s\n", cuda::family_name(v.family), v.name, describe(d).c_str());
    EXPECT_LE(d.rel, nhwc ? 7e-2 : 5e-2) << describe(d);
    EXPECT_TRUE(gpu.graphs_enabled()) << "a capture failed: " << gpu.graph_capture_error();
  }
}

// The whole tiny bf16 NHWC decoder with each groupnorm variant forced (group_norm_nhwc's passes), graphs
// on: the variants are bit-identical, so the pixels must be too, and each forced variant must have run.
TEST(CudaVqgan, TinyBf16NhwcPixelsAreBitIdenticalOnEveryGroupNormVariant) {
  VTV_REQUIRE_GPU();
  VqModel m(preset("tiny"), 74);
  const int n = 1;
  const size_t px = size_t(3) * kImage * kImage;
  const std::vector<int32_t> grids = random_grids(n, m.c.vq.n_embed, 64);
  std::vector<float> first;
  for (const cuda::KernelVariant& v : cuda::kernel_variants()) {
    if (v.family != cuda::KernelFamily::GroupNorm) continue;
    SCOPED_TRACE(std::string("groupnorm variant ") + v.name);
    cuda::ForceVariant force(v.family, v.name);
    const uint64_t before = cuda::variant_runs(v.family, v.name);
    cuda::VqganCuda gpu(m.c, m.w, Precision::BF16, n, true, true);
    ASSERT_TRUE(gpu.nhwc());
    std::vector<float> pixels(n * px, NAN);
    gpu.run(grids.data(), n, cuda::VqganScoreJobs{}, {pixels.data(), nullptr, nullptr});
    EXPECT_GT(cuda::variant_runs(v.family, v.name), before) << "the forced variant never ran";
    EXPECT_TRUE(gpu.graphs_enabled()) << "a capture failed: " << gpu.graph_capture_error();
    if (first.empty()) {
      first = pixels;
    } else {
      EXPECT_EQ(std::memcmp(pixels.data(), first.data(), pixels.size() * sizeof(float)), 0)
          << "pixels differ from the first variant's";
    }
  }
}

TEST(CudaVqgan, RealWidthFp32MatchesCpuDecoder) {
  VTV_REQUIRE_GPU();
  VTV_SKIP_ON_EMULATOR("the real-width decoder (about 97 GMAC per grid)");
  VqModel m(preset("mae-vqgan-vit-large"), 73);
  compare_decoders(m, Precision::F32, 2, 32, 1e-4, 0.01, 1e-3);
}

TEST(CudaVqgan, RealWidthBf16WithinTolerance) {
  VTV_REQUIRE_GPU();
  VTV_SKIP_ON_EMULATOR("the real-width decoder (about 97 GMAC per grid)");
  VqModel m(preset("mae-vqgan-vit-large"), 74);
  compare_decoders(m, Precision::BF16, 2, 32, 7e-2, 0.1, 0.1);  // NHWC: as TinyBf16WithinTolerance
}

TEST(CudaVqgan, DeviceTokensAndGraphReplayAreDeterministic) {
  VTV_REQUIRE_GPU();
  VqModel m(preset("tiny"), 75);
  const int n = 4;
  const int64_t px = int64_t(3) * kImage * kImage;
  const std::vector<int32_t> grids = random_grids(n, m.c.vq.n_embed, 76);
  cuda::VqganCuda gpu(m.c, m.w, Precision::BF16, 8, true);
  std::vector<float> a(size_t(n * px), NAN), b(size_t(n * px), NAN), c(size_t(n * px), NAN);
  gpu.run(grids.data(), n, {}, {a.data(), nullptr, nullptr});
  gpu.run(grids.data(), n, {}, {b.data(), nullptr, nullptr});  // graph replay
  cuda::DeviceBuffer<int32_t> dtok(grids);
  gpu.run_device(dtok.get(), n, {}, {c.data(), nullptr, nullptr});
  EXPECT_EQ(gpu.graphs_captured(), 1);
  const Diff dab = compare(b, a), dac = compare(c, a);
  // GroupNorm sums are double atomics: the order may differ, the float results practically never.
  EXPECT_LE(dab.rel, 1e-6) << describe(dab);
  EXPECT_LE(dac.rel, 1e-6) << describe(dac);
  // A grid decoded alone equals the same grid inside the batch.
  std::vector<float> one(size_t(px), NAN);
  gpu.run(grids.data() + 2 * kPatches, 1, {}, {one.data(), nullptr, nullptr});
  const Diff d1 = compare(one.data(), a.data() + 2 * px, px);
  EXPECT_LE(d1.rel, 1e-6) << describe(d1);
}

// Work sharing on the device: grid_dedupe groups as model::group_identical does, and run_shared (grids
// already on the device, jobs naming sources) and distinct_grids + decode_distinct (the engine's cuda
// backend: one decode pass at a time, jobs naming grids) give the losses, metrics and pixels of run() on
// the distinct grids, with and without dedupe.
TEST(CudaVqgan, RunSharedDecodesEachDistinctGridOnce) {
  VTV_REQUIRE_GPU();
  VqModel m(preset("tiny"), 79);
  const int64_t px = int64_t(3) * kImage * kImage;
  const std::vector<int32_t> distinct = random_grids(3, m.c.vq.n_embed, 80);
  // 7 sources over the 3 grids; source 5 differs from grid 1 in its last token only.
  const std::vector<int> pattern = {1, 0, 1, 2, 0, 1, 1};
  std::vector<int32_t> sources;
  for (int g : pattern) sources.insert(sources.end(), distinct.begin() + g * kPatches, distinct.begin() + (g + 1) * kPatches);
  sources[size_t(5 * kPatches + kPatches - 1)] = (sources[size_t(5 * kPatches + kPatches - 1)] + 1) % m.c.vq.n_embed;
  const int S = static_cast<int>(pattern.size());
  const model::Groups host = model::group_identical(
      S, [&](int s) { return model::KeyView{0, sources.data() + int64_t(s) * kPatches, sizeof(int32_t) * kPatches}; }, true);
  ASSERT_EQ(host.count(), 4);

  std::vector<uint8_t> targets(size_t(2 * model::kCellBytes));
  for (size_t i = 0; i < targets.size(); ++i) targets[i] = static_cast<uint8_t>((i * 7919) % 256);
  std::vector<int32_t> job_source, job_target;
  for (int s = 0; s < S; ++s)
    for (int t = 0; t < 2; ++t) {
      job_source.push_back(s);
      job_target.push_back(t);
    }
  cuda::VqganScoreJobs sj;
  sj.loss = Loss::IoU;
  sj.count = int64_t(job_source.size());
  sj.grid = job_source.data();
  sj.target = job_target.data();
  sj.targets = targets.data();
  sj.num_targets = 2;

  cuda::VqganCuda gpu(m.c, m.w, Precision::F32, 3, true);  // passes of 3: the jobs span passes
  cuda::DeviceBuffer<int32_t> dev(sources);
  // The reference: run() on every source separately.
  std::vector<float> ref_px(size_t(S * px), NAN), ref_loss(job_source.size(), NAN), ref_metric(job_source.size(), NAN);
  gpu.run(sources.data(), S, sj, {ref_px.data(), ref_loss.data(), ref_metric.data()});
  for (bool dedupe : {true, false}) {
    SCOPED_TRACE(dedupe ? "dedupe" : "no dedupe");
    std::vector<float> pixels(size_t(S * px), NAN), loss(job_source.size(), NAN), metric(job_source.size(), NAN);
    std::vector<int32_t> grid_of(size_t(S), -1);
    const int64_t G = gpu.run_shared(dev.get(), S, dedupe, sj, {pixels.data(), loss.data(), metric.data()}, grid_of.data());
    EXPECT_EQ(G, dedupe ? host.count() : S);
    for (int s = 0; s < S; ++s) EXPECT_EQ(grid_of[size_t(s)], dedupe ? host.group_of[size_t(s)] : s) << "source " << s;
    for (size_t j = 0; j < job_source.size(); ++j) {
      EXPECT_EQ(loss[j], ref_loss[j]) << "job " << j;
      EXPECT_EQ(metric[j], ref_metric[j]) << "job " << j;
    }
    for (int s = 0; s < S; ++s) {
      const Diff d = compare(pixels.data() + int64_t(grid_of[size_t(s)]) * px, ref_px.data() + int64_t(s) * px, px);
      EXPECT_LE(d.rel, 1e-6) << "source " << s << ": " << describe(d);
    }

    // The same in two steps, decoding the distinct grids two at a time with each pass's jobs (with dedupe
    // only: without, the numbering is run_shared's identity and the decodes would only repeat, slowly on
    // the emulator).
    if (!dedupe) continue;
    std::vector<int32_t> grid_of2(size_t(S), -1);
    ASSERT_EQ(gpu.distinct_grids(dev.get(), S, dedupe, grid_of2.data()), G);
    EXPECT_EQ(grid_of2, grid_of);
    for (int64_t g0 = 0; g0 < G; g0 += 2) {
      const int64_t n = std::min<int64_t>(2, G - g0);
      std::vector<int32_t> jg, jt;
      std::vector<size_t> jobs;
      for (size_t j = 0; j < job_source.size(); ++j) {
        const int32_t g = grid_of[size_t(job_source[j])];
        if (g < g0 || g >= g0 + n) continue;
        jg.push_back(static_cast<int32_t>(g - g0));
        jt.push_back(job_target[j]);
        jobs.push_back(j);
      }
      cuda::VqganScoreJobs pass = sj;
      pass.count = int64_t(jg.size());
      pass.grid = jg.data();
      pass.target = jt.data();
      std::vector<float> pass_px(size_t(n * px), NAN), pass_loss(jg.size(), NAN), pass_metric(jg.size(), NAN);
      gpu.decode_distinct(g0, n, pass, {pass_px.data(), pass_loss.data(), pass_metric.data()});
      for (size_t i = 0; i < jobs.size(); ++i) {
        EXPECT_EQ(pass_loss[i], ref_loss[jobs[i]]) << "job " << jobs[i];
        EXPECT_EQ(pass_metric[i], ref_metric[jobs[i]]) << "job " << jobs[i];
      }
      for (int64_t i = 0; i < n; ++i) {
        const Diff d = compare(pass_px.data() + i * px, pixels.data() + (g0 + i) * px, px);
        EXPECT_LE(d.rel, 1e-6) << "grid " << g0 + i << ": " << describe(d);
      }
    }
    EXPECT_THROW(gpu.decode_distinct(G - 1, 2, {}, {}), Error);  // past the distinct grids
  }
  // A job naming a source outside [0, S) is refused before anything runs.
  const int32_t bad_source[1] = {S}, bad_target[1] = {0};
  cuda::VqganScoreJobs bad = sj;
  bad.count = 1;
  bad.grid = bad_source;
  bad.target = bad_target;
  float l1[1];
  EXPECT_THROW(gpu.run_shared(dev.get(), S, true, bad, {nullptr, l1, nullptr}), Error);
}

TEST(CudaVqgan, RejectsBadScoreJobs) {
  VTV_REQUIRE_GPU();
  VqModel m(preset("tiny"), 77);
  cuda::VqganCuda gpu(m.c, m.w, Precision::F32);
  const std::vector<int32_t> grids = random_grids(2, m.c.vq.n_embed, 78);
  std::vector<uint8_t> targets(size_t(model::kCellBytes), 0);
  const int32_t jg[1] = {2}, jt[1] = {0};
  float loss[1];
  cuda::VqganScoreJobs sj;
  sj.loss = Loss::IoU;
  sj.count = 1;
  sj.grid = jg;
  sj.target = jt;
  sj.targets = targets.data();
  sj.num_targets = 1;
  EXPECT_THROW(gpu.run(grids.data(), 2, sj, {nullptr, loss, nullptr}), Error);  // grid 2 of 2
}

// The engine's cuda backend (MAE and VQGAN on the GPU) against its cpu backend, fp32, tiny model.
TEST(CudaVqgan, EngineCudaBackendMatchesCpu) {
  VTV_REQUIRE_GPU();
  const ModelConfig c = preset("tiny");
  TempFile f("vqgan_engine");
  write_random_model(f.path(), c, {});
  auto weights = Weights::open({f.path()});
  EngineOptions cpu_o, gpu_o;
  cpu_o.backend = BackendKind::Cpu;
  gpu_o.backend = BackendKind::Cuda;
  Engine cpu_e(c, weights, cpu_o), gpu_e(c, weights, gpu_o);
  // Canvas 2 is a copy of canvas 0: its MAE forwards are separate (another canvas index), but their token
  // grids are identical, which the device's decode-side work sharing must find.
  const int canvases = 3, batch = 6;
  const int64_t cf = int64_t(3) * kImage * kImage;
  std::vector<float> cv = random_vector(size_t(canvases * cf), 81);
  std::copy(cv.begin(), cv.begin() + cf, cv.begin() + 2 * cf);
  const std::vector<int32_t> index = {0, 1, 0, 2, 1, 2};
  for (Loss loss : {Loss::IoU, Loss::MSE}) {
    ForwardRequest rq;
    rq.mode = Mode::OneShot;
    rq.canvases = cv.data();
    rq.num_canvases = canvases;
    rq.canvas_index = index.data();
    rq.batch = batch;
    rq.loss = loss;
    std::vector<float> lc(batch, NAN), lg(batch, NAN);
    std::vector<int32_t> tc(size_t(batch) * kPatches), tg(tc.size());
    ForwardResult rc, rg;
    rc.losses = lc.data();
    rc.tokens = tc.data();
    rg.losses = lg.data();
    rg.tokens = tg.data();
    cpu_e.forward(rq, rc);
    gpu_e.forward(rq, rg);
    EXPECT_EQ(rg.unique_forwards, 3);
    EXPECT_EQ(rc.unique_decodes, 2);
    EXPECT_EQ(rg.unique_decodes, rc.unique_decodes);
    int compared = 0;
    for (int b = 0; b < batch; ++b) {
      if (!std::equal(tc.begin() + b * kPatches, tc.begin() + (b + 1) * kPatches, tg.begin() + b * kPatches)) {
        std::printf("sample %d: token grids differ between the backends; its loss is not compared\n", b);
        continue;
      }
      ++compared;
      EXPECT_NEAR(lg[size_t(b)], lc[size_t(b)], loss == Loss::IoU ? 0.01 : 1e-3 * std::max(1.0f, std::fabs(lc[size_t(b)])))
          << "sample " << b;
    }
    // fp32 grids differ only at a near-tie; one such grid (canvas 0, four samples) may drop out, so at
    // least the two samples of canvas 1 are always compared.
    EXPECT_GE(compared, 2) << "too few samples with equal grids: the losses were barely compared";
  }
}

}  // namespace
}  // namespace vtv::test

#else  // !VTV_WITH_CUDA

VTV_CUDA_NOT_COMPILED_IN_TEST(CudaVqgan)

#endif
