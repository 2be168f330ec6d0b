// The engine on its cuda backend, through the Backend seam: it builds no CPU model, the token losses it
// scores on the device equal the cpu backend's host scores, and task means bound once (uploaded once)
// give what per-call tables give. Tiny model, fp32; runs on the CPU CUDA emulator without a GPU.
#include <gtest/gtest.h>

#include "cuda_test_util.h"

#ifdef VTV_WITH_CUDA
#include <cmath>
#include <memory>

#include "expect_error.h"
#include "model/cpu_model_count.h"
#include "model/token_losses.h"
#include "test_weights.h"
#include "vtv/config.h"
#include "vtv/engine.h"
#include "vtv/error.h"
#include "vtv/weights.h"

namespace vtv::test {
namespace {

struct TinyModel {
  ModelConfig c = preset("tiny");
  TempFile file{"cuda_engine"};
  std::shared_ptr<Weights> weights;
  TinyModel() {
    RandomModelOptions o;
    o.seed = 3;
    o.vqgan_encoder = true;
    write_random_model(file.path(), c, o);
    weights = Weights::open({file.path()});
  }
};

EngineOptions options(BackendKind backend, bool decoder) {
  EngineOptions o;
  o.backend = backend;
  o.threads = 2;
  o.need_vqgan = decoder;
  return o;
}

TEST(CudaEngine, BuildsNoCpuModel) {
  VTV_REQUIRE_GPU();
  TinyModel m;
  const int64_t before = model::cpu_models_alive();
  EngineOptions o = options(BackendKind::Cuda, true);
  o.need_vqgan_encoder = true;
  Engine e(m.c, m.weights, o);
  EXPECT_EQ(e.backend(), BackendKind::Cuda);
  EXPECT_EQ(model::cpu_models_alive(), before) << "the cuda engine built a CPU MAE, VQGAN decoder or encoder";
  o.backend = BackendKind::Cpu;
  Engine cpu(m.c, m.weights, o);
  EXPECT_EQ(model::cpu_models_alive() - before, 3);  // the check above can see them
}

// One request on both backends: zero-shot, patched with bound means, a token loss, duplicates among the
// samples (samples 0 and 4 share canvas and mask).
struct TokenCall {
  std::vector<float> canvases = make_canvases(3, 41);
  std::vector<int32_t> index = {0, 1, 2, 1, 0, 2};
  std::vector<float> means_enc, means_dec;
  std::vector<uint8_t> masks;
  std::vector<int32_t> targets;  // [3][49]

  explicit TokenCall(const ModelConfig& c) {
    means_enc = random_vector(static_cast<size_t>(means_enc_floats(c)), 42, 2.0f);
    means_dec = random_vector(static_cast<size_t>(means_dec_floats(c)), 43, 2.0f);
    const int64_t bytes = patch_bytes(c, Mode::ZeroShot), bits = patch_bits(c, Mode::ZeroShot);
    masks.assign(index.size() * static_cast<size_t>(bytes), 0);
    std::mt19937 rng(44);
    for (size_t b = 0; b < index.size(); ++b) {
      for (int64_t i = 0; i < bits; ++i) {
        if (rng() % 4 == 0) masks[b * size_t(bytes) + size_t(i >> 3)] |= uint8_t(1u << (i & 7));
      }
    }
    std::copy(masks.begin(), masks.begin() + bytes, masks.begin() + 4 * bytes);
    targets.resize(3 * kQuadrantTokens);
    for (auto& t : targets) t = static_cast<int32_t>(rng() % uint32_t(c.vocab()));
  }

  struct Result {
    std::vector<float> losses, metrics, logits;
    std::vector<int32_t> tokens;
    int unique_forwards = 0;
  };
  Result run(Engine& e, Loss loss, const BoundTaskMeans* bound, bool logits) {
    const int B = static_cast<int>(index.size());
    Result r;
    r.losses.assign(size_t(B), NAN);
    r.metrics.assign(size_t(B), NAN);
    r.tokens.assign(size_t(B) * kPatches, -1);
    if (logits) r.logits.assign(size_t(B) * 98 * e.config().vocab(), NAN);
    ForwardRequest rq;
    rq.canvases = canvases.data();
    rq.num_canvases = 3;
    rq.canvas_index = index.data();
    rq.batch = B;
    rq.patch_mask = masks.data();
    if (bound) {
      rq.task_means = bound;
    } else {
      rq.means_enc = means_enc.data();
      rq.means_dec = means_dec.data();
    }
    rq.loss = loss;
    rq.target_tokens = targets.data();
    ForwardResult rs;
    rs.losses = r.losses.data();
    rs.metrics = r.metrics.data();
    rs.tokens = r.tokens.data();
    if (logits) rs.logits = r.logits.data();
    e.forward(rq, rs);
    r.unique_forwards = rs.unique_forwards;
    return r;
  }
};

// The token losses scored on the device (cuda) against the host's (cpu): equal where the two backends'
// argmax grids agree (fp32 grids differ only at near-ties), whether the logits come back or not.
TEST(CudaEngine, DeviceTokenScoringMatchesTheCpuBackend) {
  VTV_REQUIRE_GPU();
  TinyModel m;
  Engine cpu(m.c, m.weights, options(BackendKind::Cpu, false));
  Engine gpu(m.c, m.weights, options(BackendKind::Cuda, false));
  TokenCall call(m.c);
  const auto cpu_means = cpu.bind_task_means(call.means_enc.data(), call.means_dec.data());
  const auto gpu_means = gpu.bind_task_means(call.means_enc.data(), call.means_dec.data());
  for (Loss loss : {Loss::TokenCE, Loss::TokenAccuracy}) {
    SCOPED_TRACE(loss == Loss::TokenCE ? "TokenCE" : "TokenAccuracy");
    const auto host = call.run(cpu, loss, cpu_means.get(), false);
    const auto device = call.run(gpu, loss, gpu_means.get(), false);
    const auto device_with_logits = call.run(gpu, loss, gpu_means.get(), true);
    EXPECT_EQ(device.unique_forwards, 5);
    EXPECT_EQ(device.losses, device_with_logits.losses);
    EXPECT_EQ(device.metrics, device_with_logits.metrics);
    int compared = 0;
    for (size_t b = 0; b < call.index.size(); ++b) {
      if (!std::equal(host.tokens.begin() + b * kPatches, host.tokens.begin() + (b + 1) * kPatches,
                      device.tokens.begin() + b * kPatches)) {
        std::printf("sample %zu: token grids differ between the backends; its scores are not compared\n", b);
        continue;
      }
      ++compared;
      EXPECT_EQ(device.metrics[b], host.metrics[b]) << "sample " << b;
      EXPECT_NEAR(device.losses[b], host.losses[b], 1e-4 * std::max(1.0f, std::fabs(host.losses[b]))) << "sample " << b;
    }
    EXPECT_GE(compared, 4) << "too few samples with equal grids: the scores were barely compared";
    // The logits that came back are the ones scored: the host's score of them is the device's.
    const int64_t V = m.c.vocab();
    for (size_t b = 0; b < call.index.size(); ++b) {
      const model::Score s = model::score_tokens(loss, Mode::ZeroShot, device_with_logits.logits.data() + b * 98 * V,
                                                 device_with_logits.tokens.data() + b * kPatches, V,
                                                 call.targets.data() + call.index[b] * kQuadrantTokens);
      EXPECT_EQ(device_with_logits.metrics[b], s.metric) << "sample " << b;
      EXPECT_NEAR(device_with_logits.losses[b], s.loss, 1e-6 * std::max(1.0f, std::fabs(s.loss))) << "sample " << b;
    }
  }
}

// Means bound once live on the device: the forward equals one with this call's tables, exactly (the same
// device computation), and a handle of another engine is refused.
TEST(CudaEngine, BoundMeansEqualPerCallMeans) {
  VTV_REQUIRE_GPU();
  TinyModel m;
  Engine gpu(m.c, m.weights, options(BackendKind::Cuda, false));
  TokenCall call(m.c);
  const auto bound = gpu.bind_task_means(call.means_enc.data(), call.means_dec.data());
  std::fill(call.means_enc.begin(), call.means_enc.end(), 0.0f);  // the handle keeps its own copy
  const auto with_handle = call.run(gpu, Loss::TokenCE, bound.get(), true);
  call.means_enc = random_vector(static_cast<size_t>(means_enc_floats(m.c)), 42, 2.0f);
  const auto per_call = call.run(gpu, Loss::TokenCE, nullptr, true);
  EXPECT_EQ(with_handle.logits, per_call.logits);
  EXPECT_EQ(with_handle.tokens, per_call.tokens);
  EXPECT_EQ(with_handle.losses, per_call.losses);
  Engine cpu(m.c, m.weights, options(BackendKind::Cpu, false));
  const auto cpu_means = cpu.bind_task_means(call.means_enc.data(), call.means_dec.data());
  expect_error([&] { call.run(gpu, Loss::TokenCE, cpu_means.get(), false); }, {"bound by another engine"});
  call.means_dec[3] = NAN;
  expect_error([&] { gpu.bind_task_means(call.means_enc.data(), call.means_dec.data()); },
               {"means_dec has a non-finite value at float index 3"});
}

}  // namespace
}  // namespace vtv::test

#else  // !VTV_WITH_CUDA

VTV_CUDA_NOT_COMPILED_IN_TEST(CudaEngine)

#endif
