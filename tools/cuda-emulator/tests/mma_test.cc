// The tensor-core instructions on the emulator: mma.sync m16n8k16 (warp) and wgmma m64nNk16
// (warpgroup, operands in registers or in shared memory behind matrix descriptors), through the
// wrappers the kernels use, against products computed here from operands laid out by hand as the PTX
// ISA's fragment and shared-memory layout tables describe them.
#include "cuda/mma_bf16.cuh"
#include "cuda/ptx.cuh"

#include <cstdint>
#include <random>

#include "emu_test.h"

using emu_test::bf16_bits;
using emu_test::Emulator;
using emu_test::run;
using namespace vtv::cuda;

namespace {

// Small integers: their bf16 products and sums are exact in fp32, so results compare exactly.
std::vector<float> small_ints(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = float(int(rng() % 7) - 3);
  return v;
}

uint32_t pack(float lo, float hi) { return uint32_t(bf16_bits(lo)) | (uint32_t(bf16_bits(hi)) << 16); }

}  // namespace

// mma.m16n8k16 .row.col: lane (g, t) = (lane / 4, lane % 4) holds a0 = A[g][2t, 2t+1], a1 = A[g+8][..],
// a2 = A[g][2t+8, 2t+9], a3 = A[g+8][2t+8, ..]; b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]; and
// d0, d1 = D[g][2t, 2t+1], d2, d3 = D[g+8][2t, 2t+1].
TEST_F(Emulator, MmaSyncM16n8k16Fragments) {
  const auto A = small_ints(16 * 16, 1), B = small_ints(16 * 8, 2), C = small_ints(16 * 8, 3);
  std::vector<uint32_t> frag(32 * 6);
  std::vector<float> c_frag(32 * 4);
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    auto a = [&](int r, int k) { return A[size_t(r * 16 + k)]; };
    auto b = [&](int k, int n) { return B[size_t(k * 8 + n)]; };
    uint32_t* f = &frag[size_t(l * 6)];
    f[0] = pack(a(g, 2 * t), a(g, 2 * t + 1));
    f[1] = pack(a(g + 8, 2 * t), a(g + 8, 2 * t + 1));
    f[2] = pack(a(g, 2 * t + 8), a(g, 2 * t + 9));
    f[3] = pack(a(g + 8, 2 * t + 8), a(g + 8, 2 * t + 9));
    f[4] = pack(b(2 * t, g), b(2 * t + 1, g));
    f[5] = pack(b(2 * t + 8, g), b(2 * t + 9, g));
    for (int i = 0; i < 4; ++i) c_frag[size_t(l * 4 + i)] = C[size_t((g + (i >= 2 ? 8 : 0)) * 8 + 2 * t + (i & 1))];
  }
  uint32_t* f = emu_test::device_copy(frag);
  float* d = emu_test::device_copy(c_frag);
  ASSERT_EQ(run(dim3(1), dim3(64), 0, [f, d] {
              const unsigned l = threadIdx.x % 32;
              if (threadIdx.x >= 32) {  // the second warp multiplies zeros: warps are independent
                uint32_t z[4] = {0, 0, 0, 0}, zb[2] = {0, 0};
                float acc[4] = {0, 0, 0, 0};
                mma_bf16_16816(acc, z, zb);
                return;
              }
              const uint32_t a[4] = {f[l * 6], f[l * 6 + 1], f[l * 6 + 2], f[l * 6 + 3]};
              const uint32_t b[2] = {f[l * 6 + 4], f[l * 6 + 5]};
              float acc[4] = {d[l * 4], d[l * 4 + 1], d[l * 4 + 2], d[l * 4 + 3]};
              mma_bf16_16816(acc, a, b);
              for (int i = 0; i < 4; ++i) d[l * 4 + i] = acc[i];
            }),
            "");
  const auto h = emu_test::host_copy(d, 128);
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < 4; ++i) {
      const int row = l / 4 + (i >= 2 ? 8 : 0), col = 2 * (l % 4) + (i & 1);
      float want = C[size_t(row * 8 + col)];
      for (int k = 0; k < 16; ++k) want += A[size_t(row * 16 + k)] * B[size_t(k * 8 + col)];
      EXPECT_EQ(h[size_t(l * 4 + i)], want) << "lane " << l << " d" << i;
    }
}

// ---- wgmma ------------------------------------------------------------------------------------------

namespace {

// A K-major operand (rows x K, element (row, k)) written into a shared-memory image, without swizzling:
// core matrices of 8 rows x 8 k (each row 16 contiguous bytes, 128 bytes per core matrix), the core
// matrix (row / 8, k / 8) at base + (row / 8) * sbo + (k / 8) * lbo.
void place_interleaved(std::vector<uint16_t>& smem, size_t base, const std::vector<float>& m, int rows, int K, size_t lbo,
                       size_t sbo) {
  for (int cr = 0; cr < rows / 8; ++cr)
    for (int ck = 0; ck < K / 8; ++ck) {
      const size_t core = base + size_t(cr) * sbo + size_t(ck) * lbo;
      for (int r = 0; r < 8; ++r)
        for (int c = 0; c < 8; ++c)
          smem[(core + size_t(r) * 16 + size_t(c) * 2) / 2] = bf16_bits(m[size_t((cr * 8 + r) * K + ck * 8 + c)]);
    }
}

// The 128-byte swizzle: atoms of 8 rows x 64 k (128 bytes per row), the atom of rows 8a .. 8a+7 at
// base + a * 1024; in row r of an atom, the 16-byte chunk c of k is stored at chunk c XOR r.
void place_swizzled128(std::vector<uint16_t>& smem, size_t base, const std::vector<float>& m, int rows) {
  for (int row = 0; row < rows; ++row)
    for (int k = 0; k < 64; ++k) {
      const size_t chunk = size_t((k / 8) ^ (row % 8));
      smem[(base + size_t(row / 8) * 1024 + size_t(row % 8) * 128 + chunk * 16 + size_t(k % 8) * 2) / 2] =
          bf16_bits(m[size_t(row * 64 + k)]);
    }
}

// D (64 x N) of thread q of the warpgroup: warp w = q / 32, (g, t) = (lane / 4, lane % 4); per 8-column
// block j, d[4j + e] = D[16w + g + 8 (e / 2)][8j + 2t + e % 2].
std::pair<int, int> d_coord(int q, int i) {
  const int w = q / 32, g = (q % 32) / 4, t = q % 4, j = i / 4, e = i % 4;
  return {16 * w + g + 8 * (e / 2), 8 * j + 2 * t + e % 2};
}

// Copies a shared-memory image from global memory into the block's dynamic shared memory.
void load_image(const uint16_t* image, size_t halves) {
  uint16_t* s = static_cast<uint16_t*>(vtv_emu::dynamic_shared());
  for (size_t i = threadIdx.x; i < halves; i += blockDim.x) s[i] = image[i];
  __syncthreads();
}

template <int N>
void check_wgmma_interleaved(bool a_in_registers) {
  const int K = 16;
  const auto A = small_ints(64 * K, 10 + N), B = small_ints(size_t(N) * K, 20 + N), C = small_ints(64 * size_t(N), 30);
  // A: core matrices adjacent in K contiguous (lbo 128), 8-row groups 256 bytes apart. B (N x K) at
  // 8192: the two K halves N * 16 bytes apart (lbo), 8-row groups 128 bytes apart (sbo).
  const size_t b_base = 8192, bytes = b_base + size_t(N) * 32;
  std::vector<uint16_t> image(bytes / 2);
  place_interleaved(image, 0, A, 64, K, 128, 256);
  place_interleaved(image, b_base, B, N, K, size_t(N) * 16, 128);
  // A in registers: the mma.m16n8k16 layout per warp (rows 16w ..).
  std::vector<uint32_t> a_regs(128 * 4);
  for (int q = 0; q < 128; ++q) {
    const int w = q / 32, g = (q % 32) / 4, t = q % 4;
    auto a = [&](int r, int k) { return A[size_t((16 * w + r) * K + k)]; };
    a_regs[size_t(q * 4 + 0)] = pack(a(g, 2 * t), a(g, 2 * t + 1));
    a_regs[size_t(q * 4 + 1)] = pack(a(g + 8, 2 * t), a(g + 8, 2 * t + 1));
    a_regs[size_t(q * 4 + 2)] = pack(a(g, 2 * t + 8), a(g, 2 * t + 9));
    a_regs[size_t(q * 4 + 3)] = pack(a(g + 8, 2 * t + 8), a(g + 8, 2 * t + 9));
  }
  std::vector<float> c_frag(128 * size_t(N / 2));
  for (int q = 0; q < 128; ++q)
    for (int i = 0; i < N / 2; ++i) {
      const auto [r, c] = d_coord(q, i);
      c_frag[size_t(q * (N / 2) + i)] = C[size_t(r * N + c)];
    }
  uint16_t* img = emu_test::device_copy(image);
  uint32_t* ar = emu_test::device_copy(a_regs);
  float* d = emu_test::device_copy(c_frag);
  const std::string err = run(dim3(1), dim3(128), bytes, [=] {
    load_image(img, bytes / 2);
    char* s = static_cast<char*>(vtv_emu::dynamic_shared());
    const int q = int(threadIdx.x);
    float acc[N / 2];
    for (int i = 0; i < N / 2; ++i) acc[i] = d[q * (N / 2) + i];
    const uint64_t da = wgmma_desc(s, 128, 256, WgmmaSwizzle::None);
    const uint64_t db = wgmma_desc(s + b_base, N * 16, 128, WgmmaSwizzle::None);
    wgmma_fence();
    if (a_in_registers) {
      const uint32_t a[4] = {ar[q * 4], ar[q * 4 + 1], ar[q * 4 + 2], ar[q * 4 + 3]};
      wgmma_m64k16_bf16_rs<N>(acc, a, db, 1);
    } else {
      wgmma_m64k16_bf16_ss<N>(acc, da, db, 1);
    }
    wgmma_commit();
    wgmma_wait<0>();
    for (int i = 0; i < N / 2; ++i) d[q * (N / 2) + i] = acc[i];
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(d, c_frag.size());
  int wrong = 0;
  for (int q = 0; q < 128; ++q)
    for (int i = 0; i < N / 2; ++i) {
      const auto [r, c] = d_coord(q, i);
      float want = C[size_t(r * N + c)];
      for (int k = 0; k < K; ++k) want += A[size_t(r * K + k)] * B[size_t(c * K + k)];
      if (h[size_t(q * (N / 2) + i)] != want && ++wrong < 5)
        ADD_FAILURE() << "thread " << q << " d[" << i << "] = D[" << r << "][" << c << "]: " << h[size_t(q * (N / 2) + i)]
                      << ", want " << want;
    }
  EXPECT_EQ(wrong, 0);
}

}  // namespace

TEST_F(Emulator, WgmmaN64SharedOperandsNoSwizzle) { check_wgmma_interleaved<64>(false); }
TEST_F(Emulator, WgmmaN256SharedOperandsNoSwizzle) { check_wgmma_interleaved<256>(false); }
TEST_F(Emulator, WgmmaN128ARegistersNoSwizzle) { check_wgmma_interleaved<128>(true); }

// K = 64 in 128-byte swizzled atoms: four k16 steps, each a descriptor 32 bytes further into the atom
// rows, chained in one group (the first with scale_d 0, which ignores the accumulators' old values).
TEST_F(Emulator, WgmmaN128Swizzle128ChainsFourKSteps) {
  constexpr int N = 128;
  const auto A = small_ints(64 * 64, 40), B = small_ints(N * 64, 41);
  const size_t b_base = 8 * 1024, bytes = b_base + (N / 8) * 1024;
  std::vector<uint16_t> image(bytes / 2);
  place_swizzled128(image, 0, A, 64);
  place_swizzled128(image, b_base, B, N);
  uint16_t* img = emu_test::device_copy(image);
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 128 * (N / 2) * sizeof(float)), cudaSuccess);
  const std::string err = run(dim3(1), dim3(128), bytes, [=] {
    load_image(img, bytes / 2);
    char* s = static_cast<char*>(vtv_emu::dynamic_shared());
    float acc[N / 2];
    for (float& x : acc) x = 1e9f;  // scale_d 0 ignores it
    wgmma_fence();
    for (int ks = 0; ks < 4; ++ks) {
      const uint64_t da = wgmma_desc(s + 32 * ks, 0, 1024, WgmmaSwizzle::B128);
      const uint64_t db = wgmma_desc(s + b_base + 32 * ks, 0, 1024, WgmmaSwizzle::B128);
      wgmma_m64k16_bf16_ss<N>(acc, da, db, ks > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    for (int i = 0; i < N / 2; ++i) d[threadIdx.x * (N / 2) + i] = acc[i];
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(d, 128 * (N / 2));
  int wrong = 0;
  for (int q = 0; q < 128; ++q)
    for (int i = 0; i < N / 2; ++i) {
      const auto [r, c] = d_coord(q, i);
      float want = 0;
      for (int k = 0; k < 64; ++k) want += A[size_t(r * 64 + k)] * B[size_t(c * 64 + k)];
      if (h[size_t(q * (N / 2) + i)] != want && ++wrong < 5)
        ADD_FAILURE() << "thread " << q << " D[" << r << "][" << c << "]: " << h[size_t(q * (N / 2) + i)] << ", want " << want;
    }
  EXPECT_EQ(wrong, 0);
}

// The accumulators are written at the wait that retires the group: before it they hold the old values.
TEST_F(Emulator, WgmmaResultsLandAtTheWait) {
  float* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 128 * 3 * sizeof(float)), cudaSuccess);
  const std::string err = run(dim3(1), dim3(128), 4096, [out] {
    uint16_t* s = static_cast<uint16_t*>(vtv_emu::dynamic_shared());
    for (int i = int(threadIdx.x); i < 2048; i += 128) s[i] = 0x3F80;  // bf16 1.0 everywhere
    __syncthreads();
    const uint64_t desc = wgmma_desc(s, 128, 256, WgmmaSwizzle::None);
    float acc[32];
    for (float& x : acc) x = 5.0f;
    wgmma_fence();
    wgmma_m64k16_bf16_ss<64>(acc, desc, desc, 1);
    wgmma_commit();
    out[threadIdx.x] = acc[0];  // in flight: still 5
    wgmma_fence();
    wgmma_m64k16_bf16_ss<64>(acc, desc, desc, 1);  // chained on the first one's result
    wgmma_commit();
    wgmma_wait<1>();
    out[128 + threadIdx.x] = acc[0];  // the first group landed: 5 + 16
    wgmma_wait<0>();
    out[256 + threadIdx.x] = acc[0];  // 5 + 16 + 16
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 384);
  for (int q = 0; q < 128; ++q) {
    EXPECT_EQ(h[size_t(q)], 5.0f);
    EXPECT_EQ(h[size_t(128 + q)], 21.0f);
    EXPECT_EQ(h[size_t(256 + q)], 37.0f);
  }
}

// Shared memory a wgmma in flight reads may not be written by cp.async until a wgmma.wait_group of the
// warpgroup has retired it: not as the copy issues, nor as it lands (the hardware may write at either).
TEST_F(Emulator, CpAsyncIntoWgmmaOperandsInFlightIsARace) {
  auto copy_into_operand = [](int when) {
    uint16_t* src = nullptr;  // allocated per run: the reset after each frees it
    EXPECT_EQ(cudaMalloc(&src, 16), cudaSuccess);
    EXPECT_EQ(cudaMemset(src, 0, 16), cudaSuccess);
    const std::string e = run(dim3(1), dim3(128), 8192, [src, when] {
      char* s = static_cast<char*>(vtv_emu::dynamic_shared());
      for (int i = int(threadIdx.x); i < 4096; i += 128) reinterpret_cast<uint16_t*>(s)[i] = 0x3F80;
      __syncthreads();
      const uint64_t desc = wgmma_desc(s, 128, 256, WgmmaSwizzle::None);  // reads bytes 0 .. 4095
      float acc[32] = {};
      if (when == 2) {  // issued before the wgmma, landing (at its wait) while the wgmma is in flight
        cp_async_16(s + 16 * threadIdx.x, src);
        cp_async_commit();
      }
      wgmma_fence();
      wgmma_m64k16_bf16_ss<64>(acc, desc, desc, 1);
      wgmma_commit();
      if (when == 0) wgmma_wait<0>();  // retired first: the copy is fine
      if (when != 2) {
        cp_async_16(s + 16 * threadIdx.x, src);
        cp_async_commit();
      }
      cp_async_wait<0>();
      wgmma_wait<0>();
      // A copy outside the operands is fine while a wgmma is in flight.
      wgmma_fence();
      wgmma_m64k16_bf16_ss<64>(acc, desc, desc, 1);
      wgmma_commit();
      cp_async_16(s + 4096 + 16 * threadIdx.x, src);
      cp_async_commit();
      cp_async_wait<0>();
      wgmma_wait<0>();
    });
    cudaDeviceReset();
    return e;
  };
  EXPECT_EQ(copy_into_operand(0), "");
  const std::string issued = copy_into_operand(1), landed = copy_into_operand(2);
  EXPECT_NE(issued.find("cp.async issues into shared offset"), std::string::npos) << issued;
  EXPECT_NE(issued.find("write-after-read race"), std::string::npos) << issued;
  EXPECT_NE(landed.find("cp.async lands into shared offset"), std::string::npos) << landed;
}

TEST_F(Emulator, WgmmaMisuseIsReported) {
  auto misuse = [](int what) {
    const std::string e = run(dim3(1), dim3(what == 2 ? 96 : 128), 4096, [what] {
      char* s = static_cast<char*>(vtv_emu::dynamic_shared());
      float acc[32] = {};
      if (what != 0) wgmma_fence();
      const uint64_t desc = wgmma_desc(s + (what == 3 && threadIdx.x == 40 ? 256 : 0), 128, 256, WgmmaSwizzle::None);
      wgmma_m64k16_bf16_ss<64>(acc, desc, what == 4 ? wgmma_desc(s + 3968, 128, 256, WgmmaSwizzle::None) : desc, 1);
      wgmma_commit();
      if (what != 1) wgmma_wait<0>();
    });
    cudaDeviceReset();
    return e;
  };
  EXPECT_NE(misuse(0).find("without a wgmma.fence"), std::string::npos);
  EXPECT_NE(misuse(1).find("wgmma result(s) never waited for"), std::string::npos);
  EXPECT_NE(misuse(2).find("a block of 96 threads"), std::string::npos);
  EXPECT_NE(misuse(3).find("thread 40 of the warpgroup executes a different shape or descriptor"), std::string::npos);
  const std::string past = misuse(4);
  EXPECT_NE(past.find("past the block's 4096 bytes of dynamic shared memory"), std::string::npos) << past;
}
