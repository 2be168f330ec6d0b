// The whole transformer path on the GPU (cuda::MaeCuda) against the CPU one (model::MaeForward), on
// random weights held in memory: patch embedding, encoder, decoder, prediction head, argmax tokens,
// patching from per-sample masks and capture sums, in one-shot and zero-shot mode, fp32 and bf16.
// Two models: the tiny test model (head dims 16 / 8) and ViT-L widths at reduced depth (the real
// kernels' shapes: head dims 64 / 32, vocab 1024). A last test runs full-depth ViT-L at batch 320 for
// timing, determinism and batch independence. Skipped, with the reason, where no GPU is usable.
#include <gtest/gtest.h>

#include "cuda_test_util.h"

#ifdef VTV_WITH_CUDA
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>

#include "core/thread_pool.h"
#include "cpu/elementwise.h"
#include "cuda/device_buffer.h"
#include "cuda/kernels.h"
#include "cuda/mae_cuda.h"
#include "cuda/variants.h"
#include "model/mae.h"
#include "vtv/config.h"
#include "vtv/error.h"
#include "vtv/engine.h"

namespace vtv::test {
namespace {

// Random MAE weights in memory with the scales of test_weights.h (activations stay O(1)); a fast
// generator, since full-depth ViT-L has 330 M of them.
class RandomMae {
 public:
  RandomMae(const ModelConfig& c, uint64_t seed) : c_(c), state_(seed * 0x9E3779B97F4A7C15ull + 1) {
    const int64_t E = c.enc_dim, D = c.dec_dim, R = c.mlp_ratio;
    w_.cls_token = add(E, 0.5f);
    w_.pos_embed = add(197 * E, 0.5f);
    w_.patch_w = add(E * 768, 1.0f / std::sqrt(768.0f));
    w_.patch_b = add(E, 0.05f);
    for (int l = 0; l < c.enc_depth; ++l) w_.blocks.push_back(block(E, E * R));
    w_.norm = norm(E);
    w_.decoder_embed = linear(D, E);
    w_.mask_token = add(D, 0.5f);
    w_.decoder_pos_embed = add(197 * D, 0.5f);
    for (int l = 0; l < c.dec_depth; ++l) w_.decoder_blocks.push_back(block(D, D * R));
    w_.decoder_norm = norm(D);
    w_.decoder_pred = linear(c.vocab(), D, 2.0f);
  }
  const model::MaeW& weights() const { return w_; }
  const ModelConfig& config() const { return c_; }

 private:
  float uniform() {  // xorshift64*, uniform in [-sqrt3, sqrt3): unit variance
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const uint64_t r = state_ * 0x2545F4914F6CDD1Dull;
    return (float((r >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f) * 1.7320508f;
  }
  const float* add(int64_t n, float scale, float offset = 0.0f) {
    store_.emplace_back(static_cast<size_t>(n));
    for (auto& v : store_.back()) v = offset + scale * uniform();
    return store_.back().data();
  }
  model::LinearW linear(int64_t out, int64_t in, float gain = 1.0f) {
    const float* w = add(out * in, gain / std::sqrt(float(in)));
    return {w, add(out, 0.05f)};
  }
  model::NormW norm(int64_t c) {
    const float* g = add(c, 0.1f, 1.0f);
    return {g, add(c, 0.1f)};
  }
  model::TransformerBlockW block(int64_t dim, int64_t hidden) {
    model::TransformerBlockW b;
    b.norm1 = norm(dim);
    b.qkv = linear(3 * dim, dim);
    b.proj = linear(dim, dim);
    b.norm2 = norm(dim);
    b.fc1 = linear(hidden, dim);
    b.fc2 = linear(dim, hidden);
    return b;
  }

  ModelConfig c_;
  uint64_t state_;
  std::vector<std::vector<float>> store_;
  model::MaeW w_;
};

ModelConfig vit_large_shallow() {
  ModelConfig c = preset("mae-vqgan-vit-large");
  c.name = "vit-l-shallow";
  c.enc_depth = 2;
  c.dec_depth = 1;
  return c;
}

// A batch: `n` samples over 3 distinct canvases (sample i runs canvas i % 3), random masks (~27% of the
// variables set, REINFORCE's initial probability), random means, capture tables pre-filled (+= is tested).
struct Batch {
  std::vector<float> canvases;
  std::vector<uint8_t> masks;
  std::vector<float> means_enc, means_dec;
  model::MaeChunk chunk;

  Batch(const ModelConfig& c, Mode mode, int n, bool patching, uint32_t seed) {
    const int64_t cf = int64_t(3) * kImage * kImage;
    canvases = random_vector(static_cast<size_t>(3 * cf), seed);
    chunk.mode = mode;
    for (int i = 0; i < n; ++i) chunk.canvases.push_back(canvases.data() + (i % 3) * cf);
    if (patching) {
      const int64_t bits = int64_t(c.enc_depth) * c.enc_heads * enc_tokens(mode) +
                           int64_t(c.dec_depth) * c.dec_heads * dec_tokens(mode);
      const int64_t bytes = (bits + 7) / 8;
      masks.assign(static_cast<size_t>(n * bytes), 0);
      std::mt19937 rng(seed + 1);
      for (int i = 0; i < n; ++i) {
        for (int64_t b = 0; b < bits; ++b) {
          if (rng() % 100 < 27) masks[static_cast<size_t>(i * bytes + (b >> 3))] |= uint8_t(1u << (b & 7));
        }
      }
      means_enc = random_vector(static_cast<size_t>(means_enc_floats(c)), seed + 2);
      means_dec = random_vector(static_cast<size_t>(means_dec_floats(c)), seed + 3);
      chunk.patch_masks = masks.data();
      chunk.means_enc = means_enc.data();
      chunk.means_dec = means_dec.data();
    }
  }
};

struct Outputs {
  std::vector<float> enc, dec, logits, cap_enc, cap_dec;
  std::vector<int32_t> tokens;
  Outputs(const ModelConfig& c, Mode mode, int n) {
    const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode);
    enc.assign(static_cast<size_t>(n * Ne * c.enc_dim), 0.0f);
    dec.assign(static_cast<size_t>(n * Nd * c.dec_dim), 0.0f);
    logits.assign(static_cast<size_t>(n * (Nd - 1) * c.vocab()), 0.0f);
    cap_enc = random_vector(static_cast<size_t>(c.enc_depth * Ne * c.enc_dim), 91, 0.5f);
    cap_dec = random_vector(static_cast<size_t>(c.dec_depth * Nd * c.dec_dim), 92, 0.5f);
    tokens.assign(static_cast<size_t>(n) * kPatches, -7);
  }
};

// Token grids from the CPU logits, as the cpu backend (engine/cpu_backend.cc) builds them.
std::vector<int32_t> cpu_tokens(const std::vector<float>& logits, int n, int P, int V) {
  std::vector<int32_t> y(static_cast<size_t>(n * P)), grid(static_cast<size_t>(n) * kPatches);
  cpu::argmax_rows(pool(), logits.data(), int64_t(n) * P, V, y.data());
  for (int s = 0; s < n; ++s)
    for (int q = 0; q < kPatches; ++q) grid[static_cast<size_t>(s * kPatches + q)] = y[static_cast<size_t>(s * P + q % P)];
  return grid;
}

void run_case(const RandomMae& model, Mode mode, Precision prec, int n, bool patching, int max_chunk) {
  const ModelConfig& c = model.config();
  const std::string mode_name = mode == Mode::OneShot ? "one-shot" : "zero-shot";
  const std::string label = c.name + " " + mode_name + (patching ? " patched+capture" : "");
  SCOPED_TRACE(label + " " + precision_name(prec));
  const bool bf16 = prec == Precision::BF16;
  const int P = dec_tokens(mode) - 1, V = c.vocab();

  Batch batch(c, mode, n, patching, 1234);
  // CPU reference.
  Outputs ref(c, mode, n);
  model::MaeChunk cpu_chunk = batch.chunk;
  cpu_chunk.capture_enc = ref.cap_enc.data();
  cpu_chunk.capture_dec = ref.cap_dec.data();
  model::MaeForward cpu_mae(c, model.weights());
  model::MaeOutputs co;
  co.encoder_out = ref.enc.data();
  co.decoder_out = ref.dec.data();
  co.logits = ref.logits.data();
  cpu_mae.run(pool(), cpu_chunk, co);
  const std::vector<int32_t> ref_tokens = cpu_tokens(ref.logits, n, P, V);

  // GPU, outputs poisoned.
  Outputs got(c, mode, n);
  for (auto* v : {&got.enc, &got.dec, &got.logits}) std::fill(v->begin(), v->end(), NAN);
  model::MaeChunk gpu_chunk = batch.chunk;
  gpu_chunk.capture_enc = got.cap_enc.data();
  gpu_chunk.capture_dec = got.cap_dec.data();
  cuda::MaeCuda gpu(c, model.weights(), prec, max_chunk);
  cuda::MaeCudaOutputs go;
  go.encoder_out = got.enc.data();
  go.decoder_out = got.dec.data();
  go.logits = got.logits.data();
  go.tokens = got.tokens.data();
  const auto t0 = std::chrono::steady_clock::now();
  gpu.run(gpu_chunk, go);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  const Diff de = compare(got.enc, ref.enc), dd = compare(got.dec, ref.dec), dl = compare(got.logits, ref.logits);
  const Diff dce = compare(got.cap_enc, ref.cap_enc), dcd = compare(got.cap_dec, ref.cap_dec);
  std::printf("%s %s (n %d, passes of %d):\n  encoder_out %s\n  decoder_out %s\n  logits %s\n  capture enc %s\n  capture dec %s\n",
              label.c_str(), precision_name(prec), n, max_chunk, describe(de).c_str(), describe(dd).c_str(),
              describe(dl).c_str(), describe(dce).c_str(), describe(dcd).c_str());
  const int64_t E = c.enc_dim, D = c.dec_dim, Ne = enc_tokens(mode), Nd = dec_tokens(mode);
  if (de.worst >= 0) std::printf("  encoder worst: sample %lld token %lld dim %lld\n", (long long)(de.worst / (Ne * E)),
                                 (long long)((de.worst / E) % Ne), (long long)(de.worst % E));
  if (dd.worst >= 0) std::printf("  decoder worst: sample %lld token %lld dim %lld\n", (long long)(dd.worst / (Nd * D)),
                                 (long long)((dd.worst / D) % Nd), (long long)(dd.worst % D));

  // Tokens: overall agreement, and exact agreement wherever the CPU's top-2 gap exceeds twice the largest
  // logit error (there the argmax cannot legitimately differ).
  int64_t agree = 0, decisive = 0, decisive_agree = 0;
  for (int s = 0; s < n; ++s) {
    for (int q = 0; q < kPatches; ++q) {
      const size_t i = static_cast<size_t>(s * kPatches + q);
      ASSERT_TRUE(got.tokens[i] >= 0 && got.tokens[i] < V) << "sample " << s << " grid position " << q << ": token " << got.tokens[i];
      agree += got.tokens[i] == ref_tokens[i];
      if (q >= P) continue;  // zero-shot: positions 98.. repeat 0..97
      const float* lr = ref.logits.data() + (static_cast<size_t>(s) * P + q) * V;
      float top = -INFINITY, second = -INFINITY;
      for (int v = 0; v < V; ++v) {
        if (lr[v] > top) {
          second = top;
          top = lr[v];
        } else if (lr[v] > second) {
          second = lr[v];
        }
      }
      if (top - second > 2.0 * dl.max_abs) {
        ++decisive;
        decisive_agree += got.tokens[i] == ref_tokens[i];
        EXPECT_EQ(got.tokens[i], ref_tokens[i]) << "sample " << s << " row " << q << ": decisive argmax differs";
      }
    }
  }
  // zero-shot grids must repeat: q and q + 98 hold the same token
  if (P == kPatches / 2) {
    for (int s = 0; s < n; ++s)
      for (int q = 0; q < P; ++q) ASSERT_EQ(got.tokens[static_cast<size_t>(s * kPatches + q)], got.tokens[static_cast<size_t>(s * kPatches + q + P)]);
  }
  const double rate = double(agree) / double(n * kPatches);
  std::printf("  tokens: agreement %.4f (%lld of %lld); decisive rows %lld, of which %lld agree; %.1f ms\n", rate,
              (long long)agree, (long long)(n * kPatches), (long long)decisive, (long long)decisive_agree, ms);

  EXPECT_GE(rate, bf16 ? kBf16MaeTokenAgreement : kFp32TokenAgreement) << "token agreement with the CPU";
  for (const Diff* d : {&de, &dd, &dl, &dce, &dcd}) EXPECT_EQ(d->nonfinite, 0) << describe(*d);
  if (!bf16) {
    EXPECT_LE(de.rel, 1e-4) << "encoder_out: " << describe(de);
    EXPECT_LE(dd.rel, 1e-4) << "decoder_out: " << describe(dd);
    EXPECT_LE(dl.rel, 1e-4) << "logits: " << describe(dl);
    EXPECT_LE(dce.rel, 1e-4) << "capture enc: " << describe(dce);
    EXPECT_LE(dcd.rel, 1e-4) << "capture dec: " << describe(dcd);
  } else {
    EXPECT_LE(dl.rel, 2e-2) << "logits: " << describe(dl);
    // The rest only has to be of bf16's order; logits carry the acceptance bound.
    EXPECT_LE(std::max({de.rel, dd.rel, dce.rel, dcd.rel}), 0.1) << "bf16 hidden states drifted far";
  }
  report("mae " + label, precision_name(prec), dl.rel, rate, ms);
}

TEST(CudaMae, TinyModelMatchesCpu) {
  VTV_REQUIRE_GPU();
  RandomMae model(preset("tiny"), 1);
  for (Precision prec : {Precision::F32, Precision::BF16}) {
    for (Mode mode : {Mode::OneShot, Mode::ZeroShot}) {
      run_case(model, mode, prec, 7, true, 3);   // three passes: 3 + 3 + 1 samples
      run_case(model, mode, prec, 4, false, 8);  // no patch, one pass
    }
  }
}

// The whole bf16 MAE with each registered GEMM variant forced for every Linear (cuda/variants.h): the
// tokens must agree with the fp32 CPU forward as closely as the default's (run_case asserts it).
TEST(CudaMae, TinyBf16TokensAgreeWithFp32OnEveryGemmVariant) {
  VTV_REQUIRE_GPU();
  RandomMae model(preset("tiny"), 1);
  cuda::prepare_kernel_variants();
  for (const cuda::KernelVariant& v : cuda::kernel_variants()) {
    if (v.family != cuda::KernelFamily::Gemm || v.is_default) continue;
    const std::string why = v.unsupported(cuda::gemm_shape(64, 64, 64, true));
    if (!why.empty()) {
      std::printf("gemm variant %s not runnable here: %s\n", v.name, why.c_str());
      continue;
    }
    SCOPED_TRACE(std::string("gemm variant ") + v.name);
    cuda::ForceVariant force(cuda::KernelFamily::Gemm, v.name);
    run_case(model, Mode::ZeroShot, Precision::BF16, 4, true, 8);
  }
}

// The same for the attention variants: the tiny model's encoder heads (dim 16) run the forced variant,
// its decoder heads (dim 8, too narrow for mma_sync's k16 steps) fall back to the baseline. Both modes:
// the zero-shot encoder's 50 tokens and the one-shot encoder's 148 (mma_sync's 64- and 256-key kernels).
TEST(CudaMae, TinyBf16TokensAgreeWithFp32OnEveryAttentionVariant) {
  VTV_REQUIRE_GPU();
  RandomMae model(preset("tiny"), 1);
  const ModelConfig& c = model.config();
  cuda::mha_prepare();
  for (const cuda::KernelVariant& v : cuda::kernel_variants()) {
    if (v.family != cuda::KernelFamily::Attention || v.is_default) continue;
    const std::string why =
        v.unsupported(cuda::attention_shape(4, kZeroShotEncTokens, c.enc_heads, c.enc_dim / c.enc_heads));
    if (!why.empty()) {
      std::printf("attention variant %s not runnable on the tiny encoder here: %s\n", v.name, why.c_str());
      continue;
    }
    SCOPED_TRACE(std::string("attention variant ") + v.name);
    cuda::ForceVariant force(cuda::KernelFamily::Attention, v.name);
    for (Mode mode : {Mode::ZeroShot, Mode::OneShot}) {
      const uint64_t ran = cuda::variant_runs(cuda::KernelFamily::Attention, v.name);
      const uint64_t baseline = cuda::variant_runs(cuda::KernelFamily::Attention, "baseline");
      run_case(model, mode, Precision::BF16, 4, true, 8);
      EXPECT_EQ(cuda::variant_runs(cuda::KernelFamily::Attention, v.name) - ran, uint64_t(c.enc_depth))
          << "one call per encoder layer";
      const bool dec_supported =
          v.unsupported(cuda::attention_shape(4, dec_tokens(mode), c.dec_heads, c.dec_dim / c.dec_heads)).empty();
      EXPECT_EQ(cuda::variant_runs(cuda::KernelFamily::Attention, "baseline") - baseline,
                dec_supported ? 0u : uint64_t(c.dec_depth))
          << "the decoder's layers fall back where the variant cannot run their head dim";
    }
  }
}

TEST(CudaMae, VitLargeWidthsMatchCpu) {
  VTV_REQUIRE_GPU();
  RandomMae model(vit_large_shallow(), 2);
  for (Precision prec : {Precision::F32, Precision::BF16}) {
    for (Mode mode : {Mode::OneShot, Mode::ZeroShot}) run_case(model, mode, prec, 5, true, 4);
  }
}

TEST(CudaMae, RejectsInconsistentRequests) {
  VTV_REQUIRE_GPU();
  RandomMae model(preset("tiny"), 3);
  cuda::MaeCuda gpu(model.config(), model.weights(), Precision::F32);
  Batch batch(model.config(), Mode::ZeroShot, 2, true, 5);
  model::MaeChunk chunk = batch.chunk;
  chunk.means_dec = nullptr;  // masks without both means tables
  std::vector<int32_t> tokens(2 * kPatches);
  cuda::MaeCudaOutputs out;
  out.tokens = tokens.data();
  EXPECT_THROW(gpu.run(chunk, out), Error);
  EXPECT_THROW(cuda::MaeCuda(model.config(), model.weights(), Precision::F32, 0), Error);
}

// The kernels of a pass captured as a CUDA graph and replayed give the same bits as direct launches; one
// graph per pass shape (a second run of the same shape replays it); passes that return the encoder or
// decoder outputs run direct; and tokens_device receives the same grids as the host.
TEST(CudaMae, GraphReplayMatchesDirectLaunches) {
  VTV_REQUIRE_GPU();
  RandomMae model(preset("tiny"), 5);
  const ModelConfig& c = model.config();
  const int n = 5, P = kZeroShotDecTokens - 1, V = c.vocab();
  Batch batch(c, Mode::ZeroShot, n, true, 91);
  std::vector<float> cap_g(static_cast<size_t>(int64_t(c.enc_depth) * kZeroShotEncTokens * c.enc_dim), 0.0f);
  std::vector<float> cap_d = cap_g;
  batch.chunk.capture_enc = cap_g.data();
  cuda::MaeCuda graphed(c, model.weights(), Precision::BF16, 8, true);
  cuda::MaeCuda direct(c, model.weights(), Precision::BF16, 8, false);
  std::vector<float> lg(static_cast<size_t>(n) * P * V), ld(lg.size()), lg2(lg.size());
  std::vector<int32_t> tg(static_cast<size_t>(n) * kPatches), td(tg.size()), tdev(tg.size());
  graphed.run(batch.chunk, {nullptr, nullptr, lg.data(), tg.data(), nullptr});
  EXPECT_EQ(graphed.graphs_captured(), 1);
  batch.chunk.capture_enc = cap_d.data();
  direct.run(batch.chunk, {nullptr, nullptr, ld.data(), td.data(), nullptr});
  EXPECT_EQ(direct.graphs_captured(), 0);
  EXPECT_TRUE(std::memcmp(lg.data(), ld.data(), lg.size() * sizeof(float)) == 0) << "graph and direct logits differ";
  EXPECT_EQ(tg, td);
  EXPECT_EQ(cap_g, cap_d);

  // The same shape again: replayed, not captured anew; tokens also left on the device.
  batch.chunk.capture_enc = nullptr;
  cuda::DeviceBuffer<int32_t> dev(tg.size());
  dev.poison();
  graphed.run(batch.chunk, {nullptr, nullptr, lg2.data(), nullptr, dev.get()});
  dev.download(tdev.data(), tdev.size());
  EXPECT_EQ(tdev, tg);
  EXPECT_TRUE(std::memcmp(lg.data(), lg2.data(), lg.size() * sizeof(float)) == 0) << "graph replay differs";
  EXPECT_EQ(graphed.graphs_captured(), 2) << "capture off is a different pass shape";
  graphed.run(batch.chunk, {nullptr, nullptr, lg2.data(), nullptr, dev.get()});
  EXPECT_EQ(graphed.graphs_captured(), 2) << "the same shape must replay its graph";

  // Encoder outputs asked for: a direct pass, the same logits.
  std::vector<float> enc(static_cast<size_t>(n) * kZeroShotEncTokens * c.enc_dim), lg3(lg.size());
  graphed.run(batch.chunk, {enc.data(), nullptr, lg3.data(), nullptr, nullptr});
  EXPECT_EQ(graphed.graphs_captured(), 2);
  EXPECT_TRUE(std::memcmp(lg.data(), lg3.data(), lg.size() * sizeof(float)) == 0);
  EXPECT_TRUE(graphed.graphs_enabled()) << "a capture failed: " << graphed.graph_capture_error();
}

// Full-depth ViT-L at the search's batch (320 samples, zero-shot, patched): throughput, determinism
// (the same batch twice gives identical bits), batch independence (the first 8 samples alone give the
// same bits as inside the batch: no kernel mixes samples), and bf16 against fp32 token agreement.
TEST(CudaMaeSpeed, FullDepthVitLargeBatch320) {
  VTV_REQUIRE_GPU();
  VTV_SKIP_ON_EMULATOR("full-depth ViT-L at batch 320, a timing");
  const ModelConfig c = preset("mae-vqgan-vit-large");
  RandomMae model(c, 4);
  const int n = 320, P = kZeroShotDecTokens - 1, V = c.vocab();
  for (Mode mode : {Mode::ZeroShot, Mode::OneShot}) {
    const std::string mode_name = mode == Mode::OneShot ? "one-shot" : "zero-shot";
    const int Pm = dec_tokens(mode) - 1;
    Batch batch(c, mode, n, true, 77);
    std::vector<int32_t> tokens_by_prec[2];
    for (Precision prec : {Precision::BF16, Precision::F32}) {
      SCOPED_TRACE(mode_name + " " + precision_name(prec));
      cuda::MaeCuda gpu(c, model.weights(), prec, n);
      std::vector<float> logits(static_cast<size_t>(n) * Pm * V), logits2(logits.size());
      std::vector<int32_t> tokens(static_cast<size_t>(n) * kPatches), tokens2(tokens.size());
      cuda::MaeCudaOutputs out;
      out.tokens = tokens.data();
      gpu.run(batch.chunk, out);  // warm-up
      const auto t0 = std::chrono::steady_clock::now();
      gpu.run(batch.chunk, out);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      out.logits = logits.data();
      gpu.run(batch.chunk, out);
      cuda::MaeCudaOutputs out2;
      out2.logits = logits2.data();
      out2.tokens = tokens2.data();
      gpu.run(batch.chunk, out2);
      EXPECT_TRUE(std::memcmp(logits.data(), logits2.data(), logits.size() * sizeof(float)) == 0) << "not deterministic";
      EXPECT_EQ(tokens, tokens2);
      // The first 8 samples alone.
      model::MaeChunk head = batch.chunk;
      head.canvases.resize(8);
      std::vector<float> logits8(static_cast<size_t>(8) * Pm * V);
      cuda::MaeCudaOutputs out8;
      out8.logits = logits8.data();
      gpu.run(head, out8);
      EXPECT_TRUE(std::memcmp(logits8.data(), logits.data(), logits8.size() * sizeof(float)) == 0)
          << "sample results depend on the batch they run in";
      int64_t nonfinite = 0;
      for (float v : logits) nonfinite += !std::isfinite(v);
      EXPECT_EQ(nonfinite, 0);
      for (int32_t t : tokens) ASSERT_TRUE(t >= 0 && t < V);
      tokens_by_prec[prec == Precision::BF16 ? 0 : 1] = tokens;
      std::printf("full ViT-L MAE %s %s, batch %d: %.1f ms per batch, %.0f MAE forwards/s (weights %.0f MiB)\n",
                  mode_name.c_str(), precision_name(prec), n, ms, n / (ms / 1000.0), gpu.weight_bytes() / 1048576.0);
      report("mae full ViT-L " + mode_name + " B320", precision_name(prec), -1, -1, ms);
    }
    int64_t agree = 0;
    for (size_t i = 0; i < tokens_by_prec[0].size(); ++i) agree += tokens_by_prec[0][i] == tokens_by_prec[1][i];
    const double rate = double(agree) / double(tokens_by_prec[0].size());
    std::printf("full ViT-L %s: bf16 vs fp32 GPU token agreement %.4f (random weights, 32 layers)\n", mode_name.c_str(), rate);
    // Not yet measured at full depth, where bf16's error grows with the 32 layers: a floor that a broken
    // bf16 path (whose tokens would agree by chance, about 0.1%) cannot pass.
    EXPECT_GE(rate, 0.9) << "bf16 vs fp32 token agreement at full depth";
    report("mae full ViT-L " + mode_name + " bf16 vs fp32", "bf16", -1, rate, -1);
    (void)P;
  }
}

}  // namespace
}  // namespace vtv::test

#else  // !VTV_WITH_CUDA

VTV_CUDA_NOT_COMPILED_IN_TEST(CudaMae)

#endif
