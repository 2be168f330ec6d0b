// Each CUDA kernel against its CPU counterpart on random inputs, with outputs poisoned (NaN) beforehand
// so that an element the kernel never writes fails the comparison. Skipped, with the reason, where no
// GPU is usable; compiled wherever the CUDA backend is.
#include <gtest/gtest.h>

#include "cuda_test_util.h"

#ifdef VTV_WITH_CUDA
#include <cmath>
#include <memory>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "cpu/elementwise.h"
#include "cpu/gemm.h"
#include "cpu/norm.h"
#include "cuda/check.cuh"
#include "cuda/device_buffer.h"
#include "cuda/graph_cache.h"
#include "cuda/kernels.h"
#include "model/token_layout.h"
#include "model/token_losses.h"
#include "vtv/config.h"
#include "vtv/error.h"

namespace vtv::test {
namespace {

using cuda::DeviceBuffer;

// ---- Linear -------------------------------------------------------------------------------------------

struct LinearCase {
  int64_t M, K, N;
  bool gelu, bias, residual, in_place;
};

std::string name_of(const LinearCase& c) {
  return "M" + std::to_string(c.M) + " K" + std::to_string(c.K) + " N" + std::to_string(c.N) + (c.gelu ? " gelu" : "") +
         (c.bias ? " bias" : "") + (c.residual ? (c.in_place ? " residual(in place)" : " residual") : "");
}

const LinearCase kLinearCases[] = {
    {333, 1024, 3072, false, true, false, false},  // qkv-like, ragged M
    {200, 1024, 4096, true, true, false, false},   // fc1 with GELU
    {200, 4096, 1024, false, true, true, true},    // fc2 with the in-place residual add
    {77, 40, 50, true, true, true, false},         // every tail: M, N, K not multiples of the tiles
    {5, 8, 3, false, false, false, false},         // tiny, no bias
    {130, 768, 64, false, true, false, false},     // patch embedding of the tiny model
};

void run_linear_case(const LinearCase& c, bool bf16) {
  SCOPED_TRACE(name_of(c) + (bf16 ? " bf16" : " fp32"));
  const uint32_t seed = static_cast<uint32_t>(c.M * 131 + c.K * 7 + c.N);
  const std::vector<float> x = random_vector(static_cast<size_t>(c.M * c.K), seed);
  const std::vector<float> w = random_vector(static_cast<size_t>(c.N * c.K), seed + 1, 1.0f / std::sqrt(float(c.K)));
  const std::vector<float> bias = random_vector(static_cast<size_t>(c.N), seed + 2, 0.1f);
  const std::vector<float> res = random_vector(static_cast<size_t>(c.M * c.N), seed + 3);
  // Reference: the CPU Linear, on the bf16-rounded operands in bf16 mode (so only summation order differs).
  const std::vector<float> xr = bf16 ? rounded_bf16(x) : x, wr = bf16 ? rounded_bf16(w) : w;
  std::vector<float> ref = res;
  cpu::linear(pool(), xr.data(), c.M, c.K, wr.data(), c.bias ? bias.data() : nullptr, c.N, ref.data(),
              c.gelu ? cpu::Epilogue::Gelu : cpu::Epilogue::None, c.residual ? ref.data() : nullptr);
  std::vector<float> ref_exact = res;  // unrounded operands, for the record
  cpu::linear(pool(), x.data(), c.M, c.K, w.data(), c.bias ? bias.data() : nullptr, c.N, ref_exact.data(),
              c.gelu ? cpu::Epilogue::Gelu : cpu::Epilogue::None, c.residual ? ref_exact.data() : nullptr);

  DeviceBuffer<float> dx(x), db(bias), dres(res), dy(static_cast<size_t>(c.M * c.N));
  DeviceBuffer<float> dw32;
  DeviceBuffer<uint16_t> dw16;
  if (bf16) dw16 = DeviceBuffer<uint16_t>(to_bf16_bits(w));
  else dw32 = DeviceBuffer<float>(w);
  cuda::LinearArgs a;
  a.x = dx.get();
  a.M = c.M;
  a.K = c.K;
  a.N = c.N;
  a.w_f32 = bf16 ? nullptr : dw32.get();
  a.w_bf16 = bf16 ? dw16.get() : nullptr;
  a.bias = c.bias ? db.get() : nullptr;
  a.epilogue = c.gelu ? cuda::Epilogue::Gelu : cuda::Epilogue::None;
  if (c.in_place) {
    dy.upload(res.data(), res.size());
    a.residual = dy.get();
  } else {
    dy.poison();
    a.residual = c.residual ? dres.get() : nullptr;
  }
  a.y = dy.get();
  cuda::GpuTimer timer;
  timer.start();
  cuda::linear(a);
  const float ms = timer.stop_ms();
  cuda::device_synchronize();
  const std::vector<float> got = dy.to_host(static_cast<size_t>(c.M * c.N));
  const Diff d = compare(got, ref);
  const Diff de = compare(got, ref_exact);
  std::printf("linear %s %s: vs rounded-operand reference %s; vs fp32 reference rel %.3g; %.3f ms\n",
              bf16 ? "bf16" : "fp32", name_of(c).c_str(), describe(d).c_str(), de.rel, ms);
  if (d.worst >= 0) {
    std::printf("  worst element: row %lld, column %lld\n", (long long)(d.worst / c.N), (long long)(d.worst % c.N));
  }
  EXPECT_EQ(d.nonfinite, 0) << "unwritten or non-finite outputs, first at row " << d.first_nonfinite / c.N << " column "
                            << d.first_nonfinite % c.N;
  EXPECT_LE(d.rel, bf16 ? 1e-3 : 1e-4) << describe(d);
  if (bf16) {
    EXPECT_LE(de.rel, 2e-2) << "bf16 rounding error against the fp32 Linear: " << describe(de);
  }
  report("linear " + name_of(c), bf16 ? "bf16" : "fp32", bf16 ? de.rel : d.rel, -1, ms);
}

TEST(CudaLinear, Fp32MatchesCpu) {
  VTV_REQUIRE_GPU();
  for (const LinearCase& c : kLinearCases) run_linear_case(c, false);
}

TEST(CudaLinear, Bf16MatchesCpuOnRoundedOperands) {
  VTV_REQUIRE_GPU();
  for (const LinearCase& c : kLinearCases) run_linear_case(c, true);
}

TEST(CudaLinear, RejectsBadArguments) {
  VTV_REQUIRE_GPU();
  DeviceBuffer<float> x(64), w(64), y(64);
  cuda::LinearArgs a;
  a.x = x.get();
  a.M = 1;
  a.K = 12;  // not a multiple of 8
  a.N = 1;
  a.w_f32 = w.get();
  a.y = y.get();
  EXPECT_THROW(cuda::linear(a), Error);
  a.K = 8;
  a.w_bf16 = reinterpret_cast<const uint16_t*>(w.get());  // both weights set
  EXPECT_THROW(cuda::linear(a), Error);
}

// ---- the prediction head's fused argmax ---------------------------------------------------------------

void run_argmax_case(bool bf16) {
  const int64_t M = 500, K = 512, N = 1024;
  const std::vector<float> x = random_vector(static_cast<size_t>(M * K), 11);
  const std::vector<float> w = random_vector(static_cast<size_t>(N * K), 12, 2.0f / std::sqrt(float(K)));
  const std::vector<float> bias = random_vector(static_cast<size_t>(N), 13, 0.05f);
  const std::vector<float> xr = bf16 ? rounded_bf16(x) : x, wr = bf16 ? rounded_bf16(w) : w;
  std::vector<float> logits(static_cast<size_t>(M * N));
  cpu::linear(pool(), xr.data(), M, K, wr.data(), bias.data(), N, logits.data());
  std::vector<int32_t> ref(static_cast<size_t>(M));
  cpu::argmax_rows(pool(), logits.data(), M, N, ref.data());

  DeviceBuffer<float> dx(x), db(bias);
  DeviceBuffer<float> dw32;
  DeviceBuffer<uint16_t> dw16;
  if (bf16) dw16 = DeviceBuffer<uint16_t>(to_bf16_bits(w));
  else dw32 = DeviceBuffer<float>(w);
  DeviceBuffer<unsigned long long> keys(static_cast<size_t>(M));
  DeviceBuffer<int32_t> idx(static_cast<size_t>(M));
  idx.poison();
  cuda::argmax_keys_reset(keys.get(), M);
  cuda::LinearArgs a;
  a.x = dx.get();
  a.M = M;
  a.K = K;
  a.N = N;
  a.w_f32 = bf16 ? nullptr : dw32.get();
  a.w_bf16 = bf16 ? dw16.get() : nullptr;
  a.bias = db.get();
  a.argmax_keys = keys.get();  // no y: logits are never stored
  cuda::linear(a);
  cuda::argmax_keys_to_index(keys.get(), M, idx.get());
  const std::vector<int32_t> got = idx.to_host(static_cast<size_t>(M));
  int64_t agree = 0;
  for (int64_t r = 0; r < M; ++r) {
    const int32_t g = got[static_cast<size_t>(r)];
    ASSERT_TRUE(g >= 0 && g < N) << "row " << r << ": index " << g << " out of range";
    const float* lr = logits.data() + r * N;
    const float best = lr[ref[static_cast<size_t>(r)]];
    // The chosen column must be a maximum up to summation-order rounding.
    EXPECT_GE(lr[g], best - 1e-4f * std::fabs(best) - 1e-5f) << "row " << r << ": picked column " << g << " (" << lr[g]
                                                             << "), the maximum is column " << ref[static_cast<size_t>(r)] << " (" << best << ")";
    agree += g == ref[static_cast<size_t>(r)];
  }
  const double rate = double(agree) / double(M);
  std::printf("argmax head %s: %lld of %lld rows pick the CPU's column (%.4f)\n", bf16 ? "bf16" : "fp32", (long long)agree,
              (long long)M, rate);
  EXPECT_GE(rate, 0.99);
  report("head argmax M500 K512 N1024", bf16 ? "bf16" : "fp32", -1, rate, -1);
}

TEST(CudaArgmax, Fp32HeadMatchesCpuArgmax) {
  VTV_REQUIRE_GPU();
  run_argmax_case(false);
}

TEST(CudaArgmax, Bf16HeadMatchesCpuArgmaxOnRoundedOperands) {
  VTV_REQUIRE_GPU();
  run_argmax_case(true);
}

TEST(CudaArgmax, TiesPickTheFirstColumnAndGridsFollowTheMode) {
  VTV_REQUIRE_GPU();
  // Columns 5 and 700 (different tiles) have identical weights and the largest bias: every row ties
  // between them, and torch.argmax takes the first.
  const int64_t K = 64, N = 1024;
  for (int P : {196, 98}) {
    const int64_t samples = 3, M = samples * P;
    std::vector<float> x = random_vector(static_cast<size_t>(M * K), 21);
    std::vector<float> w = random_vector(static_cast<size_t>(N * K), 22, 0.01f);
    std::vector<float> bias(static_cast<size_t>(N), 0.0f);
    for (int64_t k = 0; k < K; ++k) w[static_cast<size_t>(700 * K + k)] = w[static_cast<size_t>(5 * K + k)];
    bias[5] = bias[700] = 50.0f;
    DeviceBuffer<float> dx(x), dw(w), db(bias);
    DeviceBuffer<unsigned long long> keys(static_cast<size_t>(M));
    DeviceBuffer<int32_t> grid(static_cast<size_t>(samples * kPatches));
    grid.poison();
    cuda::argmax_keys_reset(keys.get(), M);
    cuda::LinearArgs a;
    a.x = dx.get();
    a.M = M;
    a.K = K;
    a.N = N;
    a.w_f32 = dw.get();
    a.bias = db.get();
    a.argmax_keys = keys.get();
    cuda::linear(a);
    cuda::token_grid(keys.get(), samples, P, grid.get());
    const std::vector<int32_t> g = grid.to_host(static_cast<size_t>(samples * kPatches));
    for (size_t i = 0; i < g.size(); ++i) ASSERT_EQ(g[i], 5) << "P " << P << ", grid element " << i;
  }
  // The grid layout, and argmax exactness in both precisions: with small integers as operands every
  // logit is an exact integer whatever the summation order (and exact in bf16), so the GPU must pick
  // exactly the CPU's column, ties included, and row r of sample s must land at every q with q % P == r.
  const int64_t samples = 2, Ki = 64;
  std::mt19937 rng(31);
  auto small_int = [&]() { return float(int(rng() % 7) - 3); };
  for (int P : {196, 98}) {
    for (bool bf16 : {false, true}) {
      SCOPED_TRACE("P " + std::to_string(P) + (bf16 ? " bf16" : " fp32"));
      const int64_t M = samples * P;
      std::vector<float> x(static_cast<size_t>(M * Ki)), w(static_cast<size_t>(N * Ki)), bias(static_cast<size_t>(N));
      for (auto& v : x) v = small_int();
      for (auto& v : w) v = small_int();
      for (auto& v : bias) v = small_int();
      std::vector<float> logits(static_cast<size_t>(M * N));
      cpu::linear(pool(), x.data(), M, Ki, w.data(), bias.data(), N, logits.data());
      std::vector<int32_t> want(static_cast<size_t>(M));
      cpu::argmax_rows(pool(), logits.data(), M, N, want.data());
      DeviceBuffer<float> dx(x), db(bias), dlogits(static_cast<size_t>(M * N));
      DeviceBuffer<float> dw32;
      DeviceBuffer<uint16_t> dw16;
      if (bf16) dw16 = DeviceBuffer<uint16_t>(to_bf16_bits(w));
      else dw32 = DeviceBuffer<float>(w);
      DeviceBuffer<unsigned long long> keys(static_cast<size_t>(M));
      DeviceBuffer<int32_t> grid(static_cast<size_t>(samples * kPatches));
      grid.poison();
      dlogits.poison();
      cuda::argmax_keys_reset(keys.get(), M);
      cuda::LinearArgs a;
      a.x = dx.get();
      a.M = M;
      a.K = Ki;
      a.N = N;
      a.w_f32 = bf16 ? nullptr : dw32.get();
      a.w_bf16 = bf16 ? dw16.get() : nullptr;
      a.bias = db.get();
      a.y = dlogits.get();  // logits and argmax together, as the engine asks when logits are wanted
      a.argmax_keys = keys.get();
      cuda::linear(a);
      cuda::token_grid(keys.get(), samples, P, grid.get());
      const std::vector<int32_t> g = grid.to_host(static_cast<size_t>(samples * kPatches));
      const std::vector<float> gl = dlogits.to_host(static_cast<size_t>(M * N));
      const Diff d = compare(gl, logits);
      EXPECT_EQ(d.max_abs, 0.0) << "integer logits must be exact: " << describe(d);
      for (int64_t s = 0; s < samples; ++s) {
        for (int q = 0; q < kPatches; ++q) {
          ASSERT_EQ(g[static_cast<size_t>(s * kPatches + q)], want[static_cast<size_t>(s * P + q % P)]) << "sample " << s << ", grid position " << q;
        }
      }
    }
  }
}

// ---- LayerNorm ----------------------------------------------------------------------------------------

TEST(CudaLayerNorm, MatchesCpu) {
  VTV_REQUIRE_GPU();
  for (auto [rows, C] : {std::pair<int64_t, int64_t>{333, 1024}, {197, 512}, {50, 40}, {7, 8}}) {
    for (bool in_place : {false, true}) {
      SCOPED_TRACE("rows " + std::to_string(rows) + " C " + std::to_string(C) + (in_place ? " in place" : ""));
      const std::vector<float> x = random_vector(static_cast<size_t>(rows * C), uint32_t(rows + C), 2.0f, 0.5f);
      const std::vector<float> g = random_vector(static_cast<size_t>(C), 3, 0.1f, 1.0f), b = random_vector(static_cast<size_t>(C), 4, 0.1f);
      std::vector<float> ref(x.size());
      cpu::layer_norm(pool(), x.data(), rows, C, g.data(), b.data(), 1e-6f, ref.data());
      DeviceBuffer<float> dx(x), dg(g), db(b), dy(x.size());
      dy.poison();
      float* out = in_place ? dx.get() : dy.get();
      cuda::GpuTimer timer;
      timer.start();
      cuda::layer_norm(dx.get(), rows, C, dg.get(), db.get(), 1e-6f, out);
      const float ms = timer.stop_ms();
      const std::vector<float> got = (in_place ? dx : dy).to_host(x.size());
      const Diff d = compare(got, ref);
      EXPECT_LE(d.rel, 1e-4) << describe(d) << " (row " << d.worst / C << ")";
      EXPECT_EQ(d.nonfinite, 0) << describe(d);
      if (!in_place) report("layer_norm " + std::to_string(rows) + "x" + std::to_string(C), "fp32", d.rel, -1, ms);
    }
  }
}

// ---- attention with the task-vector patch and capture -------------------------------------------------

struct AttnCase {
  int N, H, dh;
};

TEST(CudaAttention, MatchesCpuWithPatchAndCapture) {
  VTV_REQUIRE_GPU();
  // The model's sequences (zero-shot 50 / 99, one-shot 148 / 197) at its head dims, and the tiny model's.
  const AttnCase cases[] = {{50, 16, 64}, {148, 16, 64}, {99, 16, 32}, {197, 16, 32}, {50, 4, 16}, {99, 4, 8}, {197, 4, 16}};
  for (const AttnCase& c : cases) {
    const int64_t B = 3, C = int64_t(c.H) * c.dh;
    const int shift = (c.N == 50 || c.N == 99) ? kZeroShotShift : 0;
    const int full = c.N + shift;  // one-shot positions in the means table
    const float scale = static_cast<float>(std::pow(double(c.dh), -0.5));
    for (bool patching : {false, true}) {
      SCOPED_TRACE("N " + std::to_string(c.N) + " H " + std::to_string(c.H) + " dh " + std::to_string(c.dh) +
                   (patching ? " patched" : ""));
      const std::vector<float> qkv = random_vector(static_cast<size_t>(B * c.N * 3 * C), uint32_t(c.N * 10 + c.dh), 1.5f);
      const std::vector<float> means = random_vector(static_cast<size_t>(full) * C, uint32_t(c.N + 5));
      // Mask: a layer's bits start at a non-byte-aligned offset, as in the engine's layout.
      const int64_t bit_offset = 13, bits = bit_offset + int64_t(c.H) * c.N + 5, stride = (bits + 7) / 8;
      std::vector<uint8_t> mask(static_cast<size_t>(B * stride), 0);
      std::mt19937 rng(uint32_t(c.N));
      auto set_bit = [&](int64_t b, int64_t i) { mask[static_cast<size_t>(b * stride + (i >> 3))] |= uint8_t(1u << (i & 7)); };
      for (int64_t i = 0; i < int64_t(c.H) * c.N; ++i) {
        if (rng() % 100 < 30) set_bit(0, bit_offset + i);      // sample 0: ~30% of (head, position)
        if (i < c.N) set_bit(1, bit_offset + i);               // sample 1: head 0 entirely (K/V never loaded)
      }                                                        // sample 2: nothing patched
      cpu::HeadPatch cp;
      cp.mask = mask.data();
      cp.mask_stride = stride;
      cp.bit_offset = bit_offset;
      cp.means = means.data();
      cp.position_shift = shift;
      std::vector<float> ref(static_cast<size_t>(B * c.N * C));
      const std::vector<float> cap0 = random_vector(static_cast<size_t>(c.N * C), 77, 0.5f);  // capture accumulates (+=)
      std::vector<float> cap_ref = cap0;
      cpu::mha_attention(pool(), qkv.data(), B, c.N, c.H, c.dh, scale, ref.data(), patching ? &cp : nullptr,
                         cap_ref.data());

      DeviceBuffer<float> dqkv(qkv), dmeans(means), dout(ref.size()), dcap(cap0);
      DeviceBuffer<uint8_t> dmask(mask);
      dout.poison();
      cuda::HeadPatch gp;
      gp.mask = dmask.get();
      gp.mask_stride = stride;
      gp.bit_offset = bit_offset;
      gp.means = dmeans.get();
      gp.position_shift = shift;
      cuda::GpuTimer timer;
      timer.start();
      cuda::mha_attention(dqkv.get(), B, c.N, c.H, c.dh, scale, dout.get(), patching ? &gp : nullptr);
      const float ms = timer.stop_ms();
      cuda::add_batch_sum(dout.get(), B, int64_t(c.N) * C, dcap.get());
      const std::vector<float> got = dout.to_host(ref.size());
      const std::vector<float> cap = dcap.to_host(cap0.size());
      const Diff d = compare(got, ref), dc = compare(cap, cap_ref);
      auto where = [&](int64_t i) {
        return " (sample " + std::to_string(i / (int64_t(c.N) * C)) + ", position " + std::to_string((i / C) % c.N) +
               ", head " + std::to_string((i % C) / c.dh) + ", dim " + std::to_string(i % c.dh) + ")";
      };
      EXPECT_EQ(d.nonfinite, 0) << describe(d) << where(d.first_nonfinite);
      EXPECT_LE(d.rel, 1e-4) << describe(d) << where(d.worst);
      EXPECT_LE(dc.rel, 1e-4) << "capture: " << describe(dc);
      report("attention N" + std::to_string(c.N) + " dh" + std::to_string(c.dh) + (patching ? " patched" : ""), "fp32",
             std::max(d.rel, dc.rel), -1, ms);
    }
  }
}

// ---- patch gathering and token assembly ---------------------------------------------------------------

// GraphCache: the first run of a key captures, later runs replay what was captured (the key must name
// everything a graph bakes in), and a capture that fails (here: work on the legacy stream during a
// thread-local capture) is recorded, then (FallBack) turns graphs off and runs the launches directly.
TEST(CudaGraphCache, CapturesOnceReplaysAndFallsBackWhenACaptureFails) {
  VTV_REQUIRE_GPU();
  cudaStream_t s = nullptr;
  VTV_CUDA_CHECK(cudaStreamCreate(&s));
  cuda::DeviceBuffer<uint8_t> buf(1024);
  cuda::GraphCache cache(true, cuda::OnCaptureFailure::FallBack);
  int calls = 0;
  auto fill = [&](int byte, cudaStream_t on) {
    return [&, byte, on] {
      ++calls;
      VTV_CUDA_CHECK(cudaMemsetAsync(buf.get(), byte, 1024, on));
    };
  };
  auto first_byte = [&] {
    VTV_CUDA_CHECK(cudaStreamSynchronize(s));
    return static_cast<int>(buf.to_host(1)[0]);
  };
  cache.run({1}, s, fill(1, s));
  EXPECT_EQ(first_byte(), 1);
  EXPECT_EQ(cache.size(), 1);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cache.capture_error(), "");
  cache.run({1}, s, fill(2, s));  // the same key: the graph of fill(1) replays, fill(2) never runs
  EXPECT_EQ(first_byte(), 1);
  EXPECT_EQ(calls, 1);
  cache.run({2, 7}, s, fill(3, nullptr));  // legacy stream inside a capture: the capture fails
  EXPECT_FALSE(cache.enabled());
  EXPECT_EQ(cache.capture_failures(), 1);
  EXPECT_NE(cache.capture_error().find("capture of key [2, 7] failed"), std::string::npos) << cache.capture_error();
  EXPECT_EQ(first_byte(), 3) << "after a failed capture the launches must run directly";
  EXPECT_EQ(calls, 3);  // once inside the failed capture, once directly
  cache.run({1}, s, fill(4, s));  // graphs off: direct from now on
  EXPECT_EQ(first_byte(), 4);
  cache.clear();
  VTV_CUDA_CHECK(cudaStreamDestroy(s));
}

// Under OnCaptureFailure::Throw (VTV_GRAPH_CAPTURE=strict, set for every ctest run) a failed capture
// is an error naming the key and the CUDA error, so a test whose graphs fail to capture fails.
TEST(CudaGraphCache, AFailedCaptureThrowsWhenStrict) {
  VTV_REQUIRE_GPU();
  cudaStream_t s = nullptr;
  VTV_CUDA_CHECK(cudaStreamCreate(&s));
  cuda::DeviceBuffer<uint8_t> buf(64);
  cuda::GraphCache cache(true, cuda::OnCaptureFailure::Throw);
  try {
    cache.run({5}, s, [&] { VTV_CUDA_CHECK(cudaMemsetAsync(buf.get(), 1, 64, nullptr)); });
    ADD_FAILURE() << "a failed capture did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA graph capture of key [5] failed"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.capture_failures(), 1);
  cudaGetLastError();
  VTV_CUDA_CHECK(cudaStreamDestroy(s));
}

TEST(CudaPatchEmbed, GatherAndAssemblyMatchTheTokenLayout) {
  VTV_REQUIRE_GPU();
  const int E = 40, D = 24;
  const int64_t samples = 3, canvas_floats = int64_t(3) * kImage * kImage;
  const std::vector<float> canvases = random_vector(static_cast<size_t>(2 * canvas_floats), 5);
  const std::vector<int32_t> canvas_of = {1, 0, 1};
  const std::vector<float> cls = random_vector(static_cast<size_t>(E), 6), pos = random_vector(static_cast<size_t>(197 * E), 7);
  const std::vector<float> mask_token = random_vector(static_cast<size_t>(D), 8), dpos = random_vector(static_cast<size_t>(197 * D), 9);
  for (Mode mode : {Mode::OneShot, Mode::ZeroShot}) {
    SCOPED_TRACE(mode == Mode::OneShot ? "one-shot" : "zero-shot");
    const std::vector<int> ids_i = model::encoder_patch_ids(mode), dids_i = model::decoder_patch_ids(mode);
    const std::vector<int32_t> ids(ids_i.begin(), ids_i.end()), dids(dids_i.begin(), dids_i.end());
    const int Np = int(ids.size()), Ne = Np + 1, Nd = int(dids.size()) + 1;
    std::vector<int32_t> slot(kPatches, -1);
    for (int i = 0; i < Np; ++i) slot[static_cast<size_t>(ids[static_cast<size_t>(i)])] = i + 1;

    DeviceBuffer<float> dcanv(canvases), dpatches(static_cast<size_t>(samples * Np * 768));
    DeviceBuffer<int32_t> dof(canvas_of), dids_enc(ids), dids_dec(dids), dslot(slot);
    dpatches.poison();
    cuda::gather_patches(dcanv.get(), dof.get(), samples, dids_enc.get(), Np, dpatches.get());
    const std::vector<float> patches = dpatches.to_host(static_cast<size_t>(samples * Np * 768));
    for (int64_t s = 0; s < samples; ++s) {
      for (int t = 0; t < Np; ++t) {
        const int id = ids[static_cast<size_t>(t)];
        for (int e = 0; e < 768; ++e) {
          const int ch = e / 256, y = (e / 16) % 16, x = e % 16;
          const float want = canvases[static_cast<size_t>(canvas_of[static_cast<size_t>(s)] * canvas_floats +
                                             (ch * kImage + (id / 14) * 16 + y) * kImage + (id % 14) * 16 + x)];
          ASSERT_EQ(patches[static_cast<size_t>((s * Np + t) * 768 + e)], want) << "sample " << s << " token " << t << " element " << e;
        }
      }
    }

    const std::vector<float> embedded = random_vector(static_cast<size_t>(samples * Np * E), 10);
    DeviceBuffer<float> demb(embedded), dcls(cls), dpos_e(pos), dx(static_cast<size_t>(samples * Ne * E));
    dx.poison();
    cuda::assemble_encoder_tokens(demb.get(), dcls.get(), dpos_e.get(), dids_enc.get(), samples, Ne, E, dx.get());
    const std::vector<float> x = dx.to_host(static_cast<size_t>(samples * Ne * E));
    for (int64_t s = 0; s < samples; ++s) {
      for (int t = 0; t < Ne; ++t) {
        for (int j = 0; j < E; ++j) {
          const float want = t == 0 ? cls[static_cast<size_t>(j)] + pos[static_cast<size_t>(j)]
                                    : embedded[static_cast<size_t>((s * Np + t - 1) * E + j)] + pos[static_cast<size_t>((1 + ids[static_cast<size_t>(t - 1)]) * E + j)];
          ASSERT_EQ(x[static_cast<size_t>((s * Ne + t) * E + j)], want) << "encoder: sample " << s << " token " << t << " dim " << j;
        }
      }
    }

    const std::vector<float> emb = random_vector(static_cast<size_t>(samples * Ne * D), 11);
    DeviceBuffer<float> demb2(emb), dmask(mask_token), ddpos(dpos), dxd(static_cast<size_t>(samples * Nd * D)),
        dhead(static_cast<size_t>(samples * (Nd - 1) * D));
    dxd.poison();
    dhead.poison();
    cuda::assemble_decoder_tokens(demb2.get(), Ne, dmask.get(), ddpos.get(), dids_dec.get(), dslot.get(), samples, Nd, D,
                                  dxd.get());
    cuda::drop_cls_rows(dxd.get(), samples, Nd, D, dhead.get());
    const std::vector<float> xd = dxd.to_host(static_cast<size_t>(samples * Nd * D));
    const std::vector<float> head = dhead.to_host(static_cast<size_t>(samples * (Nd - 1) * D));
    for (int64_t s = 0; s < samples; ++s) {
      for (int t = 0; t < Nd; ++t) {
        for (int j = 0; j < D; ++j) {
          float want;
          if (t == 0) {
            want = emb[static_cast<size_t>(s * Ne * D + j)] + dpos[static_cast<size_t>(j)];
          } else {
            const int id = dids[static_cast<size_t>(t - 1)];
            // The visible patches' slots, written out independently of the kernel's lookup table.
            const bool visible = mode == Mode::OneShot ? (id / 14 < 7 || id % 14 < 7) : (id / 14 >= 7 && id % 14 < 7);
            const float src = visible ? emb[static_cast<size_t>((s * Ne + slot[static_cast<size_t>(id)]) * D + j)] : mask_token[static_cast<size_t>(j)];
            want = src + dpos[static_cast<size_t>((1 + id) * D + j)];
          }
          ASSERT_EQ(xd[static_cast<size_t>((s * Nd + t) * D + j)], want) << "decoder: sample " << s << " token " << t << " dim " << j;
          if (t >= 1) {
            ASSERT_EQ(head[static_cast<size_t>((s * (Nd - 1) + t - 1) * D + j)], want) << "head rows: sample " << s << " token " << t;
          }
        }
      }
    }
  }
}

// ---- token losses ---------------------------------------------------------------------------------

// token_scores against the CPU token loss (model::score_tokens) on random logits, in both modes, for a
// small odd vocabulary and the real one (1024, several columns per lane). Targets hit the argmax at about
// half the positions, so the accuracies are neither 0 nor 1.
TEST(CudaTokenScores, MatchTheCpuTokenLoss) {
  VTV_REQUIRE_GPU();
  for (Mode mode : {Mode::ZeroShot, Mode::OneShot}) {
    for (int vocab : {37, 1024}) {
      SCOPED_TRACE(std::string(mode == Mode::ZeroShot ? "zero-shot" : "one-shot") + " vocab " + std::to_string(vocab));
      const int n = 5, P = dec_tokens(mode) - 1;
      const std::vector<float> logits = random_vector(size_t(n) * P * vocab, 700 + vocab, 4.0f);
      std::vector<int32_t> argmax(size_t(n) * P), grids(size_t(n) * kPatches), targets(size_t(n) * kQuadrantTokens);
      cpu::argmax_rows(pool(), logits.data(), int64_t(n) * P, vocab, argmax.data());
      std::mt19937 rng(vocab);
      for (int s = 0; s < n; ++s) {
        for (int q = 0; q < kPatches; ++q) grids[size_t(s) * kPatches + q] = argmax[size_t(s) * P + q % P];
        for (int i = 0; i < kQuadrantTokens; ++i) {
          const int row = model::quadrant_logit_row(mode, i);
          targets[size_t(s) * kQuadrantTokens + i] =
              rng() % 2 ? argmax[size_t(s) * P + row] : static_cast<int32_t>(rng() % uint32_t(vocab));
        }
      }
      DeviceBuffer<float> d_logits(logits), d_losses{static_cast<size_t>(n)}, d_metrics{static_cast<size_t>(n)};
      DeviceBuffer<int32_t> d_grids(grids), d_targets(targets);
      for (Loss loss : {Loss::TokenCE, Loss::TokenAccuracy}) {
        d_losses.poison();
        d_metrics.poison();
        cuda::token_scores(loss, mode, d_logits.get(), d_grids.get(), n, vocab, d_targets.get(), d_losses.get(),
                           d_metrics.get());
        const std::vector<float> losses = d_losses.to_host(size_t(n)), metrics = d_metrics.to_host(size_t(n));
        for (int s = 0; s < n; ++s) {
          const model::Score ref = model::score_tokens(loss, mode, logits.data() + size_t(s) * P * vocab,
                                                       argmax.data() + size_t(s) * P, vocab,
                                                       targets.data() + size_t(s) * kQuadrantTokens);
          EXPECT_EQ(metrics[size_t(s)], ref.metric) << "sample " << s;
          // The same double sums in another order: equal to within a few float ulps.
          EXPECT_NEAR(losses[size_t(s)], ref.loss, 4e-7 * std::max(1.0f, std::fabs(ref.loss))) << "sample " << s;
          EXPECT_GT(ref.metric, 0.0f);
          EXPECT_LT(ref.metric, 1.0f);
        }
      }
    }
  }
  EXPECT_THROW(cuda::token_scores(Loss::MSE, Mode::ZeroShot, nullptr, nullptr, 1, 8, nullptr, nullptr, nullptr), Error);
}

}  // namespace
}  // namespace vtv::test

#else  // !VTV_WITH_CUDA

VTV_CUDA_NOT_COMPILED_IN_TEST(CudaKernels)

#endif
