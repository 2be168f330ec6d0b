// The cuda backend: the passes of backend.h on cuda::MaeCuda, cuda::VqganCuda and
// cuda::VqganEncoderCuda. It builds no CPU model: the weights are bound by name (model/weights_view) and
// uploaded once. A step's token grids stay on the device from the MAE passes to the decode passes, the
// distinct grids are found there, task means bound once live there, and the token losses are scored
// there, so what crosses back per sample is a loss and a metric (and what the caller asked for).
// Compiled only with the CUDA backend (cuda_backend_absent.cc otherwise).
#include <algorithm>
#include <memory>

#include "cuda/device_buffer.h"
#include "cuda/mae_cuda.h"
#include "cuda/probe.h"
#include "cuda/vqgan_cuda.h"
#include "cuda/vqgan_encoder_cuda.h"
#include "engine/backend.h"
#include "model/losses.h"
#include "model/weights_view.h"
#include "vtv/error.h"

namespace vtv::engine {

namespace {

// Samples per MAE pass: MaeCuda splits a pass into device passes of its own max_chunk, so the engine's
// pass size bounds only the host buffers of requested outputs (logits, encoder/decoder outputs).
constexpr int64_t kMaePassSamples = 256;

// Means in device memory, uploaded once.
class CudaMeans : public BackendMeans {
 public:
  explicit CudaMeans(uint64_t owner) : BackendMeans(owner) {}
  void upload(const float* e, const float* d, int64_t enc_floats, int64_t dec_floats) {
    enc_buffer_.resize(static_cast<size_t>(enc_floats));
    dec_buffer_.resize(static_cast<size_t>(dec_floats));
    enc_buffer_.upload(e, static_cast<size_t>(enc_floats));
    dec_buffer_.upload(d, static_cast<size_t>(dec_floats));
    enc = enc_buffer_.get();
    dec = dec_buffer_.get();
  }

 private:
  cuda::DeviceBuffer<float> enc_buffer_, dec_buffer_;
};

class CudaBackend : public Backend {
 public:
  CudaBackend(const ModelConfig& config, Weights& weights, BackendParts parts, Precision precision)
      : config_(config), call_means_(instance()) {
    mae_ = std::make_unique<cuda::MaeCuda>(config_, model::bind_mae(weights, config_), precision);
    if (parts.decoder) {
      decoder_ = std::make_unique<cuda::VqganCuda>(config_, model::bind_vqgan_decoder(weights, config_), precision);
    }
    if (parts.encoder) {
      encoder_ = std::make_unique<cuda::VqganEncoderCuda>(config_, model::bind_vqgan_encoder(weights, config_), precision);
    }
  }

  BackendKind kind() const override { return BackendKind::Cuda; }

  std::shared_ptr<const BackendMeans> bind_means(const float* enc, const float* dec) override {
    auto means = std::make_shared<CudaMeans>(instance());
    means->upload(enc, dec, means_enc_floats(config_), means_dec_floats(config_));
    return means;
  }
  const BackendMeans& means_for_call(const float* enc, const float* dec) override {
    call_means_.upload(enc, dec, means_enc_floats(config_), means_dec_floats(config_));
    return call_means_;
  }

  int64_t mae_pass_capacity(Mode) const override { return kMaePassSamples; }

  void begin_mae(int64_t forwards) override {
    forwards_ = forwards;
    grids_.resize(static_cast<size_t>(std::max<int64_t>(1, forwards)) * kPatches);
  }

  void mae_pass(const MaePass& pass, int64_t first_forward, const MaePassOutputs& out) override {
    const int64_t n = static_cast<int64_t>(pass.canvases.size());
    model::MaeChunk chunk;
    chunk.mode = pass.mode;
    chunk.canvases = pass.canvases;
    chunk.patch_masks = pass.patch_masks;
    chunk.capture_enc = pass.capture_enc;
    chunk.capture_dec = pass.capture_dec;
    cuda::MaeCudaRunOptions options;
    if (pass.patch_masks) {
      options.means_enc_device = pass.means->enc;
      options.means_dec_device = pass.means->dec;
    }
    if (pass.token_loss != Loss::None) {
      // The pass's target tokens, [n][49] for one upload.
      targets_.resize(static_cast<size_t>(n) * kQuadrantTokens);
      for (int64_t i = 0; i < n; ++i) {
        const int32_t* t = pass.target_tokens[static_cast<size_t>(i)];
        std::copy(t, t + kQuadrantTokens, targets_.begin() + i * kQuadrantTokens);
      }
      options.token_loss = pass.token_loss;
      options.target_tokens = targets_.data();
      options.token_losses = out.token_losses;
      options.token_metrics = out.token_metrics;
    }
    // The argmax is fused into the prediction head: the logits leave the device only when asked for.
    mae_->run(chunk, {out.encoder_out, out.decoder_out, out.logits, out.tokens, grids_.get() + first_forward * kPatches},
              options);
  }

  bool has_decoder() const override { return decoder_ != nullptr; }

  int64_t decode_pass_capacity() const override { return decoder_->max_chunk(); }

  int64_t begin_decode(bool dedupe, const uint8_t* targets, int64_t num_targets, int32_t* grid_of_forward) override {
    // The step's targets go up once; every decode pass's score jobs read them in place.
    const size_t bytes = static_cast<size_t>(num_targets * model::kCellBytes);
    targets_device_.resize(std::max<size_t>(1, bytes));
    if (bytes > 0) targets_device_.upload(targets, bytes);
    num_targets_ = num_targets;
    return decoder_->distinct_grids(grids_.get(), forwards_, dedupe, grid_of_forward);
  }

  void decode_pass(const DecodePass& pass, const DecodePassOutputs& out) override {
    cuda::VqganScoreJobs jobs;
    if (pass.loss != Loss::None && !pass.job_grid.empty()) {
      jobs.loss = pass.loss;
      jobs.count = static_cast<int64_t>(pass.job_grid.size());
      jobs.grid = pass.job_grid.data();
      jobs.target = pass.job_target.data();
      jobs.targets = targets_device_.get();
      jobs.num_targets = num_targets_;
      jobs.targets_on_device = true;
    }
    decoder_->decode_distinct(pass.first_grid, pass.grids, jobs, {out.pixels, out.job_losses, out.job_metrics});
  }

  bool has_encoder() const override { return encoder_ != nullptr; }

  // VqganEncoderCuda splits into device passes of its own; the engine's pass bounds only host memory.
  int64_t encode_pass_capacity() const override { return 256; }

  void encode_pass(const float* canvases, int64_t n, int32_t* tokens) override { encoder_->encode(canvases, n, tokens); }

 private:
  const ModelConfig config_;
  std::unique_ptr<cuda::MaeCuda> mae_;
  std::unique_ptr<cuda::VqganCuda> decoder_;
  std::unique_ptr<cuda::VqganEncoderCuda> encoder_;
  CudaMeans call_means_;
  // The step: the token grids of its forwards, on the device, and the targets of its score jobs.
  int64_t forwards_ = 0;
  cuda::DeviceBuffer<int32_t> grids_;
  cuda::DeviceBuffer<uint8_t> targets_device_;
  int64_t num_targets_ = 0;
  std::vector<int32_t> targets_;  // host staging of a pass's target tokens
};

}  // namespace

CudaAvailability cuda_availability() {
  const cuda::Probe p = cuda::probe();
  return {p.compiled, p.usable, p.detail};
}

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig& config, Weights& weights, BackendParts parts,
                                           Precision precision) {
  return std::make_unique<CudaBackend>(config, weights, parts, precision);
}

}  // namespace vtv::engine
