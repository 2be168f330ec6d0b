// vtv::Engine on the CPU: validation, work sharing, chunking, and the MAE -> tokens -> VQGAN -> losses
// pipeline. The CUDA backend plugs in here once its forward exists; until then "auto" runs the CPU.
#include "vtv/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <atomic>
#include <mutex>
#include <thread>
#include <sstream>

#include "core/thread_pool.h"
#include "cpu/elementwise.h"
#include "cpu/gemm.h"
#include "cuda/probe.h"
#ifdef VTV_WITH_CUDA
#include "cuda/device_buffer.h"
#include "cuda/mae_cuda.h"
#include "cuda/vqgan_cuda.h"
#include "cuda/vqgan_encoder_cuda.h"
#endif
#include "model/activation_budget.h"
#include "model/losses.h"
#include "model/mae.h"
#include "model/token_losses.h"
#include "model/vqgan_decoder.h"
#include "model/vqgan_encoder.h"
#include "model/weights_view.h"
#include "model/work_sharing.h"
#include "vtv/error.h"

namespace vtv {

namespace {

// "auto" picks the GPU only once the CUDA path has passed its parity tests on a GPU
// (benchmarks/device/check.sh). Until then the CUDA transformer path runs only when asked for by name.
constexpr bool kCudaForwardVerified = false;
constexpr const char* kCudaNotVerified =
    "the CUDA transformer path has not been verified on a GPU yet, so 'auto' uses the cpu (ask for backend "
    "'cuda' to run it)";

// Samples per MAE chunk never exceed this even under a large budget: beyond it the GEMMs are already
// long enough and a smaller working set stays in cache.
constexpr int64_t kMaxMaeChunk = 64;
constexpr int64_t kMaxDecodeChunk = 16;
constexpr int64_t kMaxEncodeChunk = 16;

}  // namespace

int64_t patch_bits(const ModelConfig& c, Mode m) {
  return int64_t(c.enc_depth) * c.enc_heads * enc_tokens(m) + int64_t(c.dec_depth) * c.dec_heads * dec_tokens(m);
}

std::vector<BackendInfo> backends() {
  std::vector<BackendInfo> out;
  BackendInfo cpu;
  cpu.name = "cpu";
  cpu.compiled = true;
  cpu.usable = true;
  cpu.detail = std::string("fp32, gemm ") + cpu::gemm_implementation() + ", " +
               std::to_string(std::max(1u, std::thread::hardware_concurrency())) + " hardware threads";
  out.push_back(cpu);
  const cuda::Probe p = cuda::probe();
  BackendInfo gpu;
  gpu.name = "cuda";
  gpu.compiled = p.compiled;
  gpu.usable = p.usable;
  gpu.detail = p.detail;
  if (p.usable && !kCudaForwardVerified) gpu.detail += "; " + std::string(kCudaNotVerified);
  out.push_back(gpu);
  return out;
}

class EngineImpl {
 public:
  EngineImpl(const ModelConfig& config, std::shared_ptr<Weights> weights, const EngineOptions& options);
  void forward(const ForwardRequest& request, ForwardResult& result);
  void encode_tokens(const float* canvases, int n, int32_t* tokens);

  ModelConfig config;
  EngineOptions options;
  std::string backend, reason;

 private:
  void validate(const ForwardRequest& rq, const ForwardResult& rs, int batch) const;
  void check_canvases(const char* where, const float* canvases, int n) const;

  std::shared_ptr<Weights> weights_;
  std::unique_ptr<ThreadPool> pool_;
  model::MaeW mae_w_;
  model::VqganDecoderW vq_w_;
  model::VqganEncoderW vq_enc_w_;
  std::unique_ptr<model::MaeForward> mae_;
  std::unique_ptr<model::VqganDecoder> vq_;
  std::unique_ptr<model::VqganEncoder> vq_enc_;
#ifdef VTV_WITH_CUDA
  std::unique_ptr<cuda::MaeCuda> mae_cuda_;  // the transformer path on the GPU (backend "cuda")
  std::unique_ptr<cuda::VqganCuda> vq_cuda_;  // the VQGAN decode and pixel losses on the GPU (backend "cuda")
  std::unique_ptr<cuda::VqganEncoderCuda> vq_enc_cuda_;  // encode_tokens on the GPU (backend "cuda")
  cuda::DeviceBuffer<int32_t> device_tokens_;  // a step's token grids, from MaeCuda to VqganCuda on the device
#endif
  std::mutex mutex_;  // forward() reuses scratch buffers
  friend class Engine;
};

EngineImpl::EngineImpl(const ModelConfig& cfg, std::shared_ptr<Weights> weights, const EngineOptions& opts)
    : config(cfg), options(opts), weights_(std::move(weights)) {
  config.validate();
  check(weights_ != nullptr, "engine: weights are null");
  check(options.backend == "auto" || options.backend == "cpu" || options.backend == "cuda",
        "engine: unknown backend '" + options.backend + "' (expected auto, cpu or cuda)");
  check(options.precision == "fp32" || options.precision == "bf16",
        "engine: unknown precision '" + options.precision + "' (expected fp32 or bf16)");
  // More threads than a few per core only cost memory and scheduling; a typo such as 100000 would
  // exhaust the system's threads for every process.
  const int kMaxThreads = 4 * std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  check(options.threads >= 0 && options.threads <= kMaxThreads,
        "engine: threads must be 0 (every core) to " + std::to_string(kMaxThreads) + ", got " + std::to_string(options.threads));

  const cuda::Probe probe = cuda::probe();
  backend = "cpu";
  if (options.backend == "cuda") {
    if (!probe.compiled || !probe.usable) throw Error("engine: backend 'cuda' requested but cuda is not usable: " + probe.detail);
    backend = "cuda";
    reason = "cuda requested (" + probe.detail + "): MAE, VQGAN decoder and encoder, and pixel losses on the GPU";
  } else if (options.backend == "cpu") {
    reason = "cpu requested";
  } else if (probe.compiled && probe.usable && kCudaForwardVerified) {
    backend = "cuda";
    reason = "cuda usable (" + probe.detail + ")";
  } else if (probe.compiled && probe.usable) {
    reason = "cuda compiled in and usable (" + probe.detail + ") but " + kCudaNotVerified;
  } else if (probe.compiled) {
    reason = "cuda compiled in but not usable: " + probe.detail + "; using cpu";
  } else {
    reason = "cuda " + probe.detail + "; using cpu";
  }
  if (options.precision == "bf16" && backend != "cuda") {
    throw Error("engine: precision 'bf16' needs the CUDA backend; the cpu backend runs fp32 (" + reason + ")");
  }

  pool_ = std::make_unique<ThreadPool>(options.threads);
  mae_w_ = model::bind_mae(*weights_, config);
  mae_ = std::make_unique<model::MaeForward>(config, mae_w_);
#ifdef VTV_WITH_CUDA
  if (backend == "cuda") mae_cuda_ = std::make_unique<cuda::MaeCuda>(config, mae_w_, cuda::parse_precision(options.precision));
#endif
  if (options.need_vqgan) {
    vq_w_ = model::bind_vqgan_decoder(*weights_, config);
    vq_ = std::make_unique<model::VqganDecoder>(config, vq_w_);
#ifdef VTV_WITH_CUDA
    if (backend == "cuda") vq_cuda_ = std::make_unique<cuda::VqganCuda>(config, vq_w_, cuda::parse_precision(options.precision));
#endif
  }
  if (options.need_vqgan_encoder) {
    vq_enc_w_ = model::bind_vqgan_encoder(*weights_, config);
    vq_enc_ = std::make_unique<model::VqganEncoder>(config, vq_enc_w_);
#ifdef VTV_WITH_CUDA
    if (backend == "cuda") {
      vq_enc_cuda_ = std::make_unique<cuda::VqganEncoderCuda>(config, vq_enc_w_, cuda::parse_precision(options.precision));
    }
#endif
  }
}

namespace {

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

}  // namespace

void EngineImpl::check_canvases(const char* where, const float* canvases, int n) const {
  const int64_t canvas_floats = int64_t(3) * kImage * kImage;
  for (int i = 0; i < n; ++i) {
    const float* c = canvases + i * canvas_floats;
    const int64_t at = find_nonfinite(*pool_, c, canvas_floats);
    if (at >= 0) {
      const int64_t ch = at / (kImage * kImage), y = (at / kImage) % kImage, x = at % kImage;
      throw Error(std::string(where) + ": canvas " + std::to_string(i) + " has a non-finite value (" +
                  nonfinite_name(c[at]) + ") at channel " + std::to_string(ch) + ", y " + std::to_string(y) + ", x " +
                  std::to_string(x));
    }
  }
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

  const bool any_patch = rq.means_enc || rq.means_dec || rq.patch_mask;
  if (any_patch) {
    check(rq.means_enc && rq.means_dec && rq.patch_mask,
          std::string("forward: patching needs means_enc, means_dec and patch_mask together; missing:") +
              (rq.means_enc ? "" : " means_enc") + (rq.means_dec ? "" : " means_dec") + (rq.patch_mask ? "" : " patch_mask"));
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
    const int64_t at_e = find_nonfinite(*pool_, rq.means_enc, means_enc_floats(config));
    check(at_e < 0, "forward: means_enc has a non-finite value at float index " + std::to_string(at_e));
    const int64_t at_d = find_nonfinite(*pool_, rq.means_dec, means_dec_floats(config));
    check(at_d < 0, "forward: means_dec has a non-finite value at float index " + std::to_string(at_d));
  }

  const bool token_loss = is_token_loss(rq.loss);
  const bool wants_pixels = rs.pixels || rs.images || (rq.loss != Loss::None && !token_loss);
  if (!vq_) {
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

void EngineImpl::forward(const ForwardRequest& rq, ForwardResult& rs) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int batch = rq.canvas_index ? rq.batch : (rq.batch > 0 ? rq.batch : rq.num_canvases);
  validate(rq, rs, batch);
  ThreadPool& pool = *pool_;

  const Mode mode = rq.mode;
  const int64_t canvas_floats = int64_t(3) * kImage * kImage;
  const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode), P = Nd - 1, V = config.vocab();
  const int64_t E = config.enc_dim, D = config.dec_dim;
  const bool patching = rq.patch_mask != nullptr;
  const int64_t mask_bytes = patching ? patch_bytes(config, mode) : 0;
  const bool capture = rq.capture_enc || rq.capture_dec;
  const bool token_loss = is_token_loss(rq.loss);
  // Token losses score the logits: without pixel outputs nothing is decoded.
  const bool decode = rs.pixels || rs.images || (rq.loss != Loss::None && !token_loss);
  auto canvas_of = [&](int b) { return rq.canvas_index ? rq.canvas_index[b] : b; };

  // ---- which samples need their own MAE forward ---------------------------------------------------
  // Capture sums every sample's activations, duplicates included, so it runs every sample.
  const model::Groups fw = model::group_identical(
      batch,
      [&](int b) {
        return model::KeyView{canvas_of(b), patching ? rq.patch_mask + int64_t(b) * mask_bytes : nullptr,
                              static_cast<size_t>(mask_bytes)};
      },
      rq.dedupe && !capture);
  const int U = fw.count();
  std::vector<std::vector<int>> members(static_cast<size_t>(U));
  for (int b = 0; b < batch; ++b) members[static_cast<size_t>(fw.group_of[static_cast<size_t>(b)])].push_back(b);

  // ---- MAE in chunks --------------------------------------------------------------------------------
  std::vector<int32_t> tokens(static_cast<size_t>(U) * kPatches);
  // The CPU chunk bounds the CPU's activation scratch; on the GPU only the host logits buffer grows with
  // the chunk (MaeCuda splits its own device passes), so the whole step goes in one call.
  bool gpu_mae = false, gpu_decode = false;
#ifdef VTV_WITH_CUDA
  gpu_mae = mae_cuda_ != nullptr;
  gpu_decode = gpu_mae && vq_cuda_ != nullptr && decode;
  if (gpu_mae) device_tokens_.resize(static_cast<size_t>(std::max(1, U)) * kPatches);
#endif
  // The host needs the token grids for its own decode, the caller's tokens, or the token losses; a GPU
  // decode takes them from the device.
  const bool host_tokens = rs.tokens || token_loss || !gpu_decode;
  const int64_t chunk = gpu_mae ? std::max(1, U) : model::chunk_samples(mae_->bytes_per_sample(mode), kMaxMaeChunk);
  std::vector<float> logits, enc_out, dec_out;
  std::vector<uint8_t> masks;
  std::vector<int32_t> argmax;
  for (int64_t u0 = 0; u0 < U; u0 += chunk) {
    const int64_t n = std::min<int64_t>(chunk, U - u0);
    model::MaeChunk mc;
    mc.mode = mode;
    for (int64_t i = 0; i < n; ++i) {
      const int b = fw.first[static_cast<size_t>(u0 + i)];
      mc.canvases.push_back(rq.canvases + canvas_of(b) * canvas_floats);
    }
    if (patching) {
      masks.resize(static_cast<size_t>(n * mask_bytes));
      for (int64_t i = 0; i < n; ++i) {
        const int b = fw.first[static_cast<size_t>(u0 + i)];
        std::memcpy(masks.data() + i * mask_bytes, rq.patch_mask + int64_t(b) * mask_bytes, static_cast<size_t>(mask_bytes));
      }
      mc.patch_masks = masks.data();
      mc.means_enc = rq.means_enc;
      mc.means_dec = rq.means_dec;
    }
    mc.capture_enc = rq.capture_enc;
    mc.capture_dec = rq.capture_dec;
    model::MaeOutputs mo;
    // The CPU path needs the logits for its argmax; the GPU fuses the argmax into the head.
    if (!gpu_mae || rs.logits || token_loss) {
      logits.resize(static_cast<size_t>(n * P * V));
      mo.logits = logits.data();
    }
    if (rs.encoder_out) {
      enc_out.resize(static_cast<size_t>(n * Ne * E));
      mo.encoder_out = enc_out.data();
    }
    if (rs.decoder_out) {
      dec_out.resize(static_cast<size_t>(n * Nd * D));
      mo.decoder_out = dec_out.data();
    }
    bool on_gpu = false;
#ifdef VTV_WITH_CUDA
    if (mae_cuda_) {
      // The GPU writes the token grids itself (argmax fused into the head, duplication included).
      // Logits leave the GPU only when someone reads them (the caller, or the token losses).
      mae_cuda_->run(mc, {mo.encoder_out, mo.decoder_out, mo.logits, host_tokens ? tokens.data() + u0 * kPatches : nullptr,
                          device_tokens_.get() + u0 * kPatches});
      on_gpu = true;
    }
#endif
    if (!on_gpu) {
      mae_->run(pool, mc, mo);
      argmax.resize(static_cast<size_t>(n * P));
      cpu::argmax_rows(pool, logits.data(), n * P, V, argmax.data());
      for (int64_t i = 0; i < n; ++i) {
        int32_t* grid = tokens.data() + (u0 + i) * kPatches;
        const int32_t* y = argmax.data() + i * P;
        if (mode == Mode::OneShot) {
          std::copy(y, y + kPatches, grid);
        } else {
          // hstack([y, y]): the 98 predictions (rows 7-13) fill rows 0-6 as well.
          std::copy(y, y + P, grid);
          std::copy(y, y + P, grid + P);
        }
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const int32_t* grid = tokens.data() + (u0 + i) * kPatches;
      const int32_t* y = grid;  // the P predictions: the whole grid (one-shot) or its first 98 (zero-shot)
      for (int b : members[static_cast<size_t>(u0 + i)]) {
        if (rs.logits) std::memcpy(rs.logits + int64_t(b) * P * V, logits.data() + i * P * V, sizeof(float) * P * V);
        if (rs.encoder_out) {
          std::memcpy(rs.encoder_out + int64_t(b) * Ne * E, enc_out.data() + i * Ne * E, sizeof(float) * Ne * E);
        }
        if (rs.decoder_out) {
          std::memcpy(rs.decoder_out + int64_t(b) * Nd * D, dec_out.data() + i * Nd * D, sizeof(float) * Nd * D);
        }
        if (rs.tokens) std::memcpy(rs.tokens + int64_t(b) * kPatches, grid, sizeof(int32_t) * kPatches);
      }
      if (token_loss) {
        // Members share the canvas (work sharing groups by canvas and mask), hence the target tokens.
        const int canvas = canvas_of(fw.first[static_cast<size_t>(u0 + i)]);
        const model::Score s = model::score_tokens(rq.loss, mode, logits.data() + i * P * V, y, V,
                                                   rq.target_tokens + int64_t(canvas) * kQuadrantTokens);
        for (int b : members[static_cast<size_t>(u0 + i)]) {
          if (rs.losses) rs.losses[b] = s.loss;
          if (rs.metrics) rs.metrics[b] = s.metric;
        }
      }
    }
  }
  rs.unique_forwards = U;
  rs.unique_decodes = 0;
  if (!decode) return;

  // ---- VQGAN decode of the distinct token grids --------------------------------------------------
  // Targets per canvas: the caller's, or the canvas's own bottom-right cell.
  const bool pixel_loss = rq.loss != Loss::None && !token_loss;
  std::vector<uint8_t> own_targets;
  if (pixel_loss && !rq.targets) {
    own_targets.resize(static_cast<size_t>(rq.num_canvases * model::kCellBytes));
    pool.parallel_for(rq.num_canvases, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        model::canvas_target(rq.canvases + i * canvas_floats, own_targets.data() + i * model::kCellBytes);
      }
    });
  }
  const uint8_t* targets = rq.targets ? rq.targets : own_targets.data();

  std::vector<float> pixels;
#ifdef VTV_WITH_CUDA
  if (gpu_decode) {
    // The MAE left the U grids on the device: VqganCuda finds the distinct ones there, decodes each once
    // and scores one job per sample (its MAE forward's grid, its canvas's target), so only the losses
    // come back (and the pixels, when asked for).
    const bool want_pixels = rs.pixels || rs.images;
    std::vector<int32_t> job_source, job_target, grid_of_u(want_pixels ? static_cast<size_t>(U) : 0);
    std::vector<float> job_loss, job_metric;
    cuda::VqganScoreJobs sj;
    if (pixel_loss) {
      for (int b = 0; b < batch; ++b) {
        job_source.push_back(fw.group_of[static_cast<size_t>(b)]);
        job_target.push_back(canvas_of(b));
      }
      job_loss.resize(job_source.size());
      job_metric.resize(job_source.size());
      sj.loss = rq.loss;
      sj.count = batch;
      sj.grid = job_source.data();
      sj.target = job_target.data();
      sj.targets = targets;
      sj.num_targets = rq.num_canvases;
    }
    if (want_pixels) pixels.resize(static_cast<size_t>(U * canvas_floats));
    const int64_t G = vq_cuda_->run_shared(device_tokens_.get(), U, rq.dedupe, sj,
                                           {want_pixels ? pixels.data() : nullptr, pixel_loss ? job_loss.data() : nullptr,
                                            pixel_loss ? job_metric.data() : nullptr},
                                           want_pixels ? grid_of_u.data() : nullptr);
    for (int b = 0; pixel_loss && b < batch; ++b) {
      if (rs.losses) rs.losses[b] = job_loss[static_cast<size_t>(b)];
      if (rs.metrics) rs.metrics[b] = job_metric[static_cast<size_t>(b)];
    }
    if (want_pixels) {
      pool.parallel_for(batch, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          const int32_t g = grid_of_u[static_cast<size_t>(fw.group_of[static_cast<size_t>(b)])];
          const float* px = pixels.data() + int64_t(g) * canvas_floats;
          if (rs.pixels) std::memcpy(rs.pixels + b * canvas_floats, px, sizeof(float) * canvas_floats);
          if (rs.images) {
            uint8_t* img = rs.images + b * canvas_floats;
            for (int64_t k = 0; k < canvas_floats; ++k) img[k] = model::pixel_to_byte(px[k]);
          }
        }
      });
    }
    rs.unique_decodes = static_cast<int>(G);
    return;
  }
#endif
  const model::Groups dg = model::group_identical(
      U,
      [&](int u) {
        return model::KeyView{0, tokens.data() + int64_t(u) * kPatches, sizeof(int32_t) * kPatches};
      },
      rq.dedupe);
  const int G = dg.count();
  std::vector<std::vector<int>> grid_samples(static_cast<size_t>(G));  // grid -> batch samples
  for (int b = 0; b < batch; ++b) {
    const int u = fw.group_of[static_cast<size_t>(b)];
    grid_samples[static_cast<size_t>(dg.group_of[static_cast<size_t>(u)])].push_back(b);
  }

  const int64_t dchunk = model::chunk_samples(vq_->bytes_per_sample() + canvas_floats * 4, kMaxDecodeChunk);
  std::vector<const int32_t*> grids;
  for (int64_t g0 = 0; g0 < G; g0 += dchunk) {
    const int64_t n = std::min<int64_t>(dchunk, G - g0);
    grids.clear();
    for (int64_t i = 0; i < n; ++i) grids.push_back(tokens.data() + int64_t(dg.first[static_cast<size_t>(g0 + i)]) * kPatches);
    pixels.resize(static_cast<size_t>(n * canvas_floats));
    vq_->run(pool, grids, pixels.data());
    // Fan the decoded images out to their samples.
    std::vector<std::pair<int, int64_t>> jobs;  // (sample, index in chunk)
    for (int64_t i = 0; i < n; ++i) {
      for (int b : grid_samples[static_cast<size_t>(g0 + i)]) jobs.emplace_back(b, i);
    }
    pool.parallel_for(static_cast<int64_t>(jobs.size()), [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int b = jobs[static_cast<size_t>(j)].first;
        const float* px = pixels.data() + jobs[static_cast<size_t>(j)].second * canvas_floats;
        if (rs.pixels) std::memcpy(rs.pixels + int64_t(b) * canvas_floats, px, sizeof(float) * canvas_floats);
        if (rs.images) {
          uint8_t* img = rs.images + int64_t(b) * canvas_floats;
          for (int64_t k = 0; k < canvas_floats; ++k) img[k] = model::pixel_to_byte(px[k]);
        }
        if (pixel_loss) {
          const model::Score s = model::score_cell(rq.loss, px, targets + int64_t(canvas_of(b)) * model::kCellBytes);
          if (rs.losses) rs.losses[b] = s.loss;
          if (rs.metrics) rs.metrics[b] = s.metric;
        }
      }
    });
  }
  rs.unique_decodes = G;
}

void EngineImpl::encode_tokens(const float* canvases, int n, int32_t* tokens) {
  std::lock_guard<std::mutex> lock(mutex_);
  check(vq_enc_ != nullptr, "encode_tokens: this engine was created without the VQGAN encoder; construct it with "
                            "need_vqgan_encoder = true (and weights holding encoder.* and quant_conv.*)");
  check(canvases != nullptr, "encode_tokens: canvases is null");
  check(tokens != nullptr, "encode_tokens: tokens is null");
  check(n > 0, "encode_tokens: the number of canvases must be > 0, got " + std::to_string(n));
  check_canvases("encode_tokens", canvases, n);
#ifdef VTV_WITH_CUDA
  if (vq_enc_cuda_) {  // backend "cuda": passes of the encoder's own chunk size on the device
    vq_enc_cuda_->encode(canvases, n, tokens);
    return;
  }
#endif
  const int64_t canvas_floats = int64_t(3) * kImage * kImage;
  const int64_t chunk = model::chunk_samples(vq_enc_->bytes_per_sample(), kMaxEncodeChunk);
  std::vector<const float*> ptrs;
  for (int64_t i0 = 0; i0 < n; i0 += chunk) {
    const int64_t m = std::min<int64_t>(chunk, n - i0);
    ptrs.clear();
    for (int64_t i = 0; i < m; ++i) ptrs.push_back(canvases + (i0 + i) * canvas_floats);
    vq_enc_->run(*pool_, ptrs, tokens + i0 * kPatches);
  }
}

Engine::Engine(const ModelConfig& config, std::shared_ptr<Weights> weights, const EngineOptions& options)
    : impl_(std::make_unique<EngineImpl>(config, std::move(weights), options)) {}
Engine::~Engine() = default;

void Engine::forward(const ForwardRequest& request, ForwardResult& result) { impl_->forward(request, result); }
void Engine::encode_tokens(const float* canvases, int n, int32_t* tokens) { impl_->encode_tokens(canvases, n, tokens); }
const ModelConfig& Engine::config() const { return impl_->config; }
std::string Engine::backend() const { return impl_->backend; }
std::string Engine::backend_reason() const { return impl_->reason; }
int Engine::threads() const { return impl_->pool_->size(); }

}  // namespace vtv
