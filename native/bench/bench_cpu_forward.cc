// The engine's CPU forward of the search (zero-shot, per-sample head patching, decode, MSE), with the
// 3x3 convolution variants compared in one process: interleaved rounds, each round timing one batch
// forward per variant in a rotating order; prints per-variant medians and the ratio to the first.
// Also a single-variant loop for profilers (`--variants auto --rounds 20` under perf record).
//   usage: bench_cpu_forward --weights W [--config mae-vqgan-vit-large] [--batch 1] [--threads 2]
//                            [--rounds 7] [--variants direct,winograd,auto]
// W: e.g. .vtv-cache/bench-mae-vqgan-vit-large.safetensors (benchmarks/cpu_forward_torch.py --write-weights).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <time.h>
#include <vector>

#include "cpu/conv.h"
#include "vtv/config.h"
#include "vtv/engine.h"
#include "vtv/weights.h"

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Process CPU time (all threads): on a shared machine it leaves out the time other processes held the
// cores, so it judges a lever more steadily than wall time (pool threads block, they do not spin).
double cpu_now() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Resident memory of this process, MB (VmRSS).
double rss_mb() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "VmRSS:", 6) == 0) kb = std::atof(line + 6);
  std::fclose(f);
  return kb / 1024;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

}  // namespace

int main(int argc, char** argv) {
  std::string weights, config_name = "mae-vqgan-vit-large", variants_arg = "direct,winograd";
  int batch = 1, threads = 2, rounds = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--weights") weights = v;
    else if (k == "--config") config_name = v;
    else if (k == "--batch") batch = std::atoi(v.c_str());
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--rounds") rounds = std::atoi(v.c_str());
    else if (k == "--variants") variants_arg = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 1;
    }
  }
  if (weights.empty() || batch < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: bench_cpu_forward --weights W [--config C] [--batch B] [--threads T] [--rounds R] [--variants direct,winograd,auto]\n");
    return 1;
  }
  struct Variant {
    std::string name;
    vtv::cpu::Conv3x3Algo algo;
  };
  std::vector<Variant> variants;
  for (size_t b = 0; b <= variants_arg.size();) {
    size_t e = variants_arg.find(',', b);
    if (e == std::string::npos) e = variants_arg.size();
    const std::string n = variants_arg.substr(b, e - b);
    if (n == "direct") variants.push_back({n, vtv::cpu::Conv3x3Algo::kDirect});
    else if (n == "winograd") variants.push_back({n, vtv::cpu::Conv3x3Algo::kWinograd});
    else if (n == "auto") variants.push_back({n, vtv::cpu::Conv3x3Algo::kAuto});
    else {
      std::fprintf(stderr, "unknown variant %s\n", n.c_str());
      return 1;
    }
    b = e + 1;
  }

  const vtv::ModelConfig config = vtv::preset(config_name);
  vtv::EngineOptions opt;
  opt.backend = vtv::BackendKind::Cpu;
  opt.threads = threads;
  vtv::Engine engine(config, vtv::Weights::open({weights}), opt);

  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> canvases(size_t(batch) * 3 * 224 * 224), means_enc(vtv::means_enc_floats(config)),
      means_dec(vtv::means_dec_floats(config));
  for (auto& x : canvases) x = u(rng);
  for (auto& x : means_enc) x = 0.5f * u(rng);
  for (auto& x : means_dec) x = 0.5f * u(rng);
  // 30% of the (layer, head) pairs patched at all positions, per sample.
  const int64_t bytes = vtv::patch_bytes(config, vtv::Mode::ZeroShot);
  std::vector<uint8_t> masks(size_t(batch * bytes), 0);
  std::uniform_real_distribution<float> p01(0.0f, 1.0f);
  for (int b = 0; b < batch; ++b) {
    int64_t bit = 0;
    for (int l = 0; l < config.layers(); ++l) {
      const bool enc = l < config.enc_depth;
      const int heads = enc ? config.enc_heads : config.dec_heads, n = enc ? 50 : 99;
      for (int h = 0; h < heads; ++h) {
        const bool on = p01(rng) < 0.3f;
        for (int p = 0; p < n; ++p, ++bit)
          if (on) masks[size_t(b * bytes + (bit >> 3))] |= uint8_t(1u << (bit & 7));
      }
    }
  }
  std::vector<float> losses(batch), metrics(batch);
  std::vector<int32_t> tokens(size_t(batch) * 196);
  double last_cpu = 0;
  auto run = [&] {
    vtv::ForwardRequest req;
    req.mode = vtv::Mode::ZeroShot;
    req.canvases = canvases.data();
    req.num_canvases = batch;
    req.batch = batch;
    req.means_enc = means_enc.data();
    req.means_dec = means_dec.data();
    req.patch_mask = masks.data();
    req.loss = vtv::Loss::MSE;
    req.dedupe = false;
    vtv::ForwardResult res;
    res.losses = losses.data();
    res.metrics = metrics.data();
    res.tokens = tokens.data();
    const double t0 = now(), c0 = cpu_now();
    engine.forward(req, res);
    last_cpu = cpu_now() - c0;
    return now() - t0;
  };

  std::printf("# %s, batch %d, %d threads, %d interleaved rounds after 1 warm-up per variant\n", config_name.c_str(),
              batch, threads, rounds);
  std::vector<std::vector<double>> times(variants.size()), cpu_times(variants.size());
  std::vector<std::vector<float>> first_metrics(variants.size());
  const double rss_open = rss_mb();
  for (size_t v = 0; v < variants.size(); ++v) {
    vtv::cpu::set_conv3x3_algo(variants[v].algo);
    run();
    first_metrics[v] = metrics;
    std::printf("memory after the first forward with %s: %.0f MB resident (%.0f MB after opening the engine)\n",
                variants[v].name.c_str(), rss_mb(), rss_open);
  }
  for (int r = 0; r < rounds; ++r) {
    std::printf("round %d:", r + 1);
    for (size_t i = 0; i < variants.size(); ++i) {
      const size_t v = (i + r) % variants.size();
      vtv::cpu::set_conv3x3_algo(variants[v].algo);
      const double t = run();
      times[v].push_back(t);
      cpu_times[v].push_back(last_cpu);
      std::printf(" %s %.3f (cpu %.3f)", variants[v].name.c_str(), t, last_cpu);
    }
    std::printf(" s\n");
    std::fflush(stdout);
  }
  const double base = median(times[0]);
  for (size_t v = 0; v < variants.size(); ++v) {
    const double m = median(times[v]);
    float dmax = 0;
    for (int b = 0; b < batch; ++b) dmax = std::max(dmax, std::abs(first_metrics[v][b] - first_metrics[0][b]));
    std::printf("%-10s median %.3f s/batch, %.3f forwards/s, speed-up over %s %.3fx; CPU time median %.3f s/batch "
                "(%.3fx) (MSE max |d| vs %s: %.2e)\n",
                variants[v].name.c_str(), m, batch / m, variants[0].name.c_str(), base / m, median(cpu_times[v]),
                median(cpu_times[0]) / median(cpu_times[v]), variants[0].name.c_str(), dmax);
  }
  return 0;
}
