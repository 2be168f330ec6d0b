// The engine on the "tiny" preset with random weights: batching, chunking and work sharing are exact,
// patching and capture address the right (layer, head, position), zero-shot never reads the example
// cells, and bad requests fail with messages that name what is wrong.
#include "vtv/engine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

#include "expect_error.h"
#include "cuda/probe.h"
#include "model/activation_budget.h"
#include "model/cpu_model_count.h"
#include "model/losses.h"
#include "test_inputs.h"
#include "test_weights.h"
#include "vtv/error.h"

namespace vtv {
namespace {

using test::expect_error;
using test::kCanvasFloats;
using test::make_canvases;
using test::random_vector;

const float kPoison = std::numeric_limits<float>::quiet_NaN();

// Everything one forward can return, in owned buffers poisoned before the call.
struct Outputs {
  std::vector<float> encoder_out, decoder_out, logits, pixels, losses, metrics;
  std::vector<int32_t> tokens;
  std::vector<uint8_t> images;
  int unique_forwards = -1, unique_decodes = -1;
};

struct Call {
  Mode mode = Mode::ZeroShot;
  const std::vector<float>* canvases = nullptr;
  std::vector<int32_t> index;          // empty: one sample per canvas
  const std::vector<uint8_t>* masks = nullptr;
  const std::vector<float>* means_enc = nullptr;
  const std::vector<float>* means_dec = nullptr;
  const BoundTaskMeans* task_means = nullptr;  // instead of means_enc and means_dec
  std::vector<float>* capture_enc = nullptr;
  std::vector<float>* capture_dec = nullptr;
  Loss loss = Loss::MSE;
  const std::vector<uint8_t>* targets = nullptr;
  bool dedupe = true;
  bool decode = true;  // ask for pixels, images and losses
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    config_ = new ModelConfig(preset("tiny"));
    file_ = new test::TempFile("engine_tiny");
    test::write_random_model(file_->path(), *config_, {});
    weights_ = new std::shared_ptr<Weights>(Weights::open({file_->path()}));
    EngineOptions o;
    o.threads = 2;
    o.backend = BackendKind::Cpu;  // these are the CPU engine's tests, whatever the machine has
    engine_ = new Engine(*config_, *weights_, o);
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete weights_;
    delete file_;
    delete config_;
  }
  void TearDown() override { model::set_activation_budget_bytes(0); }

  static const ModelConfig& cfg() { return *config_; }
  static Engine& engine() { return *engine_; }

  static Outputs run(const Call& c) {
    const int B = c.index.empty() ? static_cast<int>(c.canvases->size() / kCanvasFloats) : static_cast<int>(c.index.size());
    const int64_t Ne = enc_tokens(c.mode), Nd = dec_tokens(c.mode), P = Nd - 1;
    Outputs o;
    o.encoder_out.assign(static_cast<size_t>(B * Ne * cfg().enc_dim), kPoison);
    o.decoder_out.assign(static_cast<size_t>(B * Nd * cfg().dec_dim), kPoison);
    o.logits.assign(static_cast<size_t>(B * P * cfg().vocab()), kPoison);
    o.tokens.assign(static_cast<size_t>(B * kPatches), -7);
    if (c.decode) {
      o.pixels.assign(static_cast<size_t>(B * kCanvasFloats), kPoison);
      o.images.assign(static_cast<size_t>(B * kCanvasFloats), 0xAB);
      o.losses.assign(static_cast<size_t>(B), kPoison);
      o.metrics.assign(static_cast<size_t>(B), kPoison);
    }
    ForwardRequest rq;
    rq.mode = c.mode;
    rq.canvases = c.canvases->data();
    rq.num_canvases = static_cast<int>(c.canvases->size() / kCanvasFloats);
    rq.canvas_index = c.index.empty() ? nullptr : c.index.data();
    rq.batch = B;
    if (c.masks) {
      rq.patch_mask = c.masks->data();
      if (c.task_means) {
        rq.task_means = c.task_means;
      } else {
        rq.means_enc = c.means_enc->data();
        rq.means_dec = c.means_dec->data();
      }
    }
    if (c.capture_enc) rq.capture_enc = c.capture_enc->data();
    if (c.capture_dec) rq.capture_dec = c.capture_dec->data();
    rq.loss = c.decode ? c.loss : Loss::None;
    rq.targets = c.targets ? c.targets->data() : nullptr;
    rq.dedupe = c.dedupe;
    ForwardResult rs;
    rs.encoder_out = o.encoder_out.data();
    rs.decoder_out = o.decoder_out.data();
    rs.logits = o.logits.data();
    rs.tokens = o.tokens.data();
    if (c.decode) {
      rs.pixels = o.pixels.data();
      rs.images = o.images.data();
      rs.losses = o.losses.data();
      rs.metrics = o.metrics.data();
    }
    engine().forward(rq, rs);
    o.unique_forwards = rs.unique_forwards;
    o.unique_decodes = rs.unique_decodes;
    return o;
  }

  // Sample b's slice of a per-sample output.
  template <class T>
  static std::vector<T> slice(const std::vector<T>& v, int B, int b) {
    const size_t n = v.size() / static_cast<size_t>(B);
    return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(n * b), v.begin() + static_cast<std::ptrdiff_t>(n * (b + 1)));
  }

  static float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
      if (std::isnan(a[i]) || std::isnan(b[i])) return std::numeric_limits<float>::infinity();
      m = std::max(m, std::fabs(a[i] - b[i]));
    }
    return m;
  }

  static void expect_all_finite(const std::vector<float>& v, const char* what) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) {
        ADD_FAILURE() << what << "[" << i << "] was not written (or is not finite)";
        return;
      }
    }
  }

  static std::vector<uint8_t> random_masks(int B, Mode m, uint32_t seed, double p) {
    const int64_t bits = patch_bits(cfg(), m), bytes = patch_bytes(cfg(), m);
    std::mt19937 rng(seed);
    std::bernoulli_distribution bit(p);
    std::vector<uint8_t> masks(static_cast<size_t>(B * bytes), 0);
    for (int b = 0; b < B; ++b) {
      for (int64_t i = 0; i < bits; ++i) {
        if (bit(rng)) masks[static_cast<size_t>(b * bytes + (i >> 3))] |= static_cast<uint8_t>(1u << (i & 7));
      }
    }
    return masks;
  }

  static void set_bit(std::vector<uint8_t>& masks, int64_t bytes, int b, int64_t i) {
    masks[static_cast<size_t>(b * bytes + (i >> 3))] |= static_cast<uint8_t>(1u << (i & 7));
  }

  static int64_t enc_bit(Mode m, int l, int h, int p) {
    return (int64_t(l) * cfg().enc_heads + h) * enc_tokens(m) + p;
  }
  static int64_t dec_bit(Mode m, int l, int h, int p) {
    return int64_t(cfg().enc_depth) * cfg().enc_heads * enc_tokens(m) + (int64_t(l) * cfg().dec_heads + h) * dec_tokens(m) + p;
  }

  static ModelConfig* config_;
  static test::TempFile* file_;
  static std::shared_ptr<Weights>* weights_;
  static Engine* engine_;
};

ModelConfig* EngineTest::config_ = nullptr;
test::TempFile* EngineTest::file_ = nullptr;
std::shared_ptr<Weights>* EngineTest::weights_ = nullptr;
Engine* EngineTest::engine_ = nullptr;

TEST_F(EngineTest, ReportsBackendAndPatchLayout) {
  EXPECT_EQ(engine().backend(), BackendKind::Cpu);
  EXPECT_EQ(engine().backend_reason(), "cpu requested");
  EXPECT_EQ(engine().threads(), 2);
  EXPECT_EQ(engine().config().name, "tiny");
  // docs/method.md#variables counts for ViT-L: 24*16*148 + 8*16*197 one-shot and 24*16*50 + 8*16*99 zero-shot.
  const ModelConfig large = preset("mae-vqgan-vit-large");
  EXPECT_EQ(patch_bits(large, Mode::OneShot), 24 * 16 * 148 + 8 * 16 * 197);
  EXPECT_EQ(patch_bits(large, Mode::ZeroShot), 31872);
  EXPECT_EQ(patch_bytes(large, Mode::ZeroShot), 3984);
  // The list reports what the CUDA probe found on this machine (compiled in or not, a device or not).
  auto list = backends();
  const cuda::Probe probe = cuda::probe();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].kind, BackendKind::Cpu);
  EXPECT_TRUE(list[0].compiled);
  EXPECT_TRUE(list[0].usable);
  EXPECT_EQ(list[1].kind, BackendKind::Cuda);
  EXPECT_EQ(list[1].compiled, probe.compiled);
  EXPECT_EQ(list[1].usable, probe.usable);
  EXPECT_NE(list[1].detail.find(probe.detail), std::string::npos) << list[1].detail;
#ifdef VTV_WITH_CUDA
  EXPECT_TRUE(probe.compiled);
#else
  EXPECT_FALSE(probe.compiled);
  EXPECT_FALSE(probe.usable);
#endif
  // backend "auto" keeps to the CPU where the probe finds no usable device, and says what it found.
  EngineOptions auto_o;
  auto_o.threads = 1;
  auto_o.need_vqgan = false;
  Engine auto_e(cfg(), *weights_, auto_o);
  if (!probe.usable) EXPECT_EQ(auto_e.backend(), BackendKind::Cpu);
  EXPECT_NE(auto_e.backend_reason().find(probe.detail), std::string::npos) << auto_e.backend_reason();
}

TEST_F(EngineTest, ThreadCountsBeyondAFewPerCoreAreRefused) {
  EngineOptions o;
  o.threads = 100000;
  expect_error([&] { Engine e(*config_, *weights_, o); }, {"threads must be 0 (every core) to", "got 100000"});
  o.threads = -1;
  expect_error([&] { Engine e(*config_, *weights_, o); }, {"threads must be"});
}

TEST_F(EngineTest, BatchedChunkedAndDedupedEqualPerSample) {
  for (Mode mode : {Mode::ZeroShot, Mode::OneShot}) {
    SCOPED_TRACE(mode == Mode::ZeroShot ? "zero-shot" : "one-shot");
    auto canvases = make_canvases(3, 11);
    auto means_enc = random_vector(means_enc_floats(cfg()), 12);
    auto means_dec = random_vector(means_dec_floats(cfg()), 13);
    const std::vector<int32_t> index = {0, 1, 2, 1, 0, 2, 1};
    const int B = static_cast<int>(index.size());
    auto masks = random_masks(B, mode, 14, 0.3);
    const int64_t bytes = patch_bytes(cfg(), mode);
    // Samples 3 and 1 share canvas and mask; sample 6 shares canvas 1 with a different mask.
    std::memcpy(masks.data() + 3 * bytes, masks.data() + 1 * bytes, static_cast<size_t>(bytes));
    Call c;
    c.mode = mode;
    c.canvases = &canvases;
    c.index = index;
    c.masks = &masks;
    c.means_enc = &means_enc;
    c.means_dec = &means_dec;
    model::set_activation_budget_bytes(1);  // one sample per chunk in both the MAE and the VQGAN
    Outputs small = run(c);
    model::set_activation_budget_bytes(0);
    Outputs batched = run(c);
    EXPECT_EQ(batched.unique_forwards, 6);
    expect_all_finite(batched.encoder_out, "encoder_out");
    expect_all_finite(batched.decoder_out, "decoder_out");
    expect_all_finite(batched.logits, "logits");
    expect_all_finite(batched.pixels, "pixels");
    expect_all_finite(batched.losses, "losses");
    for (int b = 0; b < B; ++b) {
      SCOPED_TRACE("sample " + std::to_string(b));
      Call one = c;
      one.index = {index[static_cast<size_t>(b)]};
      auto mask = slice(masks, B, b);
      one.masks = &mask;
      Outputs single = run(one);
      // The CPU kernels compute each output element in the same order whatever the batch size, so
      // batching is exact up to the GEMM's blocking; allow only float noise.
      EXPECT_LE(max_abs_diff(slice(batched.logits, B, b), single.logits), 1e-5f);
      EXPECT_LE(max_abs_diff(slice(small.logits, B, b), single.logits), 1e-5f);
      EXPECT_LE(max_abs_diff(slice(batched.encoder_out, B, b), single.encoder_out), 1e-5f);
      EXPECT_LE(max_abs_diff(slice(batched.decoder_out, B, b), single.decoder_out), 1e-5f);
      EXPECT_EQ(slice(batched.tokens, B, b), single.tokens);
      EXPECT_EQ(slice(small.tokens, B, b), single.tokens);
      EXPECT_LE(max_abs_diff(slice(batched.pixels, B, b), single.pixels), 1e-5f);
      EXPECT_LE(max_abs_diff(slice(small.pixels, B, b), single.pixels), 1e-5f);
      EXPECT_NEAR(batched.losses[static_cast<size_t>(b)], single.losses[0], 1e-4f);
      EXPECT_NEAR(small.metrics[static_cast<size_t>(b)], single.metrics[0], 1e-4f);
    }
    // Without work sharing every sample runs and the answers are the same.
    c.dedupe = false;
    Outputs plain = run(c);
    EXPECT_EQ(plain.unique_forwards, B);
    EXPECT_EQ(plain.unique_decodes, B);
    EXPECT_EQ(plain.tokens, batched.tokens);
    EXPECT_LE(max_abs_diff(plain.logits, batched.logits), 1e-5f);
    EXPECT_LE(max_abs_diff(plain.losses, batched.losses), 1e-4f);
  }
}

TEST_F(EngineTest, DedupeCountsDistinctSamplesAndTokenGrids) {
  auto canvases = make_canvases(2, 21);
  Call c;
  c.canvases = &canvases;
  c.index = {0, 1, 0, 0, 1};
  Outputs o = run(c);
  EXPECT_EQ(o.unique_forwards, 2);
  std::set<std::vector<int32_t>> grids;
  for (int b = 0; b < 5; ++b) grids.insert(slice(o.tokens, 5, b));
  EXPECT_EQ(o.unique_decodes, static_cast<int>(grids.size()));
  EXPECT_EQ(slice(o.pixels, 5, 0), slice(o.pixels, 5, 3));
  // Samples 0 and 2 (same canvas, both masks zero) share a forward; sample 1 differs by one decoder
  // bit, so it is its own forward, but decodes only once more if its token grid changed.
  auto means_enc = random_vector(means_enc_floats(cfg()), 22), means_dec = random_vector(means_dec_floats(cfg()), 23);
  std::vector<uint8_t> masks(static_cast<size_t>(3 * patch_bytes(cfg(), Mode::ZeroShot)), 0);
  set_bit(masks, patch_bytes(cfg(), Mode::ZeroShot), 1, dec_bit(Mode::ZeroShot, 1, 0, 0));  // sample 1 differs
  Call p = c;
  p.index = {0, 0, 0};
  p.masks = &masks;
  p.means_enc = &means_enc;
  p.means_dec = &means_dec;
  Outputs q = run(p);
  EXPECT_EQ(q.unique_forwards, 2);
  const bool same_grid = slice(q.tokens, 3, 0) == slice(q.tokens, 3, 1);
  EXPECT_EQ(q.unique_decodes, same_grid ? 1 : 2);
}

TEST_F(EngineTest, AllZeroMaskEqualsUnpatched) {
  for (Mode mode : {Mode::ZeroShot, Mode::OneShot}) {
    auto canvases = make_canvases(2, 31);
    auto means_enc = random_vector(means_enc_floats(cfg()), 32), means_dec = random_vector(means_dec_floats(cfg()), 33);
    std::vector<uint8_t> masks(static_cast<size_t>(2 * patch_bytes(cfg(), mode)), 0);
    Call c;
    c.mode = mode;
    c.canvases = &canvases;
    Outputs plain = run(c);
    c.masks = &masks;
    c.means_enc = &means_enc;
    c.means_dec = &means_dec;
    Outputs zero = run(c);
    EXPECT_LE(max_abs_diff(plain.logits, zero.logits), 1e-6f);
    EXPECT_EQ(plain.tokens, zero.tokens);
    EXPECT_LE(max_abs_diff(plain.losses, zero.losses), 1e-6f);
  }
}

TEST_F(EngineTest, PatchingEveryHeadOfALayerChangesTheOutput) {
  const Mode mode = Mode::ZeroShot;
  auto canvases = make_canvases(1, 41);
  auto means_enc = random_vector(means_enc_floats(cfg()), 42, 3.0f);
  auto means_dec = random_vector(means_dec_floats(cfg()), 43, 3.0f);
  Call c;
  c.mode = mode;
  c.canvases = &canvases;
  c.decode = false;
  Outputs plain = run(c);
  const int64_t bytes = patch_bytes(cfg(), mode);
  for (int layer : {0, cfg().enc_depth - 1, cfg().enc_depth, cfg().enc_depth + cfg().dec_depth - 1}) {
    SCOPED_TRACE("layer " + std::to_string(layer));
    std::vector<uint8_t> masks(static_cast<size_t>(bytes), 0);
    const bool enc = layer < cfg().enc_depth;
    const int heads = enc ? cfg().enc_heads : cfg().dec_heads;
    const int N = enc ? enc_tokens(mode) : dec_tokens(mode);
    for (int h = 0; h < heads; ++h) {
      for (int p = 0; p < N; ++p) {
        set_bit(masks, bytes, 0, enc ? enc_bit(mode, layer, h, p) : dec_bit(mode, layer - cfg().enc_depth, h, p));
      }
    }
    c.masks = &masks;
    c.means_enc = &means_enc;
    c.means_dec = &means_dec;
    Outputs patched = run(c);
    EXPECT_GT(max_abs_diff(plain.logits, patched.logits), 1e-2f);
    // The encoder output changes only when the encoder is patched.
    EXPECT_EQ(max_abs_diff(plain.encoder_out, patched.encoder_out) > 0.0f, enc);
  }
}

// Patching a head with the activations it would have produced anyway leaves the output unchanged, and
// a single bit reads exactly its own table entry: the capture, the table layout (one-shot positions,
// +98 in zero-shot) and the mask bit layout agree with each other.
TEST_F(EngineTest, PatchBitsAddressTheirOwnTableEntries) {
  for (Mode mode : {Mode::ZeroShot, Mode::OneShot}) {
    SCOPED_TRACE(mode == Mode::ZeroShot ? "zero-shot" : "one-shot");
    auto canvases = make_canvases(1, 51);
    const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode), E = cfg().enc_dim, D = cfg().dec_dim;
    std::vector<float> cap_e(static_cast<size_t>(cfg().enc_depth * Ne * E), 0.0f);
    std::vector<float> cap_d(static_cast<size_t>(cfg().dec_depth * Nd * D), 0.0f);
    Call c;
    c.mode = mode;
    c.canvases = &canvases;
    c.decode = false;
    c.capture_enc = &cap_e;
    c.capture_dec = &cap_d;
    Outputs plain = run(c);
    // Own activations, moved into one-shot positions (reduced p >= 1 is one-shot p + 98).
    const int shift = mode == Mode::ZeroShot ? kZeroShotShift : 0;
    auto own_e = random_vector(means_enc_floats(cfg()), 52, 5.0f);
    auto own_d = random_vector(means_dec_floats(cfg()), 53, 5.0f);
    for (int l = 0; l < cfg().enc_depth; ++l) {
      for (int p = 0; p < Ne; ++p) {
        const int q = p == 0 ? 0 : p + shift;
        std::memcpy(&own_e[static_cast<size_t>((l * kOneShotEncTokens + q) * E)], &cap_e[static_cast<size_t>((l * Ne + p) * E)],
                    sizeof(float) * E);
      }
    }
    for (int l = 0; l < cfg().dec_depth; ++l) {
      for (int p = 0; p < Nd; ++p) {
        const int q = p == 0 ? 0 : p + shift;
        std::memcpy(&own_d[static_cast<size_t>((l * kOneShotDecTokens + q) * D)], &cap_d[static_cast<size_t>((l * Nd + p) * D)],
                    sizeof(float) * D);
      }
    }
    c.capture_enc = c.capture_dec = nullptr;
    const int64_t bits = patch_bits(cfg(), mode), bytes = patch_bytes(cfg(), mode);
    std::vector<uint8_t> all(static_cast<size_t>(bytes), 0);
    for (int64_t i = 0; i < bits; ++i) set_bit(all, bytes, 0, i);
    c.masks = &all;
    c.means_enc = &own_e;
    c.means_dec = &own_d;
    Outputs self = run(c);
    EXPECT_LE(max_abs_diff(plain.logits, self.logits), 1e-4f);

    // Probe single entries: poison entry (l, h, p) only. Its bit alone changes the output; every other
    // bit together does not.
    struct Probe { bool enc; int l, h, p; };
    const std::vector<Probe> probes = {{true, 0, 0, 0}, {true, 1, 2, 1}, {true, 3, 3, int(Ne - 1)},
                                       {false, 0, 1, 0}, {false, 1, 3, int(Nd - 1)}, {false, 0, 2, 5}};
    for (const Probe& pr : probes) {
      SCOPED_TRACE(std::string(pr.enc ? "enc" : "dec") + " l" + std::to_string(pr.l) + " h" + std::to_string(pr.h) +
                   " p" + std::to_string(pr.p));
      auto te = own_e, td = own_d;
      const int q = pr.p == 0 ? 0 : pr.p + shift;
      const int dh = pr.enc ? cfg().enc_head_dim() : cfg().dec_head_dim();
      float* entry = pr.enc ? &te[static_cast<size_t>((pr.l * kOneShotEncTokens + q) * E + pr.h * dh)]
                            : &td[static_cast<size_t>((pr.l * kOneShotDecTokens + q) * D + pr.h * dh)];
      for (int j = 0; j < dh; ++j) entry[j] += 4.0f;
      const int64_t bit = pr.enc ? enc_bit(mode, pr.l, pr.h, pr.p) : dec_bit(mode, pr.l, pr.h, pr.p);
      std::vector<uint8_t> only(static_cast<size_t>(bytes), 0), others = all;
      set_bit(only, bytes, 0, bit);
      others[static_cast<size_t>(bit >> 3)] &= static_cast<uint8_t>(~(1u << (bit & 7)));
      c.means_enc = &te;
      c.means_dec = &td;
      c.masks = &only;
      EXPECT_GT(max_abs_diff(plain.logits, run(c).logits), 1e-3f);
      c.masks = &others;
      EXPECT_LE(max_abs_diff(plain.logits, run(c).logits), 1e-4f);
    }
  }
}

TEST_F(EngineTest, CaptureSumsEqualSumOfPerSampleCaptures) {
  for (Mode mode : {Mode::OneShot, Mode::ZeroShot}) {
    auto canvases = make_canvases(3, 61);
    const std::vector<int32_t> index = {2, 0, 2, 1};  // a duplicate counts twice
    const size_t ne = static_cast<size_t>(cfg().enc_depth * enc_tokens(mode) * cfg().enc_dim);
    const size_t nd = static_cast<size_t>(cfg().dec_depth * dec_tokens(mode) * cfg().dec_dim);
    std::vector<float> be(ne, 1.0f), bd(nd, 1.0f);  // accumulated into: starts at 1
    Call c;
    c.mode = mode;
    c.canvases = &canvases;
    c.index = index;
    c.decode = false;
    c.capture_enc = &be;
    c.capture_dec = &bd;
    run(c);
    std::vector<float> se(ne, 1.0f), sd(nd, 1.0f);
    for (int32_t i : index) {
      Call one = c;
      one.index = {i};
      one.capture_enc = &se;
      one.capture_dec = &sd;
      run(one);
    }
    EXPECT_LE(max_abs_diff(be, se), 1e-4f);
    EXPECT_LE(max_abs_diff(bd, sd), 1e-4f);
    float norm = 0;
    for (float v : be) norm = std::max(norm, std::fabs(v - 1.0f));
    EXPECT_GT(norm, 0.1f);
  }
}

TEST_F(EngineTest, ZeroShotIgnoresTheExampleCells) {
  auto canvases = make_canvases(1, 71);
  auto changed = canvases;
  auto other = make_canvases(1, 72);
  // Rows 0..111 are patch rows 0..6: the example input and output cells and the gap below them.
  std::copy(other.begin(), other.begin() + 112 * kImage, changed.begin());
  for (int ch = 1; ch < 3; ++ch) {
    std::copy(other.begin() + ch * kImage * kImage, other.begin() + ch * kImage * kImage + 112 * kImage,
              changed.begin() + ch * kImage * kImage);
  }
  Call c;
  c.canvases = &canvases;
  Outputs a = run(c);
  c.canvases = &changed;
  Outputs b = run(c);
  EXPECT_EQ(a.logits, b.logits);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.pixels, b.pixels);
  // One-shot does read them.
  c.mode = Mode::OneShot;
  Outputs oa = run(c);
  c.canvases = &canvases;
  Outputs ob = run(c);
  EXPECT_GT(max_abs_diff(oa.logits, ob.logits), 1e-3f);
}

TEST_F(EngineTest, ZeroShotTokensAreDuplicatedArgmaxes) {
  auto canvases = make_canvases(2, 81);
  Call c;
  c.canvases = &canvases;
  Outputs o = run(c);
  const int V = cfg().vocab();
  std::set<int32_t> distinct;
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 98; ++t) {
      const float* row = &o.logits[static_cast<size_t>((b * 98 + t) * V)];
      const int32_t want = static_cast<int32_t>(std::max_element(row, row + V) - row);
      EXPECT_EQ(o.tokens[static_cast<size_t>(b * 196 + 98 + t)], want);
      EXPECT_EQ(o.tokens[static_cast<size_t>(b * 196 + t)], want);  // hstack([y, y])
      distinct.insert(want);
    }
  }
  EXPECT_GT(distinct.size(), 3u);  // the random model predicts varied tokens
  // images are trunc(clip(pixels * 255)).
  for (size_t i = 0; i < o.pixels.size(); i += 997) {
    EXPECT_EQ(o.images[i], static_cast<uint8_t>(static_cast<int>(std::min(255.0f, std::max(0.0f, o.pixels[i] * 255.0f)))));
    EXPECT_GE(o.pixels[i], 0.0f);
    EXPECT_LE(o.pixels[i], 1.0f);
  }
}

TEST_F(EngineTest, LossesMatchAHandComputation) {
  auto canvases = make_canvases(2, 91);
  Call c;
  c.canvases = &canvases;
  c.loss = Loss::MSE;
  Outputs mse = run(c);
  // Default target: the canvas's own bottom-right cell, de-normalised and rounded to nearest.
  const double mean[3] = {0.485, 0.456, 0.406}, stdv[3] = {0.229, 0.224, 0.225};
  std::vector<uint8_t> targets(static_cast<size_t>(2 * 3 * 111 * 111));
  for (int i = 0; i < 2; ++i) {
    for (int ch = 0; ch < 3; ++ch) {
      for (int y = 0; y < 111; ++y) {
        for (int x = 0; x < 111; ++x) {
          // float64 de-normalisation, as the reference's numpy mean/std promote it.
          const double v = canvases[static_cast<size_t>(((i * 3 + ch) * kImage + 113 + y) * kImage + 113 + x)];
          const double m = (v * stdv[ch] + mean[ch]) * 255.0;
          targets[static_cast<size_t>(((i * 3 + ch) * 111 + y) * 111 + x)] =
              static_cast<uint8_t>(static_cast<int>(std::min(255.0, std::max(0.0, m)) + 0.5));
        }
      }
    }
  }
  for (int b = 0; b < 2; ++b) {
    double sum = 0;
    for (int ch = 0; ch < 3; ++ch) {
      for (int y = 0; y < 111; ++y) {
        for (int x = 0; x < 111; ++x) {
          const uint8_t p = mse.images[static_cast<size_t>(((b * 3 + ch) * kImage + 113 + y) * kImage + 113 + x)];
          const uint8_t t = targets[static_cast<size_t>(((b * 3 + ch) * 111 + y) * 111 + x)];
          const double d = ((double(p) / 255.0 - mean[ch]) / stdv[ch]) - ((double(t) / 255.0 - mean[ch]) / stdv[ch]);
          sum += d * d;
        }
      }
    }
    EXPECT_NEAR(mse.losses[static_cast<size_t>(b)], sum / (3 * 111 * 111), 1e-4);
    EXPECT_EQ(mse.losses[static_cast<size_t>(b)], mse.metrics[static_cast<size_t>(b)]);
  }
  // A white cell, normalised in fp32 as the canvas pipeline does, de-normalises in float64 to
  // 254.999999 (red), 255.000002 (green), 255.000006 (blue): the target rounds back to (255, 255, 255),
  // the bytes the cell was made from (truncation would give 254 in red).
  {
    auto white = canvases;
    const float mean_f[3] = {0.485f, 0.456f, 0.406f}, std_f[3] = {0.229f, 0.224f, 0.225f};
    for (int i = 0; i < 2; ++i) {
      for (int ch = 0; ch < 3; ++ch) {
        const float v = (1.0f - mean_f[ch]) / std_f[ch];
        for (int y = 113; y < 224; ++y) {
          for (int x = 113; x < 224; ++x) white[static_cast<size_t>(((i * 3 + ch) * kImage + y) * kImage + x)] = v;
        }
      }
    }
    std::vector<uint8_t> expected(static_cast<size_t>(2 * 3 * 111 * 111), 255);
    Call w = c;
    w.canvases = &white;
    Outputs by_default = run(w);
    w.targets = &expected;
    Outputs by_explicit = run(w);
    EXPECT_EQ(by_default.losses, by_explicit.losses);
    std::fill_n(expected.begin(), 111 * 111, uint8_t(254));  // sensitivity: one changed channel shows
    EXPECT_NE(run(w).losses[0], by_default.losses[0]);
  }
  // Explicit targets equal to the defaults give the same losses.
  c.targets = &targets;
  Outputs explicit_t = run(c);
  EXPECT_EQ(explicit_t.losses, mse.losses);

  // IoU against a target built from the prediction itself: the foreground rule R+G+B > 382.5.
  std::vector<uint8_t> from_pred(targets.size());
  for (int b = 0; b < 2; ++b) {
    for (int ch = 0; ch < 3; ++ch) {
      for (int y = 0; y < 111; ++y) {
        for (int x = 0; x < 111; ++x) {
          from_pred[static_cast<size_t>(((b * 3 + ch) * 111 + y) * 111 + x)] =
              mse.images[static_cast<size_t>(((b * 3 + ch) * kImage + 113 + y) * kImage + 113 + x)];
        }
      }
    }
  }
  // Target 0: the prediction (IoU 1). Target 1: its left half only turned black (IoU = fg in right half / fg).
  int64_t fg_all = 0, fg_right = 0;
  for (int y = 0; y < 111; ++y) {
    for (int x = 0; x < 111; ++x) {
      int s = 0;
      for (int ch = 0; ch < 3; ++ch) s += from_pred[static_cast<size_t>(((3 + ch) * 111 + y) * 111 + x)];
      const bool fg = 2 * s > 765;
      fg_all += fg;
      fg_right += fg && x >= 55;
      if (x < 55) {
        for (int ch = 0; ch < 3; ++ch) from_pred[static_cast<size_t>(((3 + ch) * 111 + y) * 111 + x)] = 0;
      }
    }
  }
  c.loss = Loss::IoU;
  c.targets = &from_pred;
  Outputs iou = run(c);
  EXPECT_FLOAT_EQ(iou.metrics[0], 1.0f);
  EXPECT_FLOAT_EQ(iou.losses[0], -1.0f);
  const float want = fg_all == 0 ? 1.0f : float(double(fg_right) / double(fg_all));
  EXPECT_NEAR(iou.metrics[1], want, 1e-6);
  EXPECT_FLOAT_EQ(iou.losses[1], -iou.metrics[1]);
  // Against an all-black target (no foreground) the intersection is empty: IoU 0 wherever the prediction
  // has foreground, and 1 where it has none (both empty; the reference would give NaN). Against an
  // all-white target the union is the whole cell: IoU = the prediction's foreground fraction.
  std::vector<uint8_t> black(targets.size(), 0), white(targets.size(), 255);
  int64_t fg_pred[2] = {0, 0};
  for (int b = 0; b < 2; ++b) {
    for (int y = 0; y < 111; ++y) {
      for (int x = 0; x < 111; ++x) {
        int s = 0;
        for (int ch = 0; ch < 3; ++ch) s += mse.images[static_cast<size_t>(((b * 3 + ch) * kImage + 113 + y) * kImage + 113 + x)];
        fg_pred[b] += 2 * s > 765;
      }
    }
  }
  c.targets = &black;
  Outputs vs_black = run(c);
  c.targets = &white;
  Outputs vs_white = run(c);
  for (int b = 0; b < 2; ++b) {
    SCOPED_TRACE("sample " + std::to_string(b) + ", foreground pixels " + std::to_string(fg_pred[b]));
    EXPECT_EQ(vs_black.metrics[static_cast<size_t>(b)], fg_pred[b] == 0 ? 1.0f : 0.0f);
    EXPECT_NEAR(vs_white.metrics[static_cast<size_t>(b)], double(fg_pred[b]) / (111.0 * 111.0), 1e-6);
  }
  // Both empty, directly: a black prediction against the black target is IoU 1 (loss -1), against the
  // white one 0; one foreground pixel in the prediction makes it 0 against black.
  std::vector<float> dark(static_cast<size_t>(kCanvasFloats), 0.0f);
  const uint8_t* black_cell = black.data();
  const uint8_t* white_cell = white.data();
  const model::Score both_empty = model::score_cell(Loss::IoU, dark.data(), black_cell);
  EXPECT_EQ(both_empty.metric, 1.0f);
  EXPECT_EQ(both_empty.loss, -1.0f);
  EXPECT_EQ(model::score_cell(Loss::IoU, dark.data(), white_cell).metric, 0.0f);
  for (int ch = 0; ch < 3; ++ch) dark[static_cast<size_t>((ch * kImage + 150) * kImage + 150)] = 1.0f;
  EXPECT_EQ(model::score_cell(Loss::IoU, dark.data(), black_cell).metric, 0.0f);
  EXPECT_NEAR(model::score_cell(Loss::IoU, dark.data(), white_cell).metric, 1.0 / (111.0 * 111.0), 1e-9);
}

TEST_F(EngineTest, BadRequestsFailBeforeAnyWork) {
  auto canvases = make_canvases(3, 101);
  Call c;
  c.canvases = &canvases;
  {
    auto bad = canvases;
    bad[static_cast<size_t>(2 * kCanvasFloats + 5 * kImage + 7)] = std::numeric_limits<float>::quiet_NaN();
    Call b = c;
    b.canvases = &bad;
    expect_error([&] { run(b); }, {"canvas 2", "nan", "y 5, x 7"});
    bad[static_cast<size_t>(2 * kCanvasFloats + 5 * kImage + 7)] = std::numeric_limits<float>::infinity();
    expect_error([&] { run(b); }, {"canvas 2", "inf"});
  }
  {
    Call b = c;
    b.index = {0, 3};
    expect_error([&] { run(b); }, {"canvas_index[1] = 3", "[0, 3)"});
  }
  auto means_enc = random_vector(means_enc_floats(cfg()), 102), means_dec = random_vector(means_dec_floats(cfg()), 103);
  const int64_t bytes = patch_bytes(cfg(), Mode::ZeroShot);
  {
    // The presets' bit counts are multiples of 8; 3 encoder layers of 3 heads leave padding bits.
    ModelConfig odd = cfg();
    odd.name = "tiny-odd";
    odd.enc_dim = 48;
    odd.enc_depth = 3;
    odd.enc_heads = 3;
    const int64_t odd_bits = patch_bits(odd, Mode::ZeroShot), odd_bytes = patch_bytes(odd, Mode::ZeroShot);
    ASSERT_NE(odd_bits % 8, 0);
    test::TempFile f("odd");
    test::RandomModelOptions ro;
    ro.vqgan = false;
    test::write_random_model(f.path(), odd, ro);
    EngineOptions eo;
    eo.threads = 1;
    eo.need_vqgan = false;
    Engine e(odd, Weights::open({f.path()}), eo);
    std::vector<float> me(static_cast<size_t>(means_enc_floats(odd)), 0.5f), md(static_cast<size_t>(means_dec_floats(odd)), 0.5f);
    std::vector<uint8_t> masks(static_cast<size_t>(3 * odd_bytes), 0xFF);
    for (int b = 0; b < 3; ++b) masks[static_cast<size_t>(b * odd_bytes + odd_bytes - 1)] = static_cast<uint8_t>((1u << (odd_bits % 8)) - 1);
    std::vector<float> logits(static_cast<size_t>(3 * 98 * odd.vocab()), kPoison);
    ForwardRequest rq;
    rq.canvases = canvases.data();
    rq.num_canvases = 3;
    rq.patch_mask = masks.data();
    rq.means_enc = me.data();
    rq.means_dec = md.data();
    ForwardResult rs;
    rs.logits = logits.data();
    e.forward(rq, rs);  // every variable set, padding clear: fine
    expect_all_finite(logits, "logits");
    masks[static_cast<size_t>(2 * odd_bytes + odd_bytes - 1)] |= 0x80;
    expect_error([&] { e.forward(rq, rs); }, {"patch_mask of sample 2", "padding bits must be zero"});
    masks[static_cast<size_t>(2 * odd_bytes + odd_bytes - 1)] &= 0x7F;
    me[5] = std::numeric_limits<float>::quiet_NaN();
    expect_error([&] { e.forward(rq, rs); }, {"means_enc has a non-finite value at float index 5"});
  }
  {
    ForwardRequest rq;
    rq.canvases = canvases.data();
    rq.num_canvases = 3;
    std::vector<uint8_t> masks(static_cast<size_t>(3 * bytes), 0);
    rq.patch_mask = masks.data();
    rq.means_enc = means_enc.data();
    ForwardResult rs;
    expect_error([&] { engine().forward(rq, rs); }, {"means_dec"});
    ForwardRequest empty;
    expect_error([&] { engine().forward(empty, rs); }, {"canvases is null"});
    rq = ForwardRequest();
    rq.canvases = canvases.data();
    rq.num_canvases = 3;
    rq.batch = 2;
    expect_error([&] { engine().forward(rq, rs); }, {"batch = 2", "num_canvases = 3"});
    rq.batch = 3;
    std::vector<float> losses(3);
    rs.losses = losses.data();
    expect_error([&] { engine().forward(rq, rs); }, {"request.loss is None"});
  }
}

// Task means bound once are checked then, and copied: a forward with the handle equals one with the raw
// tables, never looks at the caller's tables again (they may change, even to NaN), and a handle works
// only with the engine that bound it.
TEST_F(EngineTest, BoundTaskMeansAreCheckedOnceAndKeptByTheEngine) {
  auto canvases = make_canvases(2, 131);
  auto means_enc = random_vector(means_enc_floats(cfg()), 132, 3.0f);
  auto means_dec = random_vector(means_dec_floats(cfg()), 133, 3.0f);
  const std::vector<int32_t> index = {0, 1, 1, 0};
  auto masks = random_masks(4, Mode::ZeroShot, 134, 0.4);
  Call c;
  c.canvases = &canvases;
  c.index = index;
  c.masks = &masks;
  c.means_enc = &means_enc;
  c.means_dec = &means_dec;
  const Outputs raw = run(c);

  const std::shared_ptr<const BoundTaskMeans> bound = engine().bind_task_means(means_enc.data(), means_dec.data());
  ASSERT_NE(bound, nullptr);
  auto scribbled_enc = means_enc, scribbled_dec = means_dec;
  Call b = c;
  b.means_enc = &scribbled_enc;  // not read: the handle carries the tables
  b.means_dec = &scribbled_dec;
  b.task_means = bound.get();
  std::fill(scribbled_enc.begin(), scribbled_enc.end(), kPoison);
  std::fill(scribbled_dec.begin(), scribbled_dec.end(), kPoison);
  const Outputs with_handle = run(b);
  EXPECT_EQ(with_handle.logits, raw.logits);
  EXPECT_EQ(with_handle.tokens, raw.tokens);
  EXPECT_EQ(with_handle.losses, raw.losses);
  // The same NaN tables sent with the call are refused, naming the first bad index.
  Call per_call = c;
  per_call.means_enc = &scribbled_enc;
  expect_error([&] { run(per_call); }, {"forward: means_enc has a non-finite value at float index 0"});

  // Binding checks every value once.
  auto nan_dec = means_dec;
  nan_dec[17] = std::numeric_limits<float>::infinity();
  expect_error([&] { engine().bind_task_means(means_enc.data(), nan_dec.data()); },
               {"bind_task_means: means_dec has a non-finite value at float index 17"});
  expect_error([&] { engine().bind_task_means(nullptr, means_dec.data()); }, {"bind_task_means", "required"});

  // A handle goes with patch_mask, alone, and only to the engine that made it.
  ForwardRequest rq;
  rq.canvases = canvases.data();
  rq.num_canvases = 2;
  rq.task_means = bound.get();
  ForwardResult rs;
  expect_error([&] { engine().forward(rq, rs); }, {"task_means needs patch_mask"});
  std::vector<uint8_t> two(static_cast<size_t>(2 * patch_bytes(cfg(), Mode::ZeroShot)), 0);
  rq.patch_mask = two.data();
  rq.means_enc = means_enc.data();
  rq.means_dec = means_dec.data();
  expect_error([&] { engine().forward(rq, rs); }, {"either bound (task_means) or as tables", "not both"});
  rq.means_enc = rq.means_dec = nullptr;
  EngineOptions o;
  o.threads = 1;
  o.need_vqgan = false;
  Engine other(cfg(), *weights_, o);
  expect_error([&] { other.forward(rq, rs); }, {"task_means was bound by another engine"});
  const auto others = other.bind_task_means(means_enc.data(), means_dec.data());
  rq.task_means = others.get();
  std::vector<float> logits(static_cast<size_t>(2 * 98 * cfg().vocab()), kPoison);
  rs.logits = logits.data();
  other.forward(rq, rs);
  expect_all_finite(logits, "logits");
}

// The cpu backend builds the CPU models the engine needs, and frees them with it (the cuda backend
// builds none: cuda_engine_test.cc).
TEST_F(EngineTest, CpuBackendBuildsTheCpuModelsItNeeds) {
  const int64_t before = model::cpu_models_alive();
  {
    EngineOptions o;
    o.threads = 1;
    o.need_vqgan = false;
    Engine mae_only(cfg(), *weights_, o);
    EXPECT_EQ(model::cpu_models_alive() - before, 1);  // the MAE
    o.need_vqgan = true;
    Engine full(cfg(), *weights_, o);
    EXPECT_EQ(model::cpu_models_alive() - before, 3);  // and the MAE and VQGAN decoder
  }
  EXPECT_EQ(model::cpu_models_alive(), before);
}

TEST_F(EngineTest, MaeOnlyEngineAndOptionErrors) {
  test::TempFile mae_only("mae_only");
  test::RandomModelOptions o;
  o.vqgan = false;
  test::write_random_model(mae_only.path(), cfg(), o);
  auto w = Weights::open({mae_only.path()});
  EngineOptions opts;
  opts.threads = 1;
  expect_error([&] { Engine e(cfg(), w, opts); }, {"quantize.embedding.weight", "need_vqgan=false"});
  opts.need_vqgan = false;
  Engine e(cfg(), w, opts);
  // The same MAE weights as the fixture's file (same seed, the MAE is written first): same logits.
  auto canvases = make_canvases(1, 111);
  std::vector<float> logits(static_cast<size_t>(98 * cfg().vocab()), kPoison);
  ForwardRequest rq;
  rq.canvases = canvases.data();
  rq.num_canvases = 1;
  ForwardResult rs;
  rs.logits = logits.data();
  e.forward(rq, rs);
  Call c;
  c.canvases = &canvases;
  c.decode = false;
  EXPECT_EQ(run(c).logits, logits);
  rq.loss = Loss::MSE;
  expect_error([&] { e.forward(rq, rs); }, {"need_vqgan = false"});
  rq.loss = Loss::None;
  std::vector<uint8_t> images(static_cast<size_t>(kCanvasFloats));
  rs.images = images.data();
  expect_error([&] { e.forward(rq, rs); }, {"need_vqgan = false"});

  // backend "cuda" is refused, naming why, exactly where the probe finds it unusable.
  EngineOptions cuda_o;
  cuda_o.backend = BackendKind::Cuda;
  cuda_o.need_vqgan = false;
  if (cuda::probe().usable) {
    Engine x(cfg(), w, cuda_o);
    EXPECT_EQ(x.backend(), BackendKind::Cuda);
  } else {
    expect_error([&] { Engine x(cfg(), w, cuda_o); }, {"backend 'cuda' requested", "not usable"});
  }
  EngineOptions bf16;
  bf16.precision = Precision::BF16;
  bf16.need_vqgan = false;
  expect_error([&] { Engine x(cfg(), w, bf16); }, {"precision 'bf16'", "cpu"});
  EXPECT_STREQ(backend_name(BackendKind::Cuda), "cuda");
  EXPECT_STREQ(precision_name(Precision::BF16), "bf16");
  // A file for another model size fails on the first mis-shaped key.
  EngineOptions mae;
  mae.need_vqgan = false;
  expect_error([&] { Engine x(preset("mae-vqgan-vit-large"), w, mae); }, {"key cls_token: expected shape [1,1,1024], file has [1,1,64]"});
}

TEST_F(EngineTest, Bf16WeightsAndBareVqganKeysLoad) {
  test::TempFile f("bf16_bare");
  test::RandomModelOptions o;
  o.bf16 = true;
  o.vq_prefix = "";
  test::write_random_model(f.path(), cfg(), o);
  EngineOptions opts;
  opts.threads = 1;
  Engine e(cfg(), Weights::open({f.path()}), opts);
  auto canvases = make_canvases(1, 121);
  std::vector<float> losses(1, kPoison);
  ForwardRequest rq;
  rq.canvases = canvases.data();
  rq.num_canvases = 1;
  rq.loss = Loss::MSE;
  ForwardResult rs;
  rs.losses = losses.data();
  e.forward(rq, rs);
  EXPECT_TRUE(std::isfinite(losses[0]));
  EXPECT_EQ(rs.unique_forwards, 1);
  EXPECT_EQ(rs.unique_decodes, 1);
}

}  // namespace
}  // namespace vtv
