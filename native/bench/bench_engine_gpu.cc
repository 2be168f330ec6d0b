// The engine's zero-shot patched forward with decode and loss on the GPU, as the search runs it:
// ViT-L MAE + VQGAN decoder with random weights, batch 320 over 10 distinct canvases, random per-sample
// patch masks (~27% of the bits, REINFORCE's initial sigmoid(-1)), MSE on the output quadrant.
//   1. Engine::forward, backend cuda, bf16 and fp32: median wall time of a call after warm-up
//      (forward() is synchronous and includes its host work and copies) -> forwards/s and TFLOP/s at
//      114.7 GMAC per forward (docs/method.md#compute; 1 MAC = 2 FLOP).
//   2. Where the engine's time goes: cuda::MaeCuda and cuda::VqganCuda called directly, as the engine's
//      cuda backend calls them (MAE passes leaving the tokens on the device; the distinct grids found
//      there and decoded in passes of 32, here through run_shared) and the alternatives (logits copied
//      back; every grid in one pass); the rest of forward() is host work.
//   3. A search-like loop (what `vtv search` does per step, without Node, which the GPU machine lacks):
//      Bernoulli masks over the 1152 granularity-1 variables, one forward of 320 samples, z-scored
//      advantages and a REINFORCE/Adam update; --search-steps steps timed and extrapolated to the
//      reference's 500 (stated as such unless --search-steps 500). Validation is not included.
// The weights are written once to --weights (default /tmp/vtv_<config>_random.safetensors, 1.5 GB for ViT-L) with
// native/tests/test_weights.h's random model writer and reused when the file exists.
// The last line is "VTV_JSON {...}" for tools/device/perf.sh. Exit status 2 when the CUDA backend is
// not compiled in or no GPU is usable (the reason is printed), 1 when a measurement failed.
//   usage: bench_engine_gpu [--batch 320] [--reps 5] [--precisions bf16,fp32] [--search-steps 20]
//                           [--weights PATH] [--config PRESET] [--no-components]
// --config tiny makes a smoke run of every code path (on the CPU CUDA emulator too: VTV_CUDA=EMULATE).
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../tests/test_weights.h"
#include "cuda/probe.h"
#include "vtv/config.h"
#include "vtv/engine.h"
#include "vtv/error.h"
#include "vtv/weights.h"
#ifdef VTV_WITH_CUDA
#include "cuda/device_buffer.h"
#include "cuda/mae_cuda.h"
#include "cuda/vqgan_cuda.h"
#include "model/losses.h"
#include "model/mae.h"
#include "model/weights_view.h"
#endif

namespace {

constexpr double kGmacPerForward = 114.7;  // zero-shot MAE + VQGAN decoder, docs/method.md#compute
constexpr int kCanvases = 10;              // the search's training images per step

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median seconds of fn over `reps` calls after `warmup` calls (the first captures CUDA graphs and grows
// the device buffers).
double time_median(const std::function<void()>& fn, int reps, int warmup = 2) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double t0 = seconds_now();
    fn();
    t.push_back(seconds_now() - t0);
  }
  return median(t);
}

double tflops(double fps) { return fps * kGmacPerForward * 2e9 / 1e12; }

struct Options {
  int batch = 320;
  int reps = 5;
  std::vector<std::string> precisions{"bf16", "fp32"};
  int search_steps = 20;
  std::string config = "mae-vqgan-vit-large";  // another preset (tiny) for a smoke run, e.g. on the emulator
  std::string weights;                          // default /tmp/vtv_<config>_random.safetensors
  bool components = true;
};

// The search's inputs: canvases, means, one mask per sample.
struct Inputs {
  vtv::ModelConfig c;
  int batch;
  int64_t mask_bytes;
  std::vector<float> canvases, means_enc, means_dec;
  std::vector<int32_t> canvas_index;
  std::vector<uint8_t> masks;

  Inputs(const vtv::ModelConfig& config, int b) : c(config), batch(b) {
    mask_bytes = vtv::patch_bytes(c, vtv::Mode::ZeroShot);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    canvases.resize(size_t(kCanvases) * 3 * vtv::kImage * vtv::kImage);
    for (auto& v : canvases) v = normal(rng);
    means_enc.resize(size_t(vtv::means_enc_floats(c)));
    means_dec.resize(size_t(vtv::means_dec_floats(c)));
    for (auto& v : means_enc) v = 0.5f * normal(rng);
    for (auto& v : means_dec) v = 0.5f * normal(rng);
    canvas_index.resize(size_t(batch));
    for (int i = 0; i < batch; ++i) canvas_index[size_t(i)] = i % kCanvases;
    masks.assign(size_t(batch * mask_bytes), 0);
    const int64_t bits = vtv::patch_bits(c, vtv::Mode::ZeroShot);
    std::bernoulli_distribution on(0.269);  // sigmoid(-1)
    for (int i = 0; i < batch; ++i) {
      for (int64_t k = 0; k < bits; ++k) {
        if (on(rng)) masks[size_t(i * mask_bytes + (k >> 3))] |= uint8_t(1u << (k & 7));
      }
    }
  }

  // A search step's request, with the task means bound once (as the search binds them).
  vtv::ForwardRequest request(const vtv::BoundTaskMeans* means) const {
    vtv::ForwardRequest rq;
    rq.mode = vtv::Mode::ZeroShot;
    rq.canvases = canvases.data();
    rq.num_canvases = kCanvases;
    rq.canvas_index = canvas_index.data();
    rq.batch = batch;
    rq.task_means = means;
    rq.patch_mask = masks.data();
    rq.loss = vtv::Loss::MSE;
    return rq;
  }
};

bool file_exists(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && st.st_size > 0;
}

// The granularity-1 variables of src/method/variables.ts in zero-shot positions: per (layer, head) a CLS
// variable and a query variable (encoder), or CLS, query-quadrant and output-quadrant variables (decoder).
std::vector<std::vector<int64_t>> search_variables(const vtv::ModelConfig& c) {
  std::vector<std::vector<int64_t>> vars;
  const int64_t Ne = vtv::kZeroShotEncTokens, Nd = vtv::kZeroShotDecTokens;
  const int64_t enc_bits = int64_t(c.enc_depth) * c.enc_heads * Ne;
  for (int l = 0; l < c.enc_depth; ++l) {
    for (int h = 0; h < c.enc_heads; ++h) {
      const int64_t base = (int64_t(l) * c.enc_heads + h) * Ne;
      vars.push_back({base});
      std::vector<int64_t> q;
      for (int64_t p = 1; p < Ne; ++p) q.push_back(base + p);
      vars.push_back(q);
    }
  }
  for (int l = 0; l < c.dec_depth; ++l) {
    for (int h = 0; h < c.dec_heads; ++h) {
      const int64_t base = enc_bits + (int64_t(l) * c.dec_heads + h) * Nd;
      vars.push_back({base});
      std::vector<int64_t> q, o;
      for (int i = 0; i < 49; ++i) {
        q.push_back(base + 1 + (i / 7) * 14 + (i % 7));
        o.push_back(base + 1 + (i / 7) * 14 + 7 + (i % 7));
      }
      vars.push_back(q);
      vars.push_back(o);
    }
  }
  return vars;
}

struct SearchResult {
  int steps = 0;
  double mean_step_s = 0, median_step_s = 0, extrapolated_500_s = 0, fps = 0;
};

// REINFORCE steps as src/method/reinforce.ts runs them (pixel objective, MSE): sample, forward, z-scored
// advantages, surrogate gradient, Adam (lr 0.1) on float64 logits initialised at -1.
SearchResult search_loop(vtv::Engine& engine, Inputs& in, int steps) {
  const auto vars = search_variables(in.c);
  const size_t V = vars.size();
  std::vector<double> logits(V, -1.0), m(V, 0.0), v(V, 0.0);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<uint8_t> choice(size_t(in.batch) * V);
  std::vector<float> losses(size_t(in.batch)), metrics(size_t(in.batch));
  std::vector<double> step_s;
  const auto means = engine.bind_task_means(in.means_enc.data(), in.means_dec.data());
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (int s = 0; s < steps + 1; ++s) {  // step 0 is a warm-up, not timed
    const double t0 = seconds_now();
    std::fill(in.masks.begin(), in.masks.end(), 0);
    for (int b = 0; b < in.batch; ++b) {
      uint8_t* mask = in.masks.data() + int64_t(b) * in.mask_bytes;
      for (size_t k = 0; k < V; ++k) {
        const double p = 1.0 / (1.0 + std::exp(-logits[k]));
        const bool on = u(rng) < p;
        choice[size_t(b) * V + k] = on;
        if (!on) continue;
        for (int64_t bit : vars[k]) mask[bit >> 3] |= uint8_t(1u << (bit & 7));
      }
    }
    vtv::ForwardRequest rq = in.request(means.get());
    vtv::ForwardResult rs;
    rs.losses = losses.data();
    rs.metrics = metrics.data();
    engine.forward(rq, rs);
    double mean = 0, var = 0;
    for (float l : losses) mean += std::isfinite(l) ? l : 0.0;
    mean /= in.batch;
    for (float l : losses) var += std::isfinite(l) ? (l - mean) * (l - mean) : 0.0;
    const double sd = std::sqrt(var / in.batch) + 1e-8;
    std::vector<double> grad(V, 0.0);
    for (int b = 0; b < in.batch; ++b) {
      const double adv = std::isfinite(losses[size_t(b)]) ? (losses[size_t(b)] - mean) / sd : 0.0;
      for (size_t k = 0; k < V; ++k) {
        const double p = 1.0 / (1.0 + std::exp(-logits[k]));
        grad[k] += adv * (double(choice[size_t(b) * V + k]) - p) / in.batch;  // d log-prob / d logit, loss minimised
      }
    }
    for (size_t k = 0; k < V; ++k) {
      m[k] = b1 * m[k] + (1 - b1) * grad[k];
      v[k] = b2 * v[k] + (1 - b2) * grad[k] * grad[k];
      const double mh = m[k] / (1 - std::pow(b1, s + 1)), vh = v[k] / (1 - std::pow(b2, s + 1));
      logits[k] -= lr * mh / (std::sqrt(vh) + eps);
    }
    if (s > 0) step_s.push_back(seconds_now() - t0);
  }
  SearchResult r;
  r.steps = steps;
  for (double t : step_s) r.mean_step_s += t;
  r.mean_step_s /= std::max<size_t>(1, step_s.size());
  r.median_step_s = median(step_s);
  r.extrapolated_500_s = 500.0 * r.mean_step_s;
  r.fps = in.batch / r.mean_step_s;
  return r;
}

std::string json_num(const char* key, double v, bool comma = true) {
  char b[96];
  std::snprintf(b, sizeof b, "%s\"%s\":%.4f", comma ? "," : "", key, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_engine_gpu: %s needs a value\n", a.c_str());
        std::exit(64);
      }
      return argv[++i];
    };
    if (a == "--batch") o.batch = std::atoi(next().c_str());
    else if (a == "--reps") o.reps = std::atoi(next().c_str());
    else if (a == "--search-steps") o.search_steps = std::atoi(next().c_str());
    else if (a == "--weights") o.weights = next();
    else if (a == "--config") o.config = next();
    else if (a == "--no-components") o.components = false;
    else if (a == "--precisions") {
      o.precisions.clear();
      std::string list = next();
      size_t p = 0;
      while (p <= list.size()) {
        const size_t q = std::min(list.find(',', p), list.size());
        if (q > p) o.precisions.push_back(list.substr(p, q - p));
        p = q + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: bench_engine_gpu [--batch 320] [--reps 5] [--precisions bf16,fp32] [--search-steps 20]\n"
                   "                        [--weights PATH] [--config PRESET] [--no-components]\n"
                   "unknown argument '%s'\n",
                   a.c_str());
      return 64;
    }
  }
  for (const auto& p : o.precisions) {
    if (p != "bf16" && p != "fp32") {
      std::fprintf(stderr, "bench_engine_gpu: --precisions takes bf16 and/or fp32, got '%s'\n", p.c_str());
      return 64;
    }
  }
  if (o.batch < 1 || o.reps < 1 || o.search_steps < 0) {
    std::fprintf(stderr, "bench_engine_gpu: --batch and --reps must be >= 1, --search-steps >= 0\n");
    return 64;
  }
#ifndef VTV_WITH_CUDA
  std::printf("bench_engine_gpu: this build has no CUDA backend (configure with -DVTV_CUDA=ON); nothing measured\n");
  return 2;
#else
  const vtv::cuda::Probe probe = vtv::cuda::probe();
  if (!probe.usable) {
    std::printf("bench_engine_gpu: no usable CUDA GPU (%s); nothing measured\n", probe.detail.c_str());
    return 2;
  }
  vtv::ModelConfig c;
  try {
    c = vtv::preset(o.config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_engine_gpu: --config: %s\n", e.what());
    return 64;
  }
  if (o.weights.empty()) o.weights = "/tmp/vtv_" + o.config + "_random.safetensors";
  std::printf("bench_engine_gpu: %s; %s random weights, zero-shot patched forward + decode + MSE, batch %d over %d "
              "canvases, %d timed repeats (median)%s\n",
              probe.detail.c_str(), c.name.c_str(), o.batch, kCanvases, o.reps,
              o.config == "mae-vqgan-vit-large" ? "" : "; TFLOP/s below assume ViT-L's 114.7 GMAC: ignore them");
  int failures = 0;
  std::string json = "{\"device\":\"" + probe.detail + "\",\"batch\":" + std::to_string(o.batch) + ",\"gmac_per_forward\":114.7";
  try {
    double t0 = seconds_now();
    if (!file_exists(o.weights)) {
      vtv::test::RandomModelOptions ro;
      ro.seed = 1;
      vtv::test::write_random_model(o.weights, c, ro);
      std::printf("wrote random %s weights to %s in %.1f s\n", c.name.c_str(), o.weights.c_str(), seconds_now() - t0);
    } else {
      std::printf("reusing weights %s\n", o.weights.c_str());
    }
    t0 = seconds_now();
    std::shared_ptr<vtv::Weights> weights = vtv::Weights::open({o.weights});
    std::printf("opened weights in %.1f s\n", seconds_now() - t0);
    Inputs in(c, o.batch);

    json += ",\"engine\":{";
    bool first = true;
    double bf16_fps = 0;
    for (const std::string& prec : o.precisions) {
      try {
        t0 = seconds_now();
        vtv::EngineOptions eo;
        eo.backend = vtv::BackendKind::Cuda;
        eo.precision = prec == "bf16" ? vtv::Precision::BF16 : vtv::Precision::F32;
        vtv::Engine engine(c, weights, eo);
        const double t_init = seconds_now() - t0;
        const auto means = engine.bind_task_means(in.means_enc.data(), in.means_dec.data());
        std::vector<float> losses(size_t(o.batch)), metrics(size_t(o.batch));
        vtv::ForwardResult rs;
        int unique_f = 0, unique_d = 0;
        const double s = time_median(
            [&] {
              vtv::ForwardRequest rq = in.request(means.get());
              rs = vtv::ForwardResult{};
              rs.losses = losses.data();
              rs.metrics = metrics.data();
              engine.forward(rq, rs);
              unique_f = rs.unique_forwards;
              unique_d = rs.unique_decodes;
            },
            prec == "fp32" ? std::max(1, o.reps / 2) : o.reps, prec == "fp32" ? 1 : 2);
        int64_t nonfinite = 0;
        double mean_loss = 0;
        for (float l : losses) {
          if (std::isfinite(l)) mean_loss += l;
          else ++nonfinite;
        }
        mean_loss /= o.batch;
        const double fps = o.batch / s;
        if (prec == "bf16") bf16_fps = fps;
        std::printf("engine %s: %.1f ms per forward() of %d = %.0f forwards/s, %.1f TFLOP/s (init %.1f s; %d MAE "
                    "forwards, %d decodes per call; mean MSE %.4f, %lld non-finite)\n",
                    prec.c_str(), s * 1e3, o.batch, fps, tflops(fps), t_init, unique_f, unique_d, mean_loss,
                    (long long)nonfinite);
        if (nonfinite) ++failures;
        json += std::string(first ? "" : ",") + "\"" + prec + "\":{" + json_num("ms_per_call", s * 1e3, false) +
                json_num("fps", fps) + json_num("tflops", tflops(fps)) + json_num("mean_mse", mean_loss) +
                json_num("nonfinite", double(nonfinite)) + "}";
        first = false;

        if (prec == "bf16" && o.search_steps > 0) {
          const SearchResult sr = search_loop(engine, in, o.search_steps);
          const bool full = o.search_steps >= 500;
          std::printf("search-like loop (bf16, %d x %d samples, 1152 variables, REINFORCE + Adam on the host): %.1f ms "
                      "per step (median %.1f), %.0f forwards/s; 500 steps %s %.1f s (target < 60 s; validation "
                      "forwards not included)\n",
                      sr.steps, o.batch, sr.mean_step_s * 1e3, sr.median_step_s * 1e3, sr.fps,
                      full ? "took" : "extrapolated from these steps:", sr.extrapolated_500_s);
          json += ",\"search\":{" + json_num("steps", sr.steps, false) + json_num("ms_per_step", sr.mean_step_s * 1e3) +
                  json_num("fps", sr.fps) + json_num("seconds_500_steps", sr.extrapolated_500_s) +
                  ",\"extrapolated\":" + (full ? "false" : "true") + "}";
        }
      } catch (const std::exception& e) {
        std::printf("engine %s: FAILED: %s\n", prec.c_str(), e.what());
        ++failures;
      }
    }
    json += "}";

    // ---- where the time goes ---------------------------------------------------------------------------
    if (o.components) {
      try {
        const vtv::Precision p = vtv::Precision::BF16;
        vtv::model::MaeW mw = vtv::model::bind_mae(*weights, c);
        vtv::model::VqganDecoderW vw = vtv::model::bind_vqgan_decoder(*weights, c);
        const int V = c.vocab(), P = vtv::kZeroShotDecTokens - 1;
        vtv::model::MaeChunk chunk;
        chunk.mode = vtv::Mode::ZeroShot;
        const int64_t cf = int64_t(3) * vtv::kImage * vtv::kImage;
        for (int b = 0; b < o.batch; ++b) chunk.canvases.push_back(in.canvases.data() + in.canvas_index[size_t(b)] * cf);
        chunk.patch_masks = in.masks.data();
        chunk.means_enc = in.means_enc.data();
        chunk.means_dec = in.means_dec.data();
        std::vector<float> logits(size_t(o.batch) * P * V);
        std::vector<int32_t> tokens(size_t(o.batch) * vtv::kPatches);
        json += ",\"components_bf16_ms\":{";
        auto line = [&](const char* what, const char* key, double s, bool comma = true) {
          std::printf("  %-72s %8.1f ms  (%.0f /s)\n", what, s * 1e3, o.batch / s);
          json += json_num(key, s * 1e3, comma);
        };
        std::printf("where the bf16 engine's time goes (direct calls, batch %d):\n", o.batch);
        vtv::cuda::DeviceBuffer<int32_t> device_tokens(size_t(o.batch) * vtv::kPatches);
        {
          // The engine's way: one call, the pass replayed as a CUDA graph, the token grids left on the device.
          vtv::cuda::MaeCuda mae(c, mw, p);
          const double s_engine_way =
              time_median([&] { mae.run(chunk, {nullptr, nullptr, nullptr, nullptr, device_tokens.get()}); }, o.reps);
          line(mae.graphs_enabled() ? "MAE as forward() runs it (graphs, tokens left on the device)"
                                    : "MAE as forward() runs it (graphs OFF: capture failed)",
               "mae_engine_way", s_engine_way, false);
          const double s_logits =
              time_median([&] { mae.run(chunk, {nullptr, nullptr, logits.data(), tokens.data(), nullptr}); }, o.reps);
          line("MAE with the logits and tokens copied back (the token objective's way)", "mae_with_logits", s_logits);
        }
        // Targets as the engine makes them: each canvas's own bottom-right cell.
        std::vector<uint8_t> targets(size_t(kCanvases) * vtv::model::kCellBytes);
        for (int i = 0; i < kCanvases; ++i) {
          vtv::model::canvas_target(in.canvases.data() + i * cf, targets.data() + size_t(i) * vtv::model::kCellBytes);
        }
        std::vector<int32_t> job_grid(size_t(o.batch)), job_target(size_t(o.batch));
        for (int b = 0; b < o.batch; ++b) {
          job_grid[size_t(b)] = b;
          job_target[size_t(b)] = in.canvas_index[size_t(b)];
        }
        vtv::cuda::VqganScoreJobs sj;
        sj.loss = vtv::Loss::MSE;
        sj.count = o.batch;
        sj.grid = job_grid.data();
        sj.target = job_target.data();
        sj.targets = targets.data();
        sj.num_targets = kCanvases;
        std::vector<float> jl(size_t(o.batch)), jm(size_t(o.batch));
        {
          // The engine's way: grids from the device, identical ones decoded once, passes of 32 as graphs.
          vtv::cuda::VqganCuda vq(c, vw, p, 32, true);
          int64_t grids = 0;
          const double s = time_median(
              [&] { grids = vq.run_shared(device_tokens.get(), o.batch, true, sj, {nullptr, jl.data(), jm.data()}); },
              o.reps);
          const std::string what = "VQGAN decode + MSE as forward() runs it (" + std::to_string(grids) + " distinct grids" +
                                   (vq.graphs_enabled() ? ", graphs)" : ", graphs OFF: capture failed)");
          line(what.c_str(), "vqgan_engine_way", s);
        }
        {
          vtv::cuda::VqganCuda vq(c, vw, p, o.batch, true);
          const double s = time_median([&] { vq.run(tokens.data(), o.batch, sj, {nullptr, jl.data(), jm.data()}); }, o.reps);
          line("VQGAN decode + MSE of every grid in one pass (host tokens)", "vqgan_one_pass", s);
        }
        json += "}";
        std::printf("  (the rest of forward() is host work: validation, work sharing, targets, score jobs)\n");
      } catch (const std::exception& e) {
        std::printf("components: FAILED: %s\n", e.what());
        ++failures;
      }
    }
    if (bf16_fps > 0) json += json_num("bf16_fps", bf16_fps);
  } catch (const std::exception& e) {
    std::printf("bench_engine_gpu: stopped: %s\n", e.what());
    ++failures;
  }
  json += ",\"failures\":" + std::to_string(failures) + "}";
  std::printf("VTV_JSON %s\n", json.c_str());
  return failures ? 1 : 0;
#endif
}
