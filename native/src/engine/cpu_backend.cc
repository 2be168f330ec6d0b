// The cpu backend: the passes of backend.h on model::MaeForward, model::VqganDecoder and
// model::VqganEncoder, on the engine's thread pool. Pass capacities come from the activation budget
// (model/activation_budget.h), so a large step runs in pieces of bounded memory.
#include <algorithm>
#include <cstring>
#include <thread>

#include "cpu/elementwise.h"
#include "cpu/gemm.h"
#include "engine/backend.h"
#include "model/activation_budget.h"
#include "model/losses.h"
#include "model/mae.h"
#include "model/token_losses.h"
#include "model/vqgan_decoder.h"
#include "model/vqgan_encoder.h"
#include "model/weights_view.h"
#include "model/work_sharing.h"
#include "vtv/error.h"

namespace vtv::engine {

namespace {

// Samples per pass never exceed these even under a large budget: beyond them the GEMMs are already long
// enough, and a smaller working set stays in cache.
constexpr int64_t kMaxMaeChunk = 64;
constexpr int64_t kMaxDecodeChunk = 16;
constexpr int64_t kMaxEncodeChunk = 16;
constexpr int64_t kCanvasFloats = int64_t(3) * kImage * kImage;

// Means in host memory: a copy of the caller's tables (bound), or the caller's own (one call).
class CpuMeans : public BackendMeans {
 public:
  CpuMeans(uint64_t owner, const float* e, const float* d, int64_t enc_floats, int64_t dec_floats)
      : BackendMeans(owner), enc_copy_(e, e + enc_floats), dec_copy_(d, d + dec_floats) {
    enc = enc_copy_.data();
    dec = dec_copy_.data();
  }

 private:
  std::vector<float> enc_copy_, dec_copy_;
};

class CpuBackend : public Backend {
 public:
  CpuBackend(const ModelConfig& config, Weights& weights, BackendParts parts, ThreadPool& pool)
      : config_(config), pool_(pool), call_means_(instance()) {
    mae_w_ = model::bind_mae(weights, config_);
    mae_ = std::make_unique<model::MaeForward>(config_, mae_w_);
    if (parts.decoder) {
      decoder_w_ = model::bind_vqgan_decoder(weights, config_);
      decoder_ = std::make_unique<model::VqganDecoder>(config_, decoder_w_);
    }
    if (parts.encoder) {
      encoder_w_ = model::bind_vqgan_encoder(weights, config_);
      encoder_ = std::make_unique<model::VqganEncoder>(config_, encoder_w_);
    }
  }

  BackendKind kind() const override { return BackendKind::Cpu; }

  std::shared_ptr<const BackendMeans> bind_means(const float* enc, const float* dec) override {
    return std::make_shared<CpuMeans>(instance(), enc, dec, means_enc_floats(config_), means_dec_floats(config_));
  }
  const BackendMeans& means_for_call(const float* enc, const float* dec) override {
    call_means_.enc = enc;
    call_means_.dec = dec;
    return call_means_;
  }

  int64_t mae_pass_capacity(Mode mode) const override {
    return model::chunk_samples(mae_->bytes_per_sample(mode), kMaxMaeChunk);
  }

  void begin_mae(int64_t forwards) override { grids_.assign(static_cast<size_t>(forwards) * kPatches, 0); }

  void mae_pass(const MaePass& pass, int64_t first_forward, const MaePassOutputs& out) override {
    const Mode mode = pass.mode;
    const int64_t n = static_cast<int64_t>(pass.canvases.size());
    const int64_t P = dec_tokens(mode) - 1, V = config_.vocab();
    model::MaeChunk chunk;
    chunk.mode = mode;
    chunk.canvases = pass.canvases;
    if (pass.patch_masks) {
      chunk.patch_masks = pass.patch_masks;
      chunk.means_enc = pass.means->enc;
      chunk.means_dec = pass.means->dec;
    }
    chunk.capture_enc = pass.capture_enc;
    chunk.capture_dec = pass.capture_dec;
    // The argmax needs the logits: into the caller's rows when asked for, else into scratch.
    float* logits = out.logits;
    if (!logits) {
      logits_.resize(static_cast<size_t>(n * P * V));
      logits = logits_.data();
    }
    mae_->run(pool_, chunk, {out.encoder_out, out.decoder_out, logits});

    argmax_.resize(static_cast<size_t>(n * P));
    cpu::argmax_rows(pool_, logits, n * P, V, argmax_.data());
    for (int64_t i = 0; i < n; ++i) {
      int32_t* grid = grids_.data() + (first_forward + i) * kPatches;
      const int32_t* y = argmax_.data() + i * P;
      // Zero-shot: hstack([y, y]), the 98 predictions (rows 7-13) fill rows 0-6 as well.
      for (int64_t q = 0; q < kPatches; q += P) std::copy(y, y + P, grid + q);
      if (out.tokens) std::copy(grid, grid + kPatches, out.tokens + i * kPatches);
    }
    if (pass.token_loss != Loss::None) {
      pool_.parallel_for(n, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const model::Score s = model::score_tokens(pass.token_loss, mode, logits + i * P * V, argmax_.data() + i * P, V,
                                                     pass.target_tokens[static_cast<size_t>(i)]);
          if (out.token_losses) out.token_losses[i] = s.loss;
          if (out.token_metrics) out.token_metrics[i] = s.metric;
        }
      });
    }
  }

  bool has_decoder() const override { return decoder_ != nullptr; }

  int64_t decode_pass_capacity() const override {
    return model::chunk_samples(decoder_->bytes_per_sample() + kCanvasFloats * int64_t(sizeof(float)), kMaxDecodeChunk);
  }

  int64_t begin_decode(bool dedupe, const uint8_t* targets, int64_t num_targets, int32_t* grid_of_forward) override {
    const int forwards = static_cast<int>(grids_.size() / kPatches);
    distinct_ = model::group_identical(
        forwards,
        [&](int u) { return model::KeyView{0, grids_.data() + int64_t(u) * kPatches, sizeof(int32_t) * kPatches}; },
        dedupe);
    std::copy(distinct_.group_of.begin(), distinct_.group_of.end(), grid_of_forward);
    targets_ = targets;
    num_targets_ = num_targets;
    return distinct_.count();
  }

  void decode_pass(const DecodePass& pass, const DecodePassOutputs& out) override {
    const int64_t n = pass.grids;
    std::vector<const int32_t*> grids;
    for (int64_t i = 0; i < n; ++i) {
      const int u = distinct_.first[static_cast<size_t>(pass.first_grid + i)];
      grids.push_back(grids_.data() + int64_t(u) * kPatches);
    }
    float* pixels = out.pixels;
    if (!pixels) {
      pixels_.resize(static_cast<size_t>(n * kCanvasFloats));
      pixels = pixels_.data();
    }
    decoder_->run(pool_, grids, pixels);
    const int64_t jobs = pass.loss == Loss::None ? 0 : static_cast<int64_t>(pass.job_grid.size());
    pool_.parallel_for(jobs, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int64_t target = pass.job_target[static_cast<size_t>(j)];
        check(target >= 0 && target < num_targets_, "cpu backend: score job target outside the step's targets");
        const model::Score s = model::score_cell(pass.loss, pixels + pass.job_grid[static_cast<size_t>(j)] * kCanvasFloats,
                                                 targets_ + target * model::kCellBytes);
        if (out.job_losses) out.job_losses[j] = s.loss;
        if (out.job_metrics) out.job_metrics[j] = s.metric;
      }
    });
  }

  bool has_encoder() const override { return encoder_ != nullptr; }

  int64_t encode_pass_capacity() const override {
    return model::chunk_samples(encoder_->bytes_per_sample(), kMaxEncodeChunk);
  }

  void encode_pass(const float* canvases, int64_t n, int32_t* tokens) override {
    std::vector<const float*> ptrs;
    for (int64_t i = 0; i < n; ++i) ptrs.push_back(canvases + i * kCanvasFloats);
    encoder_->run(pool_, ptrs, tokens);
  }

 private:
  const ModelConfig config_;  // the models keep references to it and to the weight views below
  ThreadPool& pool_;
  model::MaeW mae_w_;
  model::VqganDecoderW decoder_w_;
  model::VqganEncoderW encoder_w_;
  std::unique_ptr<model::MaeForward> mae_;
  std::unique_ptr<model::VqganDecoder> decoder_;
  std::unique_ptr<model::VqganEncoder> encoder_;
  BackendMeans call_means_;
  // The step: every forward's token grid, and the distinct ones among them.
  std::vector<int32_t> grids_;
  model::Groups distinct_;
  const uint8_t* targets_ = nullptr;
  int64_t num_targets_ = 0;
  // Scratch reused across passes.
  std::vector<float> logits_, pixels_;
  std::vector<int32_t> argmax_;
};

}  // namespace

std::string cpu_backend_detail() {
  return std::string("fp32, gemm ") + cpu::gemm_implementation() + ", " +
         std::to_string(std::max(1u, std::thread::hardware_concurrency())) + " hardware threads";
}

std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, Weights& weights, BackendParts parts,
                                          ThreadPool& pool) {
  return std::make_unique<CpuBackend>(config, weights, parts, pool);
}

}  // namespace vtv::engine
