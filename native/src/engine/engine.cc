// vtv::Engine: everything about a forward call that does not depend on the hardware, written once over
// the Backend seam (backend.h). It chooses and builds the backend, validates each request before any
// work, groups identical (canvas, mask) samples so each group runs one MAE forward, cuts the forwards and
// the distinct token grids into passes of the backend's capacity, turns a step's samples into score jobs
// (one per distinct (grid, target) pair), and fans every pass's outputs back out to the samples.
#include "vtv/engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/thread_pool.h"
#include "engine/backend.h"
#include "model/losses.h"
#include "model/work_sharing.h"
#include "vtv/error.h"

namespace vtv {

namespace {

// "auto" picks the GPU only once the CUDA path has passed its parity tests on a GPU
// (tools/device/check.sh). Until then the CUDA path runs only when asked for by name.
constexpr bool kCudaForwardVerified = false;
constexpr const char* kCudaNotVerified =
    "the CUDA transformer path has not been verified on a GPU yet, so 'auto' uses the cpu (ask for backend "
    "'cuda' to run it)";

constexpr int64_t kCanvasFloats = int64_t(3) * kImage * kImage;

const char* nonfinite_name(float v) { return std::isnan(v) ? "nan" : "inf"; }

// First non-finite index in [0, n), or -1.
int64_t find_nonfinite(ThreadPool& pool, const float* x, int64_t n) {
  std::atomic<int64_t> first{-1};
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (!std::isfinite(x[i])) {
        int64_t cur = first.load();
        while ((cur < 0 || i < cur) && !first.compare_exchange_weak(cur, i)) {
        }
        return;
      }
    }
  }, 65536);
  return first.load();
}

// Where a pass writes one requested output (null when not requested): the caller's rows from first_row
// on when the pass is in place, else `scratch` for n rows, fanned out to the samples afterwards.
template <class T>
T* pass_rows(T* result, std::vector<T>& scratch, bool in_place, int64_t first_row, int64_t n, int64_t per_row) {
  if (!result) return nullptr;
  if (in_place) return result + first_row * per_row;
  scratch.resize(static_cast<size_t>(n * per_row));
  return scratch.data();
}

}  // namespace

const char* backend_name(BackendKind kind) {
  switch (kind) {
    case BackendKind::Auto: return "auto";
    case BackendKind::Cpu: return "cpu";
    case BackendKind::Cuda: return "cuda";
  }
  return "unknown";
}

const char* precision_name(Precision precision) { return precision == Precision::BF16 ? "bf16" : "fp32"; }

std::vector<BackendInfo> backends() {
  std::vector<BackendInfo> out;
  BackendInfo cpu;
  cpu.kind = BackendKind::Cpu;
  cpu.compiled = true;
  cpu.usable = true;
  cpu.detail = engine::cpu_backend_detail();
  out.push_back(cpu);
  const engine::CudaAvailability cuda = engine::cuda_availability();
  BackendInfo gpu;
  gpu.kind = BackendKind::Cuda;
  gpu.compiled = cuda.compiled;
  gpu.usable = cuda.usable;
  gpu.detail = cuda.detail;
  if (cuda.usable && !kCudaForwardVerified) gpu.detail += "; " + std::string(kCudaNotVerified);
  out.push_back(gpu);
  return out;
}

class EngineImpl {
 public:
  EngineImpl(const ModelConfig& config, std::shared_ptr<Weights> weights, const EngineOptions& options);
  void forward(const ForwardRequest& request, ForwardResult& result);
  std::shared_ptr<const BoundTaskMeans> bind_task_means(const float* means_enc, const float* means_dec);
  void encode_tokens(const float* canvases, int n, int32_t* tokens);

  ModelConfig config;
  EngineOptions options;
  BackendKind backend_kind = BackendKind::Cpu;
  std::string reason;

 private:
  struct Step;
  void validate(const ForwardRequest& rq, const ForwardResult& rs, int batch) const;
  void check_canvases(const char* where, const float* canvases, int n) const;
  void check_means(const char* where, const float* means_enc, const float* means_dec) const;
  const engine::BackendMeans* means_of(const ForwardRequest& rq);
  void run_mae_passes(Step& step);
  void run_decode_passes(Step& step);

  std::shared_ptr<Weights> weights_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<engine::Backend> backend_;  // after pool_: the cpu backend runs on it
  std::mutex mutex_;                          // one call at a time: the backend reuses its scratch
  friend class Engine;
};

EngineImpl::EngineImpl(const ModelConfig& cfg, std::shared_ptr<Weights> weights, const EngineOptions& opts)
    : config(cfg), options(opts), weights_(std::move(weights)) {
  config.validate();
  check(weights_ != nullptr, "engine: weights are null");
  check(options.backend == BackendKind::Auto || options.backend == BackendKind::Cpu ||
            options.backend == BackendKind::Cuda,
        "engine: unknown backend kind " + std::to_string(static_cast<int>(options.backend)));
  check(options.precision == Precision::F32 || options.precision == Precision::BF16,
        "engine: unknown precision " + std::to_string(static_cast<int>(options.precision)));
  // More threads than a few per core only cost memory and scheduling; a typo such as 100000 would
  // exhaust the system's threads for every process.
  const int kMaxThreads = 4 * std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  check(options.threads >= 0 && options.threads <= kMaxThreads,
        "engine: threads must be 0 (every core) to " + std::to_string(kMaxThreads) + ", got " + std::to_string(options.threads));

  const engine::CudaAvailability cuda = engine::cuda_availability();
  backend_kind = BackendKind::Cpu;
  if (options.backend == BackendKind::Cuda) {
    if (!cuda.compiled || !cuda.usable) throw Error("engine: backend 'cuda' requested but cuda is not usable: " + cuda.detail);
    backend_kind = BackendKind::Cuda;
    reason = "cuda requested (" + cuda.detail + "): MAE, VQGAN decoder and encoder, and pixel losses on the GPU";
  } else if (options.backend == BackendKind::Cpu) {
    reason = "cpu requested";
  } else if (cuda.compiled && cuda.usable && kCudaForwardVerified) {
    backend_kind = BackendKind::Cuda;
    reason = "cuda usable (" + cuda.detail + ")";
  } else if (cuda.compiled && cuda.usable) {
    reason = "cuda compiled in and usable (" + cuda.detail + ") but " + kCudaNotVerified;
  } else if (cuda.compiled) {
    reason = "cuda compiled in but not usable: " + cuda.detail + "; using cpu";
  } else {
    reason = "cuda " + cuda.detail + "; using cpu";
  }
  if (options.precision == Precision::BF16 && backend_kind != BackendKind::Cuda) {
    throw Error("engine: precision 'bf16' needs the CUDA backend; the cpu backend runs fp32 (" + reason + ")");
  }

  pool_ = std::make_unique<ThreadPool>(options.threads);
  const engine::BackendParts parts{options.need_vqgan, options.need_vqgan_encoder};
  backend_ = backend_kind == BackendKind::Cuda ? engine::make_cuda_backend(config, *weights_, parts, options.precision)
                                               : engine::make_cpu_backend(config, *weights_, parts, *pool_);
}

void EngineImpl::check_canvases(const char* where, const float* canvases, int n) const {
  for (int i = 0; i < n; ++i) {
    const float* c = canvases + i * kCanvasFloats;
    const int64_t at = find_nonfinite(*pool_, c, kCanvasFloats);
    if (at >= 0) {
      const int64_t ch = at / (kImage * kImage), y = (at / kImage) % kImage, x = at % kImage;
      throw Error(std::string(where) + ": canvas " + std::to_string(i) + " has a non-finite value (" +
                  nonfinite_name(c[at]) + ") at channel " + std::to_string(ch) + ", y " + std::to_string(y) + ", x " +
                  std::to_string(x));
    }
  }
}

void EngineImpl::check_means(const char* where, const float* means_enc, const float* means_dec) const {
  check(means_enc != nullptr && means_dec != nullptr, std::string(where) + ": means_enc and means_dec are both required");
  const int64_t at_e = find_nonfinite(*pool_, means_enc, means_enc_floats(config));
  check(at_e < 0, std::string(where) + ": means_enc has a non-finite value at float index " + std::to_string(at_e));
  const int64_t at_d = find_nonfinite(*pool_, means_dec, means_dec_floats(config));
  check(at_d < 0, std::string(where) + ": means_dec has a non-finite value at float index " + std::to_string(at_d));
}

std::shared_ptr<const BoundTaskMeans> EngineImpl::bind_task_means(const float* means_enc, const float* means_dec) {
  std::lock_guard<std::mutex> lock(mutex_);
  check_means("bind_task_means", means_enc, means_dec);
  return backend_->bind_means(means_enc, means_dec);
}

void EngineImpl::validate(const ForwardRequest& rq, const ForwardResult& rs, int batch) const {
  check(rq.canvases != nullptr, "forward: request.canvases is null");
  check(rq.num_canvases > 0, "forward: request.num_canvases must be > 0, got " + std::to_string(rq.num_canvases));
  check(batch > 0, "forward: request.batch must be > 0, got " + std::to_string(rq.batch));
  if (!rq.canvas_index) {
    check(batch == rq.num_canvases, "forward: without canvas_index the batch is one sample per canvas, but batch = " +
                                        std::to_string(rq.batch) + " and num_canvases = " + std::to_string(rq.num_canvases));
  } else {
    for (int b = 0; b < batch; ++b) {
      const int ci = rq.canvas_index[b];
      check(ci >= 0 && ci < rq.num_canvases, "forward: canvas_index[" + std::to_string(b) + "] = " + std::to_string(ci) +
                                                 " is outside [0, " + std::to_string(rq.num_canvases) + ")");
    }
  }
  check_canvases("forward", rq.canvases, rq.num_canvases);

  if (rq.task_means) {
    check(!rq.means_enc && !rq.means_dec, "forward: pass the task means either bound (task_means) or as tables "
                                          "(means_enc, means_dec), not both");
    check(rq.patch_mask != nullptr, "forward: request.task_means needs patch_mask");
    const auto* means = dynamic_cast<const engine::BackendMeans*>(rq.task_means);
    check(means && means->owner() == backend_->instance(),
          "forward: request.task_means was bound by another engine; bind them with this engine's bind_task_means");
  } else if (rq.means_enc || rq.means_dec || rq.patch_mask) {
    check(rq.means_enc && rq.means_dec && rq.patch_mask,
          std::string("forward: patching needs means_enc, means_dec and patch_mask together; missing:") +
              (rq.means_enc ? "" : " means_enc") + (rq.means_dec ? "" : " means_dec") + (rq.patch_mask ? "" : " patch_mask"));
    check_means("forward", rq.means_enc, rq.means_dec);
  }
  if (rq.patch_mask) {
    const int64_t bits = patch_bits(config, rq.mode), bytes = patch_bytes(config, rq.mode);
    const int used = static_cast<int>(bits % 8);
    if (used != 0) {
      const uint8_t padding = static_cast<uint8_t>(0xFF << used);
      for (int b = 0; b < batch; ++b) {
        const uint8_t last = rq.patch_mask[int64_t(b) * bytes + bytes - 1];
        check((last & padding) == 0, "forward: patch_mask of sample " + std::to_string(b) +
                                         " has bits set past the last variable (" + std::to_string(bits) +
                                         " variables); padding bits must be zero");
      }
    }
  }

  const bool token_loss = is_token_loss(rq.loss);
  const bool wants_pixels = rs.pixels || rs.images || (rq.loss != Loss::None && !token_loss);
  if (!backend_->has_decoder()) {
    check(!wants_pixels, "forward: pixels, images and the IoU/MSE losses need the VQGAN decoder, but this engine "
                         "was created with need_vqgan = false (MAE only: logits, tokens, encoder/decoder outputs, "
                         "token losses)");
  }
  check(rq.loss != Loss::None || (!rs.losses && !rs.metrics),
        "forward: result.losses/metrics requested but request.loss is None (choose IoU, MSE, TokenCE or "
        "TokenAccuracy)");
  if (token_loss) {
    check(rq.target_tokens != nullptr, "forward: the token losses need request.target_tokens ([num_canvases][49] "
                                       "output-quadrant tokens, e.g. from encode_tokens)");
    check(rq.targets == nullptr, "forward: request.targets (pixel targets) is not used by the token losses; pass "
                                 "target_tokens only");
    const int64_t V = config.vocab();
    for (int i = 0; i < rq.num_canvases; ++i) {
      for (int t = 0; t < kQuadrantTokens; ++t) {
        const int32_t v = rq.target_tokens[int64_t(i) * kQuadrantTokens + t];
        check(v >= 0 && v < V, "forward: target_tokens[" + std::to_string(i) + "][" + std::to_string(t) + "] = " +
                                   std::to_string(v) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
      }
    }
  } else {
    check(rq.target_tokens == nullptr, "forward: request.target_tokens is only used by the token losses (TokenCE, "
                                       "TokenAccuracy)");
  }
}

// The task means a validated request patches with: bound once, or this call's tables.
const engine::BackendMeans* EngineImpl::means_of(const ForwardRequest& rq) {
  if (!rq.patch_mask) return nullptr;
  if (rq.task_means) return static_cast<const engine::BackendMeans*>(rq.task_means);
  return &backend_->means_for_call(rq.means_enc, rq.means_dec);
}

// One forward call after validation: which samples share an MAE forward (`forwards`: sample -> forward,
// forward -> its first sample; `members`: forward -> its samples).
struct EngineImpl::Step {
  const ForwardRequest& rq;
  ForwardResult& rs;
  int batch = 0;
  model::Groups forwards;
  std::vector<std::vector<int>> members;
  int canvas_of(int b) const { return rq.canvas_index ? rq.canvas_index[b] : b; }
};

void EngineImpl::forward(const ForwardRequest& rq, ForwardResult& rs) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int batch = rq.canvas_index ? rq.batch : (rq.batch > 0 ? rq.batch : rq.num_canvases);
  validate(rq, rs, batch);

  Step step{rq, rs, batch, {}, {}};
  const int64_t mask_bytes = rq.patch_mask ? patch_bytes(config, rq.mode) : 0;
  // Capture sums every sample's activations, duplicates included, so it runs every sample.
  const bool capture = rq.capture_enc || rq.capture_dec;
  step.forwards = model::group_identical(
      batch,
      [&](int b) {
        return model::KeyView{step.canvas_of(b), rq.patch_mask ? rq.patch_mask + int64_t(b) * mask_bytes : nullptr,
                              static_cast<size_t>(mask_bytes)};
      },
      rq.dedupe && !capture);
  step.members.resize(static_cast<size_t>(step.forwards.count()));
  for (int b = 0; b < batch; ++b) {
    step.members[static_cast<size_t>(step.forwards.group_of[static_cast<size_t>(b)])].push_back(b);
  }

  run_mae_passes(step);
  rs.unique_forwards = step.forwards.count();
  rs.unique_decodes = 0;
  // Token losses score the logits: without pixel outputs nothing is decoded.
  const bool decode = rs.pixels || rs.images || (rq.loss != Loss::None && !is_token_loss(rq.loss));
  if (decode) run_decode_passes(step);
}

void EngineImpl::run_mae_passes(Step& step) {
  const ForwardRequest& rq = step.rq;
  ForwardResult& rs = step.rs;
  const Mode mode = rq.mode;
  const int64_t distinct_forwards = step.forwards.count();
  const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode), P = Nd - 1, V = config.vocab();
  const int64_t E = config.enc_dim, D = config.dec_dim;
  const int64_t mask_bytes = rq.patch_mask ? patch_bytes(config, mode) : 0;
  const bool token_loss = is_token_loss(rq.loss);
  const engine::BackendMeans* means = means_of(rq);
  const std::vector<int>& first = step.forwards.first;

  backend_->begin_mae(distinct_forwards);
  const int64_t capacity = std::max<int64_t>(1, backend_->mae_pass_capacity(mode));
  std::vector<float> logits, enc_out, dec_out, token_losses, token_metrics;
  std::vector<int32_t> tokens;
  std::vector<uint8_t> masks;
  for (int64_t u0 = 0; u0 < distinct_forwards; u0 += capacity) {
    const int64_t n = std::min<int64_t>(capacity, distinct_forwards - u0);
    const int s0 = first[static_cast<size_t>(u0)];
    // When the pass's forwards are samples s0, s0+1, ... each alone in its group (no sample shared a
    // forward), the caller's rows are the pass's rows: masks are read and outputs written in place.
    bool in_place = true;
    for (int64_t i = 0; i < n && in_place; ++i) {
      const std::vector<int>& m = step.members[static_cast<size_t>(u0 + i)];
      in_place = m.size() == 1 && m[0] == s0 + i;
    }

    engine::MaePass pass;
    pass.mode = mode;
    for (int64_t i = 0; i < n; ++i) {
      pass.canvases.push_back(rq.canvases + step.canvas_of(first[static_cast<size_t>(u0 + i)]) * kCanvasFloats);
    }
    if (rq.patch_mask) {
      if (in_place) {
        pass.patch_masks = rq.patch_mask + int64_t(s0) * mask_bytes;
      } else {
        masks.resize(static_cast<size_t>(n * mask_bytes));
        for (int64_t i = 0; i < n; ++i) {
          std::memcpy(masks.data() + i * mask_bytes, rq.patch_mask + int64_t(first[static_cast<size_t>(u0 + i)]) * mask_bytes,
                      static_cast<size_t>(mask_bytes));
        }
        pass.patch_masks = masks.data();
      }
      pass.means = means;
    }
    pass.capture_enc = rq.capture_enc;
    pass.capture_dec = rq.capture_dec;
    if (token_loss) {
      // Members share the canvas (work sharing groups by canvas and mask), hence the target tokens.
      pass.token_loss = rq.loss;
      for (int64_t i = 0; i < n; ++i) {
        const int canvas = step.canvas_of(first[static_cast<size_t>(u0 + i)]);
        pass.target_tokens.push_back(rq.target_tokens + int64_t(canvas) * kQuadrantTokens);
      }
    }

    engine::MaePassOutputs out;
    out.encoder_out = pass_rows(rs.encoder_out, enc_out, in_place, s0, n, Ne * E);
    out.decoder_out = pass_rows(rs.decoder_out, dec_out, in_place, s0, n, Nd * D);
    out.logits = pass_rows(rs.logits, logits, in_place, s0, n, P * V);
    out.tokens = pass_rows(rs.tokens, tokens, in_place, s0, n, int64_t(kPatches));
    if (token_loss) {
      out.token_losses = pass_rows(rs.losses, token_losses, in_place, s0, n, 1);
      out.token_metrics = pass_rows(rs.metrics, token_metrics, in_place, s0, n, 1);
    }
    backend_->mae_pass(pass, u0, out);
    if (in_place) continue;

    for (int64_t i = 0; i < n; ++i) {
      for (int b : step.members[static_cast<size_t>(u0 + i)]) {
        auto copy_row = [&](auto* dst, const auto* src, int64_t per_row) {
          if (dst) std::memcpy(dst + int64_t(b) * per_row, src + i * per_row, sizeof(*dst) * static_cast<size_t>(per_row));
        };
        copy_row(rs.logits, out.logits, P * V);
        copy_row(rs.encoder_out, out.encoder_out, Ne * E);
        copy_row(rs.decoder_out, out.decoder_out, Nd * D);
        copy_row(rs.tokens, out.tokens, int64_t(kPatches));
        if (token_loss) {
          copy_row(rs.losses, out.token_losses, 1);
          copy_row(rs.metrics, out.token_metrics, 1);
        }
      }
    }
  }
}

void EngineImpl::run_decode_passes(Step& step) {
  const ForwardRequest& rq = step.rq;
  ForwardResult& rs = step.rs;
  ThreadPool& pool = *pool_;
  const int batch = step.batch;

  // Targets per canvas: the caller's, or the canvas's own bottom-right cell.
  const bool pixel_loss = rq.loss != Loss::None && !is_token_loss(rq.loss);
  std::vector<uint8_t> own_targets;
  if (pixel_loss && !rq.targets) {
    own_targets.resize(static_cast<size_t>(rq.num_canvases * model::kCellBytes));
    pool.parallel_for(rq.num_canvases, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        model::canvas_target(rq.canvases + i * kCanvasFloats, own_targets.data() + i * model::kCellBytes);
      }
    });
  }
  const uint8_t* targets = rq.targets ? rq.targets : own_targets.data();

  std::vector<int32_t> grid_of_forward(static_cast<size_t>(step.forwards.count()));
  const int64_t distinct_grids = backend_->begin_decode(rq.dedupe, pixel_loss ? targets : nullptr,
                                                        pixel_loss ? rq.num_canvases : 0, grid_of_forward.data());
  std::vector<std::vector<int>> samples_of_grid(static_cast<size_t>(distinct_grids));
  for (int b = 0; b < batch; ++b) {
    const int u = step.forwards.group_of[static_cast<size_t>(b)];
    samples_of_grid[static_cast<size_t>(grid_of_forward[static_cast<size_t>(u)])].push_back(b);
  }

  const bool want_pixels = rs.pixels || rs.images;
  const int64_t capacity = std::max<int64_t>(1, backend_->decode_pass_capacity());
  std::vector<float> pixels, job_losses, job_metrics;
  std::vector<int> job_of_sample(static_cast<size_t>(batch), -1);
  std::vector<std::pair<int, int64_t>> fan_out;  // (sample, grid within the pass)
  for (int64_t g0 = 0; g0 < distinct_grids; g0 += capacity) {
    const int64_t n = std::min<int64_t>(capacity, distinct_grids - g0);
    engine::DecodePass pass;
    pass.first_grid = g0;
    pass.grids = n;
    fan_out.clear();
    if (pixel_loss) pass.loss = rq.loss;
    for (int64_t i = 0; i < n; ++i) {
      // One score job per distinct (grid, target canvas): samples that share both share the score.
      std::vector<std::pair<int, int>> job_of_canvas;
      for (int b : samples_of_grid[static_cast<size_t>(g0 + i)]) {
        fan_out.emplace_back(b, i);
        if (!pixel_loss) continue;
        const int canvas = step.canvas_of(b);
        auto it = std::find_if(job_of_canvas.begin(), job_of_canvas.end(), [&](const auto& p) { return p.first == canvas; });
        if (it == job_of_canvas.end()) {
          job_of_canvas.emplace_back(canvas, static_cast<int>(pass.job_grid.size()));
          pass.job_grid.push_back(static_cast<int32_t>(i));
          pass.job_target.push_back(canvas);
          it = job_of_canvas.end() - 1;
        }
        job_of_sample[static_cast<size_t>(b)] = it->second;
      }
    }
    engine::DecodePassOutputs out;
    if (want_pixels) {
      pixels.resize(static_cast<size_t>(n * kCanvasFloats));
      out.pixels = pixels.data();
    }
    if (pixel_loss) {
      job_losses.resize(pass.job_grid.size());
      job_metrics.resize(pass.job_grid.size());
      out.job_losses = job_losses.data();
      out.job_metrics = job_metrics.data();
    }
    backend_->decode_pass(pass, out);

    pool.parallel_for(static_cast<int64_t>(fan_out.size()), [&](int64_t begin, int64_t end) {
      for (int64_t f = begin; f < end; ++f) {
        const int b = fan_out[static_cast<size_t>(f)].first;
        if (pixel_loss) {
          const size_t job = static_cast<size_t>(job_of_sample[static_cast<size_t>(b)]);
          if (rs.losses) rs.losses[b] = job_losses[job];
          if (rs.metrics) rs.metrics[b] = job_metrics[job];
        }
        if (!want_pixels) continue;
        const float* px = pixels.data() + fan_out[static_cast<size_t>(f)].second * kCanvasFloats;
        if (rs.pixels) std::memcpy(rs.pixels + int64_t(b) * kCanvasFloats, px, sizeof(float) * kCanvasFloats);
        if (rs.images) {
          uint8_t* img = rs.images + int64_t(b) * kCanvasFloats;
          for (int64_t k = 0; k < kCanvasFloats; ++k) img[k] = model::pixel_to_byte(px[k]);
        }
      }
    });
  }
  rs.unique_decodes = static_cast<int>(distinct_grids);
}

void EngineImpl::encode_tokens(const float* canvases, int n, int32_t* tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  check(backend_->has_encoder(), "encode_tokens: this engine was created without the VQGAN encoder; construct it with "
                                 "need_vqgan_encoder = true (and weights holding encoder.* and quant_conv.*)");
  check(canvases != nullptr, "encode_tokens: canvases is null");
  check(tokens != nullptr, "encode_tokens: tokens is null");
  check(n > 0, "encode_tokens: the number of canvases must be > 0, got " + std::to_string(n));
  check_canvases("encode_tokens", canvases, n);
  const int64_t capacity = std::max<int64_t>(1, backend_->encode_pass_capacity());
  for (int64_t i0 = 0; i0 < n; i0 += capacity) {
    const int64_t m = std::min<int64_t>(capacity, n - i0);
    backend_->encode_pass(canvases + i0 * kCanvasFloats, m, tokens + i0 * kPatches);
  }
}

Engine::Engine(const ModelConfig& config, std::shared_ptr<Weights> weights, const EngineOptions& options)
    : impl_(std::make_unique<EngineImpl>(config, std::move(weights), options)) {}
Engine::~Engine() = default;

void Engine::forward(const ForwardRequest& request, ForwardResult& result) { impl_->forward(request, result); }
std::shared_ptr<const BoundTaskMeans> Engine::bind_task_means(const float* means_enc, const float* means_dec) {
  return impl_->bind_task_means(means_enc, means_dec);
}
void Engine::encode_tokens(const float* canvases, int n, int32_t* tokens) { impl_->encode_tokens(canvases, n, tokens); }
const ModelConfig& Engine::config() const { return impl_->config; }
BackendKind Engine::backend() const { return impl_->backend_kind; }
Precision Engine::precision() const { return impl_->options.precision; }
std::string Engine::backend_reason() const { return impl_->reason; }
int Engine::threads() const { return impl_->pool_->size(); }

}  // namespace vtv
