// Shared by the CUDA tests: skipping without a GPU (or without the CUDA backend compiled in, or on the
// CPU CUDA emulator where a case is too large), the CPU
// reference's thread pool, random data (test_inputs.h), bf16 rounding, GroupNorm sums, error measures
// that point at the worst element, and the result lines that tools/device/check.sh tabulates.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "cuda/probe.h"
#include "test_inputs.h"

// Every CUDA test starts with this: without a usable device it skips, saying why.
#define VTV_REQUIRE_GPU()                                                                        \
  do {                                                                                           \
    const vtv::cuda::Probe vtv_probe_ = vtv::cuda::probe();                                      \
    if (!vtv_probe_.usable) GTEST_SKIP() << "no usable CUDA GPU, skipping: " << vtv_probe_.detail; \
  } while (0)

// For the tests too large for the CPU CUDA emulator (full-size models, timings): on the emulator they
// skip, saying so; on a GPU they run.
#define VTV_SKIP_ON_EMULATOR(why)                                                                \
  do {                                                                                           \
    if (vtv::cuda::probe().emulated) GTEST_SKIP() << "too large for the CPU CUDA emulator: " << why; \
  } while (0)

// The one test a CUDA test file defines in a build without the CUDA backend (its #else branch): it
// skips, saying so, where the file's other tests would not exist at all.
#define VTV_CUDA_NOT_COMPILED_IN_TEST(suite)                                                          \
  TEST(suite, NotCompiledIn) {                                                                        \
    GTEST_SKIP() << "the CUDA backend is not compiled into this build (" << vtv::cuda::probe().detail << ")"; \
  }

namespace vtv::test {

// The token agreement bounds the CUDA tests assert (README, Limits): the share of argmax (MAE) or
// nearest-code (VQGAN encoder) tokens equal to the CPU backend's on random weights. fp32 differs from the
// CPU only at near-ties; bf16 rounds weights and activations, so tokens whose top two candidates are
// closer than bf16's error may flip. Measured on the emulator: MAE 99.1-100% (every row whose top-2 gap
// exceeds twice the logit error agrees exactly, which the MAE test asserts too), encoder 98.8% (tiny).
constexpr double kFp32TokenAgreement = 0.995;
constexpr double kBf16MaeTokenAgreement = 0.98;
constexpr double kBf16EncoderTokenAgreement = 0.97;

// The pool the CPU references run on: all cores, so the references of the real-width cases stay quick.
inline ThreadPool& pool() {
  static ThreadPool p(0);
  return p;
}

// Round to bf16 (nearest even) and back: the values the tensor-core path multiplies.
inline float round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  u &= 0xFFFF0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}
inline std::vector<float> rounded_bf16(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) r[i] = round_bf16(v[i]);
  return r;
}
// The same rounding as the bf16 bit patterns the device weights are uploaded as.
inline std::vector<uint16_t> to_bf16_bits(const std::vector<float>& v) {
  std::vector<uint16_t> r(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const float f = round_bf16(v[i]);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    r[i] = static_cast<uint16_t>(u >> 16);
  }
  return r;
}

// bf16 bit patterns back to floats (exact).
inline float bf16_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline std::vector<float> bf16_to_floats(const std::vector<uint16_t>& b) {
  std::vector<float> f(b.size());
  for (size_t i = 0; i < b.size(); ++i) f[i] = bf16_to_float(b[i]);
  return f;
}

// [N][C][HW] -> [N][HW][C] (the NHWC decoder's layout) and back.
template <class T>
std::vector<T> to_nhwc(const std::vector<T>& x, int64_t N, int C, int64_t HW) {
  std::vector<T> y(x.size());
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) y[size_t((n * HW + i) * C + c)] = x[size_t((n * C + c) * HW + i)];
  return y;
}
template <class T>
std::vector<T> to_nchw(const std::vector<T>& y, int64_t N, int C, int64_t HW) {
  std::vector<T> x(y.size());
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) x[size_t((n * C + c) * HW + i)] = y[size_t((n * HW + i) * C + c)];
  return x;
}

// GroupNorm sums [N][G][2] (sum, sum of squares) of x [N][C][HW] in double, as a producing kernel's
// epilogue would leave them for the next kernel's GroupNorm prologue.
inline std::vector<double> group_sums(const std::vector<float>& x, int64_t N, int C, int64_t HW, int G) {
  std::vector<double> s(size_t(N) * G * 2, 0.0);
  const int cpg = C / G;
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int64_t i = 0; i < HW; ++i) {
        const double v = x[size_t((n * C + c) * HW + i)];
        s[size_t((n * G + c / cpg) * 2)] += v;
        s[size_t((n * G + c / cpg) * 2 + 1)] += v * v;
      }
  return s;
}

// Relative error of `got` against `ref` in the max norm: max|got - ref| / max|ref|, with the worst element
// and the first non-finite one (a poisoned output that was never written reads NaN).
struct Diff {
  double max_abs = 0, ref_max = 0, rel = 0;
  int64_t worst = -1, first_nonfinite = -1, nonfinite = 0;
  float got_at_worst = 0, ref_at_worst = 0;
};

inline Diff compare(const float* got, const float* ref, int64_t n) {
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    d.ref_max = std::max(d.ref_max, double(std::fabs(ref[i])));
    if (!std::isfinite(got[i])) {
      if (d.first_nonfinite < 0) d.first_nonfinite = i;
      ++d.nonfinite;
      continue;
    }
    const double e = std::fabs(double(got[i]) - double(ref[i]));
    if (e > d.max_abs || d.worst < 0) {
      d.max_abs = e;
      d.worst = i;
      d.got_at_worst = got[i];
      d.ref_at_worst = ref[i];
    }
  }
  d.rel = d.max_abs / std::max(d.ref_max, 1e-30);
  if (d.nonfinite) d.rel = INFINITY;
  return d;
}
inline Diff compare(const std::vector<float>& got, const std::vector<float>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  return compare(got.data(), ref.data(), static_cast<int64_t>(std::min(got.size(), ref.size())));
}

inline std::string describe(const Diff& d) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "rel %.3g (max abs %.3g of max |ref| %.3g) worst at %lld: got %.7g ref %.7g; %lld non-finite (first %lld)",
                d.rel, d.max_abs, d.ref_max, (long long)d.worst, d.got_at_worst, d.ref_at_worst,
                (long long)d.nonfinite, (long long)d.first_nonfinite);
  return buf;
}

// Appends "name <tab> mode <tab> rel <tab> agreement <tab> ms" to $VTV_CUDA_REPORT (check.sh's table)
// and prints it. A negative number means "not applicable" and prints as "-".
inline void report(const std::string& name, const std::string& mode, double rel, double agreement, double ms) {
  auto field = [](double v, const char* fmt) {
    char b[32];
    if (v < 0) std::snprintf(b, sizeof b, "-");
    else std::snprintf(b, sizeof b, fmt, v);
    return std::string(b);
  };
  const std::string line = name + "\t" + mode + "\t" + field(rel, "%.3g") + "\t" + field(agreement, "%.4f") + "\t" +
                           field(ms, "%.3f");
  std::printf("VTV_RESULT\t%s\n", line.c_str());
  if (const char* path = std::getenv("VTV_CUDA_REPORT")) {
    if (FILE* f = std::fopen(path, "a")) {
      std::fprintf(f, "%s\n", line.c_str());
      std::fclose(f);
    }
  }
}

}  // namespace vtv::test
