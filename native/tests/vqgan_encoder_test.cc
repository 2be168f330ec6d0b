// The VQGAN encoder and the token-space losses on the "tiny" preset with random weights: the binder
// follows the taming Encoder layout, the pad-(0,1,0,1) stride-2 Downsample matches a direct sum and
// takes 224 px to the 14x14 grid, tokens are the nearest codes of the latents and do not depend on
// batching or chunking, the token losses equal a hand computation from the logits and never decode,
// and bad requests fail with messages that name what is wrong. (Numerical parity of the whole encoder
// with PyTorch is test/parity.test.ts.)
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "core/thread_pool.h"
#include "cpu/conv.h"
#include "expect_error.h"
#include "model/activation_budget.h"
#include "model/token_losses.h"
#include "model/vqgan_blocks.h"
#include "model/vqgan_encoder.h"
#include "model/weights_view.h"
#include "test_inputs.h"
#include "test_weights.h"
#include "vtv/engine.h"
#include "vtv/error.h"

namespace vtv {
namespace {

using test::expect_error;
using test::kCanvasFloats;
using test::make_canvases;

class VqganEncoderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    config_ = new ModelConfig(preset("tiny"));
    file_ = new test::TempFile("encoder_tiny");
    test::RandomModelOptions o;
    o.seed = 11;
    o.vqgan_encoder = true;
    test::write_random_model(file_->path(), *config_, o);
    weights_ = new std::shared_ptr<Weights>(Weights::open({file_->path()}));
    EngineOptions eo;
    eo.threads = 2;
    eo.need_vqgan_encoder = true;
    engine_ = new Engine(*config_, *weights_, eo);
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete weights_;
    delete file_;
    delete config_;
  }
  void TearDown() override { model::set_activation_budget_bytes(0); }

  static const ModelConfig& cfg() { return *config_; }
  static Weights& weights() { return **weights_; }
  static Engine& engine() { return *engine_; }

  static std::vector<int32_t> encode(const std::vector<float>& canvases) {
    const int n = static_cast<int>(canvases.size() / kCanvasFloats);
    std::vector<int32_t> t(static_cast<size_t>(n * kPatches), -1);
    engine().encode_tokens(canvases.data(), n, t.data());
    return t;
  }

  static ModelConfig* config_;
  static test::TempFile* file_;
  static std::shared_ptr<Weights>* weights_;
  static Engine* engine_;
};
ModelConfig* VqganEncoderTest::config_ = nullptr;
test::TempFile* VqganEncoderTest::file_ = nullptr;
std::shared_ptr<Weights>* VqganEncoderTest::weights_ = nullptr;
Engine* VqganEncoderTest::engine_ = nullptr;

TEST_F(VqganEncoderTest, BindsTheTamingEncoderLayout) {
  const VqganConfig& q = cfg().vq;
  const model::VqganEncoderW w = model::bind_vqgan_encoder(weights(), cfg());
  EXPECT_EQ(w.conv_in.in, 3);
  EXPECT_EQ(w.conv_in.out, q.ch);
  ASSERT_EQ(static_cast<int>(w.down.size()), q.levels());
  int in = q.ch;
  for (int i = 0; i < q.levels(); ++i) {
    const model::VqDownLevelW& L = w.down[static_cast<size_t>(i)];
    const int out = q.ch * q.ch_mult[static_cast<size_t>(i)];
    SCOPED_TRACE("level " + std::to_string(i));
    ASSERT_EQ(static_cast<int>(L.blocks.size()), q.num_res_blocks);  // not num_res_blocks + 1 as in the decoder
    EXPECT_EQ(L.blocks[0].in, in);
    EXPECT_EQ(L.blocks[0].out, out);
    EXPECT_EQ(L.blocks[0].nin_shortcut.w != nullptr, in != out);
    EXPECT_EQ(L.channels, out);
    EXPECT_EQ(L.attn.size(), i == q.levels() - 1 ? static_cast<size_t>(q.num_res_blocks) : 0u);
    EXPECT_EQ(L.downsample.w != nullptr, i != q.levels() - 1);
    if (L.downsample.w) {
      EXPECT_EQ(L.downsample.in, out);
      EXPECT_EQ(L.downsample.out, out);
    }
    in = out;
  }
  EXPECT_EQ(w.mid_attn_1.channels, in);
  EXPECT_EQ(w.conv_out.in, in);
  EXPECT_EQ(w.conv_out.out, q.z_channels);
  EXPECT_EQ(w.quant_conv.in, q.z_channels);
  EXPECT_EQ(w.quant_conv.out, q.embed_dim);
  EXPECT_EQ(w.quant_conv.k, 1);
}

TEST_F(VqganEncoderTest, BindsBareKeysOfALastCkpt) {
  test::TempFile f("encoder_bare");
  test::RandomModelOptions o;
  o.mae = false;
  o.vq_prefix = "";
  o.vqgan_encoder = true;
  test::write_random_model(f.path(), cfg(), o);
  auto w = Weights::open({f.path()});
  const model::VqganEncoderW e = model::bind_vqgan_encoder(*w, cfg());
  EXPECT_EQ(e.codebook, w->f32("quantize.embedding.weight", {cfg().vq.n_embed, cfg().vq.embed_dim}));
}

TEST(VqganDownsample, PadsRightAndBottomAndTakes224To14) {
  int64_t side = kImage;
  model::ConvW w;
  w.in = w.out = 2;
  w.k = 3;
  for (int i = 0; i < 4; ++i) {
    const cpu::Conv2dShape s = model::downsample_shape(1, w, side, side);
    EXPECT_EQ(s.out_h(), side / 2);
    EXPECT_EQ(s.out_w(), side / 2);
    side = s.out_h();
  }
  EXPECT_EQ(side, kGrid);

  // Odd and even sizes against a direct sum: out[y][x] = sum w * in[2y+ky][2x+kx], zero past the end.
  ThreadPool pool(2);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t H : {8, 9}) {
    const int64_t N = 2, Ci = 3, Co = 4, Wd = H + 2;
    std::vector<float> x(static_cast<size_t>(N * Ci * H * Wd)), wt(static_cast<size_t>(Co * Ci * 9)), b(static_cast<size_t>(Co));
    for (auto& v : x) v = normal(rng);
    for (auto& v : wt) v = normal(rng);
    for (auto& v : b) v = normal(rng);
    model::ConvW cw;
    cw.w = wt.data();
    cw.b = b.data();
    cw.in = static_cast<int>(Ci);
    cw.out = static_cast<int>(Co);
    cw.k = 3;
    const cpu::Conv2dShape s = model::downsample_shape(N, cw, H, Wd);
    const int64_t Ho = s.out_h(), Wo = s.out_w();
    EXPECT_EQ(Ho, H / 2);
    EXPECT_EQ(Wo, Wd / 2);
    std::vector<float> y(static_cast<size_t>(N * Co * Ho * Wo));
    cpu::conv2d(pool, s, x.data(), wt.data(), b.data(), y.data());
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t co = 0; co < Co; ++co) {
        for (int64_t oy = 0; oy < Ho; ++oy) {
          for (int64_t ox = 0; ox < Wo; ++ox) {
            double acc = b[static_cast<size_t>(co)];
            for (int64_t ci = 0; ci < Ci; ++ci) {
              for (int ky = 0; ky < 3; ++ky) {
                for (int kx = 0; kx < 3; ++kx) {
                  const int64_t iy = 2 * oy + ky, ix = 2 * ox + kx;
                  if (iy >= H || ix >= Wd) continue;
                  acc += double(wt[static_cast<size_t>(((co * Ci + ci) * 3 + ky) * 3 + kx)]) *
                         x[static_cast<size_t>(((n * Ci + ci) * H + iy) * Wd + ix)];
                }
              }
            }
            EXPECT_NEAR(y[static_cast<size_t>(((n * Co + co) * Ho + oy) * Wo + ox)], acc, 1e-4)
                << "H " << H << " n " << n << " co " << co << " y " << oy << " x " << ox;
          }
        }
      }
    }
  }
}

TEST_F(VqganEncoderTest, TokensAreTheNearestCodesOfTheLatents) {
  const model::VqganEncoderW w = model::bind_vqgan_encoder(weights(), cfg());
  model::VqganEncoder enc(cfg(), w);
  ThreadPool pool(2);
  const auto canvases = make_canvases(2, 5);
  const int64_t E = cfg().vq.embed_dim, V = cfg().vq.n_embed;
  std::vector<int32_t> tokens(2 * kPatches, -1);
  std::vector<float> z(static_cast<size_t>(2 * E * kPatches), std::numeric_limits<float>::quiet_NaN());
  enc.run(pool, {canvases.data(), canvases.data() + kCanvasFloats}, tokens.data(), z.data());
  std::set<int32_t> distinct;
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < kPatches; ++t) {
      double best = std::numeric_limits<double>::infinity(), second = best;
      int32_t arg = -1;
      for (int64_t v = 0; v < V; ++v) {
        double d = 0;
        for (int64_t e = 0; e < E; ++e) {
          const double diff = double(z[static_cast<size_t>((b * E + e) * kPatches + t)]) - w.codebook[v * E + e];
          d += diff * diff;
        }
        ASSERT_TRUE(std::isfinite(d)) << "latent of sample " << b << " position " << t << " not written";
        if (d < best) {
          second = best;
          best = d;
          arg = static_cast<int32_t>(v);
        } else if (d < second) {
          second = d;
        }
      }
      // Two formulas of the same distance may order an exact near-tie differently.
      if (second - best > 1e-9 * second) EXPECT_EQ(tokens[static_cast<size_t>(b * kPatches + t)], arg) << b << " " << t;
      distinct.insert(tokens[static_cast<size_t>(b * kPatches + t)]);
    }
  }
  EXPECT_GE(distinct.size(), 5u) << "tokens barely vary: the test would not notice a wrong encoder";
}

TEST_F(VqganEncoderTest, DeterministicAndIndependentOfBatchingAndChunking) {
  const auto canvases = make_canvases(3, 9);
  const auto together = encode(canvases);
  EXPECT_EQ(encode(canvases), together);
  for (int i = 0; i < 3; ++i) {
    std::vector<float> one(canvases.begin() + i * kCanvasFloats, canvases.begin() + (i + 1) * kCanvasFloats);
    const auto alone = encode(one);
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), together.begin() + i * kPatches)) << "canvas " << i;
  }
  model::set_activation_budget_bytes(1);  // one canvas per chunk
  EXPECT_EQ(encode(canvases), together);
  // Different canvases give different grids.
  EXPECT_FALSE(std::equal(together.begin(), together.begin() + kPatches, together.begin() + kPatches));
}

TEST_F(VqganEncoderTest, EncodeTokensRejectsBadInput) {
  auto canvases = make_canvases(2, 1);
  std::vector<int32_t> t(2 * kPatches);
  canvases[static_cast<size_t>(kCanvasFloats + 5)] = std::numeric_limits<float>::infinity();
  expect_error([&] { engine().encode_tokens(canvases.data(), 2, t.data()); }, {"encode_tokens", "canvas 1", "inf"});
  expect_error([&] { engine().encode_tokens(canvases.data(), 0, t.data()); }, {"encode_tokens", "> 0"});
  expect_error([&] { engine().encode_tokens(nullptr, 1, t.data()); }, {"encode_tokens", "null"});
}

TEST_F(VqganEncoderTest, MissingEncoderWeightsNameTheKey) {
  test::TempFile f("no_encoder");
  test::write_random_model(f.path(), cfg(), {});  // MAE + decoder only, as the released .pth may be
  auto w = Weights::open({f.path()});
  EngineOptions o;
  o.threads = 1;
  o.need_vqgan_encoder = true;
  expect_error([&] { Engine e(cfg(), w, o); }, {"encoder.conv_in.weight", "vae.encoder.conv_in.weight", f.path(),
                                                "need_vqgan_encoder"});
  // Without the flag the same file opens, and encode_tokens says what is missing.
  o.need_vqgan_encoder = false;
  Engine e(cfg(), w, o);
  const auto canvases = make_canvases(1, 2);
  std::vector<int32_t> t(kPatches);
  expect_error([&] { e.encode_tokens(canvases.data(), 1, t.data()); }, {"encode_tokens", "need_vqgan_encoder"});
}

// ---- token losses ---------------------------------------------------------------------------------

struct TokenRun {
  std::vector<float> logits, losses, metrics;
  std::vector<int32_t> tokens;
  int unique_forwards = -1, unique_decodes = -1;
};

TokenRun run_token_loss(Engine& engine, Mode mode, Loss loss, const std::vector<float>& canvases,
                        const std::vector<int32_t>& target_tokens, std::vector<int32_t> index = {}) {
  const ModelConfig& c = engine.config();
  const int N = static_cast<int>(canvases.size() / kCanvasFloats);
  const int B = index.empty() ? N : static_cast<int>(index.size());
  const int64_t P = dec_tokens(mode) - 1;
  TokenRun r;
  r.logits.assign(static_cast<size_t>(B * P * c.vocab()), std::numeric_limits<float>::quiet_NaN());
  r.losses.assign(static_cast<size_t>(B), std::numeric_limits<float>::quiet_NaN());
  r.metrics = r.losses;
  r.tokens.assign(static_cast<size_t>(B * kPatches), -1);
  ForwardRequest rq;
  rq.mode = mode;
  rq.canvases = canvases.data();
  rq.num_canvases = N;
  rq.canvas_index = index.empty() ? nullptr : index.data();
  rq.batch = B;
  rq.loss = loss;
  rq.target_tokens = target_tokens.data();
  ForwardResult rs;
  rs.logits = r.logits.data();
  rs.tokens = r.tokens.data();
  rs.losses = r.losses.data();
  rs.metrics = r.metrics.data();
  engine.forward(rq, rs);
  r.unique_forwards = rs.unique_forwards;
  r.unique_decodes = rs.unique_decodes;
  return r;
}

std::vector<int32_t> random_targets(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> u(0, vocab - 1);
  std::vector<int32_t> t(static_cast<size_t>(n * kQuadrantTokens));
  for (auto& v : t) v = u(rng);
  return t;
}

TEST(TokenLayout, QuadrantPositionsAreRows7To13Columns7To13) {
  EXPECT_EQ(quadrant_patch_id(0), 7 * 14 + 7);
  EXPECT_EQ(quadrant_patch_id(6), 7 * 14 + 13);
  EXPECT_EQ(quadrant_patch_id(7), 8 * 14 + 7);
  EXPECT_EQ(quadrant_patch_id(48), 195);
  // Zero-shot logits are rows 7..13 raster: query then output per row.
  EXPECT_EQ(model::quadrant_logit_row(Mode::ZeroShot, 0), 7);
  EXPECT_EQ(model::quadrant_logit_row(Mode::ZeroShot, 7), 21);
  EXPECT_EQ(model::quadrant_logit_row(Mode::ZeroShot, 48), 97);
  EXPECT_EQ(model::quadrant_logit_row(Mode::OneShot, 48), 195);
}

class TokenLossTest : public VqganEncoderTest, public ::testing::WithParamInterface<Mode> {};

TEST_P(TokenLossTest, CrossEntropyAndAccuracyEqualAHandComputationFromTheLogits) {
  const Mode mode = GetParam();
  const int V = cfg().vocab();
  const int64_t P = dec_tokens(mode) - 1;
  const auto canvases = make_canvases(3, 21);
  auto targets = random_targets(3, V, 4);
  // Make part of canvas 1's targets the model's own predictions so the accuracy is not ~0.
  const TokenRun probe = run_token_loss(engine(), mode, Loss::TokenCE, canvases, targets);
  for (int i = 0; i < kQuadrantTokens; i += 2) {
    targets[static_cast<size_t>(kQuadrantTokens + i)] = probe.tokens[static_cast<size_t>(kPatches + quadrant_patch_id(i))];
  }
  const TokenRun ce = run_token_loss(engine(), mode, Loss::TokenCE, canvases, targets);
  const TokenRun acc = run_token_loss(engine(), mode, Loss::TokenAccuracy, canvases, targets);
  EXPECT_EQ(ce.unique_decodes, 0);
  EXPECT_EQ(acc.unique_decodes, 0);
  for (int b = 0; b < 3; ++b) {
    double sum = 0;
    int correct = 0;
    for (int i = 0; i < kQuadrantTokens; ++i) {
      const int r = quadrant_patch_id(i) - (mode == Mode::ZeroShot ? 98 : 0);
      const float* l = ce.logits.data() + (b * P + r) * V;
      double m = -1e300;
      int arg = 0;
      for (int v = 0; v < V; ++v) {
        if (l[v] > m) {
          m = l[v];
          arg = v;
        }
      }
      double s = 0;
      for (int v = 0; v < V; ++v) s += std::exp(double(l[v]) - m);
      const int32_t t = targets[static_cast<size_t>(b * kQuadrantTokens + i)];
      sum += -(double(l[t]) - m - std::log(s));
      correct += arg == t;
      // The argmax grid agrees with the logits at this position.
      EXPECT_EQ(ce.tokens[static_cast<size_t>(b * kPatches + quadrant_patch_id(i))], arg);
    }
    const double want_ce = sum / kQuadrantTokens, want_acc = double(correct) / kQuadrantTokens;
    EXPECT_NEAR(ce.losses[static_cast<size_t>(b)], want_ce, 1e-5 * std::max(1.0, want_ce)) << "sample " << b;
    EXPECT_FLOAT_EQ(ce.metrics[static_cast<size_t>(b)], float(want_acc)) << "sample " << b;
    EXPECT_FLOAT_EQ(acc.losses[static_cast<size_t>(b)], -float(want_acc)) << "sample " << b;
    EXPECT_FLOAT_EQ(acc.metrics[static_cast<size_t>(b)], float(want_acc)) << "sample " << b;
  }
  EXPECT_GE(ce.metrics[1], 0.5f - 1e-6f);
}

TEST_P(TokenLossTest, PerfectTargetsGiveAccuracyOneAndTheSmallestLoss) {
  const Mode mode = GetParam();
  const auto canvases = make_canvases(1, 33);
  auto targets = random_targets(1, cfg().vocab(), 8);
  const TokenRun probe = run_token_loss(engine(), mode, Loss::TokenCE, canvases, targets);
  for (int i = 0; i < kQuadrantTokens; ++i) targets[static_cast<size_t>(i)] = probe.tokens[static_cast<size_t>(quadrant_patch_id(i))];
  const TokenRun acc = run_token_loss(engine(), mode, Loss::TokenAccuracy, canvases, targets);
  EXPECT_FLOAT_EQ(acc.losses[0], -1.0f);
  EXPECT_FLOAT_EQ(acc.metrics[0], 1.0f);
  // Each position's CE is minimised by its argmax target, so the mean is too.
  const TokenRun ce = run_token_loss(engine(), mode, Loss::TokenCE, canvases, targets);
  EXPECT_LT(ce.losses[0], probe.losses[0]);
}

TEST_P(TokenLossTest, SharedWorkAndCanvasIndexPickEachCanvasTargets) {
  const Mode mode = GetParam();
  const auto canvases = make_canvases(2, 44);
  const auto targets = random_targets(2, cfg().vocab(), 9);
  const TokenRun plain = run_token_loss(engine(), mode, Loss::TokenCE, canvases, targets);
  const TokenRun indexed = run_token_loss(engine(), mode, Loss::TokenCE, canvases, targets, {1, 0, 1, 1});
  EXPECT_EQ(indexed.unique_forwards, 2);
  EXPECT_EQ(indexed.unique_decodes, 0);
  EXPECT_EQ(indexed.losses[0], plain.losses[1]);
  EXPECT_EQ(indexed.losses[1], plain.losses[0]);
  EXPECT_EQ(indexed.losses[2], plain.losses[1]);
  EXPECT_EQ(indexed.losses[3], plain.losses[1]);
  EXPECT_NE(plain.losses[0], plain.losses[1]);
}

INSTANTIATE_TEST_SUITE_P(Modes, TokenLossTest, ::testing::Values(Mode::ZeroShot, Mode::OneShot),
                         [](const ::testing::TestParamInfo<Mode>& p) {
                           return p.param == Mode::ZeroShot ? std::string("ZeroShot") : std::string("OneShot");
                         });

TEST_F(VqganEncoderTest, TokenLossesRunOnAnMaeOnlyEngine) {
  test::TempFile f("mae_only");
  test::RandomModelOptions o;
  o.vqgan = false;
  test::write_random_model(f.path(), cfg(), o);
  EngineOptions eo;
  eo.threads = 1;
  eo.need_vqgan = false;
  Engine e(cfg(), Weights::open({f.path()}), eo);
  const auto canvases = make_canvases(2, 3);
  const auto targets = random_targets(2, cfg().vocab(), 5);
  const TokenRun r = run_token_loss(e, Mode::ZeroShot, Loss::TokenCE, canvases, targets);
  EXPECT_TRUE(std::isfinite(r.losses[0]) && r.losses[0] > 0);
  EXPECT_TRUE(std::isfinite(r.losses[1]) && r.losses[1] > 0);
  EXPECT_EQ(r.unique_decodes, 0);
  expect_error([&] { run_token_loss(e, Mode::ZeroShot, Loss::MSE, canvases, {}); }, {"need_vqgan = false"});
}

TEST_F(VqganEncoderTest, TokenLossRequestsAreValidated) {
  const auto canvases = make_canvases(2, 3);
  auto targets = random_targets(2, cfg().vocab(), 5);
  const std::vector<int32_t> none;
  expect_error([&] { run_token_loss(engine(), Mode::ZeroShot, Loss::TokenCE, canvases, none); },
               {"target_tokens", "[num_canvases][49]"});
  targets[static_cast<size_t>(kQuadrantTokens + 5)] = cfg().vocab();
  expect_error([&] { run_token_loss(engine(), Mode::ZeroShot, Loss::TokenAccuracy, canvases, targets); },
               {"target_tokens[1][5] = 64", "[0, 64)"});
  targets[static_cast<size_t>(kQuadrantTokens + 5)] = -1;
  expect_error([&] { run_token_loss(engine(), Mode::ZeroShot, Loss::TokenCE, canvases, targets); },
               {"target_tokens[1][5] = -1"});
  targets[static_cast<size_t>(kQuadrantTokens + 5)] = 0;
  // Target tokens with a pixel loss are a mistake, not silently ignored.
  expect_error([&] { run_token_loss(engine(), Mode::ZeroShot, Loss::IoU, canvases, targets); },
               {"target_tokens", "only used by the token losses"});
}

}  // namespace
}  // namespace vtv
