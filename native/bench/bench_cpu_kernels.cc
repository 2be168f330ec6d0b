// Throughput of the CPU kernels on the MAE-VQGAN's hot shapes: every transformer Linear (ViT-L encoder
// and the 512-wide decoder, at several token counts) and every VQGAN decoder 3x3 convolution.
// Prints one line per shape with GFLOP/s; benchmarks/cpu_kernels_torch.py prints the same lines for PyTorch.
//   usage: bench_cpu_kernels [threads=2] [min_seconds_per_shape=0.3] [filter substring]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <time.h>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/conv.h"
#include "cpu/gemm.h"

namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// VTV_BENCH_CLOCK=cpu measures process CPU time divided by the thread count instead of wall time: on a
// shared machine it discounts the time other processes hold the cores (for tuning with 1 thread; with
// more it hides idle waits, so the default wall clock is the honest number).
bool use_cpu_clock = false;
int bench_threads = 1;

double now_seconds() {
  if (use_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (ts.tv_sec + 1e-9 * ts.tv_nsec) / bench_threads;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best (minimum) seconds per call over repetitions filling at least min_seconds, after one warm-up call.
// The minimum, not the median: other processes only ever add time.
double time_call(const std::function<void()>& fn, double min_seconds) {
  fn();
  double best = 1e30;
  int reps = 0;
  const double start = now_seconds();
  do {
    const double t0 = now_seconds();
    fn();
    best = std::min(best, now_seconds() - t0);
    ++reps;
  } while (now_seconds() - start < min_seconds || reps < 3);
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const double min_seconds = argc > 2 ? std::atof(argv[2]) : 0.3;
  const std::string filter = argc > 3 ? argv[3] : "";
  bench_threads = std::max(1, threads);
  use_cpu_clock = std::getenv("VTV_BENCH_CLOCK") && std::string(std::getenv("VTV_BENCH_CLOCK")) == "cpu";
  vtv::ThreadPool pool(threads);
  std::printf("# vtv CPU kernels, gemm=%s, threads=%d\n", vtv::cpu::gemm_implementation(), threads);
  std::printf("%-44s %10s %9s\n", "shape", "ms", "GFLOP/s");

  struct LinearShape {
    const char* layer;
    int64_t M, K, N;
  };
  std::vector<LinearShape> linears;
  for (int64_t M : {50, 400, 1600})
    for (auto [name, K, N] : {std::tuple<const char*, int64_t, int64_t>{"enc.qkv", 1024, 3072}, {"enc.proj", 1024, 1024},
                              {"enc.fc1", 1024, 4096}, {"enc.fc2", 4096, 1024}})
      linears.push_back({name, M, K, N});
  for (int64_t M : {99, 792})
    for (auto [name, K, N] : {std::tuple<const char*, int64_t, int64_t>{"dec.qkv", 512, 1536}, {"dec.proj", 512, 512},
                              {"dec.fc1", 512, 2048}, {"dec.fc2", 2048, 512}})
      linears.push_back({name, M, K, N});
  for (const auto& s : linears) {
    char label[96];
    std::snprintf(label, sizeof label, "linear %s M=%ld K=%ld N=%ld", s.layer, long(s.M), long(s.K), long(s.N));
    if (!filter.empty() && std::string(label).find(filter) == std::string::npos) continue;
    auto x = random_vector(s.M * s.K, 1), w = random_vector(s.N * s.K, 2), b = random_vector(s.N, 3);
    std::vector<float> y(s.M * s.N);
    const bool gelu = std::string(s.layer).find("fc1") != std::string::npos;
    double t = time_call([&] {
      vtv::cpu::linear(pool, x.data(), s.M, s.K, w.data(), b.data(), s.N, y.data(),
                       gelu ? vtv::cpu::Epilogue::Gelu : vtv::cpu::Epilogue::None);
    }, min_seconds);
    std::printf("%-44s %10.3f %9.1f\n", label, t * 1e3, 2.0 * s.M * s.K * s.N / t * 1e-9);
    // The same with the weights packed once (as the MAE runs them).
    const vtv::cpu::PackedLinear packed(pool, w.data(), s.N, s.K);
    t = time_call([&] {
      vtv::cpu::linear(pool, x.data(), s.M, s.K, packed, b.data(), y.data(),
                       gelu ? vtv::cpu::Epilogue::Gelu : vtv::cpu::Epilogue::None);
    }, min_seconds);
    std::printf("%-44s %10.3f %9.1f\n", (std::string(label) + " packed").c_str(), t * 1e3, 2.0 * s.M * s.K * s.N / t * 1e-9);
    std::fflush(stdout);
  }

  struct ConvShape {
    int64_t Ci, H, Co;  // stored input size H x H
    bool up;
  };
  // The VQGAN decoder at 224 px (ch 128, ch_mult 1,1,2,2,4; latent 14x14): 3x3, pad 1, some with the
  // nearest x2 upsampling folded in (H is then the stored input size, the output is 2H).
  const std::vector<ConvShape> convs = {{512, 14, 512, false},  {512, 14, 512, true},  {512, 28, 256, false},
                                        {256, 28, 256, false},  {256, 28, 256, true},  {256, 56, 256, false},
                                        {256, 56, 256, true},   {256, 112, 128, false}, {128, 112, 128, false},
                                        {128, 112, 128, true},  {128, 224, 128, false}};
  // Each shape as conv2d runs it (auto), then both 3x3 variants, at batch 1 and 4 ("n4" rows). GFLOP/s
  // counts the direct convolution's FLOPs for every variant (for Winograd: dense-equivalent).
  struct Variant {
    const char* name;
    vtv::cpu::Conv3x3Algo algo;
  };
  const Variant variants[] = {{"", vtv::cpu::Conv3x3Algo::kAuto},
                              {" [direct]", vtv::cpu::Conv3x3Algo::kDirect},
                              {" [winograd]", vtv::cpu::Conv3x3Algo::kWinograd}};
  for (int64_t N : {1, 4}) {
    for (const auto& c : convs) {
      for (const Variant& v : variants) {
        vtv::cpu::Conv2dShape s;
        s.N = N, s.Ci = c.Ci, s.H = s.W = c.H, s.Co = c.Co, s.upsample2x = c.up;
        char label[96];
        std::snprintf(label, sizeof label, "conv3x3%s %ldx%ld %ld->%ld%s%s", c.up ? " up2x" : "", long(s.out_h()),
                      long(s.out_w()), long(c.Ci), long(c.Co), N > 1 ? " n4" : "", v.name);
        if (!filter.empty() && std::string(label).find(filter) == std::string::npos) continue;
        auto x = random_vector(N * s.Ci * s.H * s.W, 4), w = random_vector(s.Co * s.Ci * 9, 5), b = random_vector(s.Co, 6);
        std::vector<float> y(N * s.Co * s.out_h() * s.out_w());
        vtv::cpu::set_conv3x3_algo(v.algo);
        double t = time_call([&] { vtv::cpu::conv2d(pool, s, x.data(), w.data(), b.data(), y.data()); }, min_seconds);
        vtv::cpu::set_conv3x3_algo(vtv::cpu::Conv3x3Algo::kAuto);
        const double flops = 2.0 * N * s.Co * s.Ci * 9 * s.out_h() * s.out_w();
        std::printf("%-44s %10.3f %9.1f\n", label, t * 1e3, flops / t * 1e-9);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
