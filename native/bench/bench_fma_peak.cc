// The machine's measured fp32 FMA peak: every thread runs a loop of independent vector FMAs on registers
// only (no memory traffic), 24 accumulator chains per thread so FMA latency (4 cycles) times the FMA
// ports (2 on the CPUs this project runs on) is covered twice over. Widest vectors the build allows:
// 16 lanes with AVX-512, 8 with AVX2+FMA. One FMA counts as 2 FLOP.
//   usage: bench_fma_peak [threads=2] [seconds=1.0] [--json]
// Prints GFLOP/s for 1 thread and for `threads` threads (each the best of 5 timed rounds), or with --json
// one line {"threads": T, "gflops_1thread": x, "gflops": y, "lanes": L}.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

#if defined(__AVX512F__)
using vec = __m512;
constexpr int kLanes = 16;
inline vec vset(float x) { return _mm512_set1_ps(x); }
inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(vec v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
using vec = __m256;
constexpr int kLanes = 8;
inline vec vset(float x) { return _mm256_set1_ps(x); }
inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vsum(vec v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}
#else
struct vec {
  float v;
};
constexpr int kLanes = 1;
inline vec vset(float x) { return {x}; }
inline vec vfma(vec a, vec b, vec c) { return {a.v * b.v + c.v}; }
inline float vsum(vec v) { return v.v; }
#endif

constexpr int kChains = 24;
constexpr int64_t kInner = 1 << 14;  // FMA rounds per timing check

// Runs FMA rounds until `stop`; returns rounds done (each round = kChains vector FMAs). The result feeds
// `sink` so the compiler keeps the work.
int64_t fma_loop(const std::atomic<bool>& stop, float* sink) {
  vec acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = vset(1.0f + 1e-7f * i);
  const vec a = vset(0.999999f), b = vset(1e-7f);
  int64_t rounds = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    for (int64_t r = 0; r < kInner; ++r) {
#pragma GCC unroll 24
      for (int i = 0; i < kChains; ++i) acc[i] = vfma(acc[i], a, b);
    }
    rounds += kInner;
  }
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += vsum(acc[i]);
  *sink = s;
  return rounds;
}

double measure(int threads, double seconds) {
  std::atomic<bool> stop{false};
  std::vector<int64_t> rounds(static_cast<size_t>(threads));
  std::vector<float> sinks(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  const auto t0 = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] { rounds[static_cast<size_t>(t)] = fma_loop(stop, &sinks[static_cast<size_t>(t)]); });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double total = 0;
  for (int64_t r : rounds) total += static_cast<double>(r);
  return total * kChains * kLanes * 2.0 / elapsed / 1e9;
}

double best_of(int threads, double seconds, int rounds) {
  double best = 0;
  for (int i = 0; i < rounds; ++i) best = std::max(best, measure(threads, seconds / rounds));
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  double seconds = 1.0;
  bool json = false;
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (positional++ == 0) {
      threads = std::max(1, std::atoi(argv[i]));
    } else {
      seconds = std::max(0.05, std::atof(argv[i]));
    }
  }
  measure(1, 0.05);  // wake the core up
  const double one = best_of(1, seconds, 5);
  const double all = threads == 1 ? one : best_of(threads, seconds, 5);
  if (json) {
    std::printf("{\"threads\": %d, \"gflops_1thread\": %.1f, \"gflops\": %.1f, \"lanes\": %d}\n", threads, one, all,
                kLanes);
  } else {
    std::printf("fp32 FMA peak (%d-lane vectors, %d chains): 1 thread %.1f GFLOP/s, %d threads %.1f GFLOP/s\n", kLanes,
                kChains, one, threads, all);
  }
  return 0;
}
