// cp.async and ldmatrix on the emulator, through the wrappers the kernels use (native/src/cuda/ptx.cuh),
// against expectations built by hand from the PTX ISA.
#include "cuda/ptx.cuh"

#include <cstdint>

#include "emu_test.h"

using emu_test::Emulator;
using emu_test::run;
using namespace vtv::cuda;

namespace {

std::vector<uint32_t> iota_words(size_t n, uint32_t from) {
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = from + uint32_t(i);
  return v;
}

}  // namespace

// A copy lands in shared memory at the wait that retires its group, not before: reads before the wait
// see the old bytes (the poison), groups retire oldest first, and wait<N> leaves N in flight.
TEST_F(Emulator, CpAsyncLandsAtTheWaitThatRetiresItsGroup) {
  uint32_t* src = emu_test::device_copy(iota_words(64, 1000));
  uint32_t* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 32 * 6 * sizeof(uint32_t)), cudaSuccess);
  const std::string err = run(dim3(1), dim3(32), 1024, [src, out] {
    uint32_t* s = static_cast<uint32_t*>(vtv_emu::dynamic_shared());
    const unsigned t = threadIdx.x;
    if (t < 16) {
      cp_async_16(s + 4 * t, src + 4 * t);  // group 0: words 0..63
      cp_async_commit();
      cp_async_4(s + 128 + t, src + t);     // group 1: words 128..143
      cp_async_commit();
      out[t] = s[4 * t];                    // before any wait: the poison
      cp_async_wait<1>();
      out[32 + t] = s[4 * t + 3];           // group 0 landed
      out[64 + t] = s[128 + t];             // group 1 not yet
      cp_async_wait<0>();
      out[96 + t] = s[128 + t];
    }
    __syncthreads();
    out[128 + t] = s[2 * t];  // every word of group 0 is visible to every thread after the barrier
    out[160 + t] = s[2 * t + 1];
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 192);
  for (unsigned t = 0; t < 16; ++t) {
    EXPECT_EQ(h[t], 0xFFFFFFFFu) << t;
    EXPECT_EQ(h[32 + t], 1000 + 4 * t + 3) << t;
    EXPECT_EQ(h[64 + t], 0xFFFFFFFFu) << t;
    EXPECT_EQ(h[96 + t], 1000 + t) << t;
  }
  for (unsigned t = 0; t < 32; ++t) {
    EXPECT_EQ(h[128 + t], 1000 + 2 * t);
    EXPECT_EQ(h[160 + t], 1000 + 2 * t + 1);
  }
}

TEST_F(Emulator, CpAsyncZfillReadsOnlySrcBytes) {
  std::vector<uint8_t> bytes(32);
  for (int i = 0; i < 32; ++i) bytes[size_t(i)] = uint8_t(i + 1);
  uint8_t* src = emu_test::device_copy(bytes);
  uint8_t* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 48), cudaSuccess);
  const std::string err = run(dim3(1), dim3(1), 64, [src, out] {
    uint8_t* s = static_cast<uint8_t*>(vtv_emu::dynamic_shared());
    cp_async_16_zfill(s, src + 16, 5);       // 5 bytes read, 11 zeros
    cp_async_16_zfill(s + 16, nullptr, 0);   // nothing read: any address
    cp_async_16_zfill(s + 32, src, 16);
    cp_async_commit();
    cp_async_wait<0>();
    for (int i = 0; i < 48; ++i) out[i] = s[i];
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 48);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(h[size_t(i)], i < 5 ? i + 17 : 0) << i;
  for (int i = 16; i < 32; ++i) EXPECT_EQ(h[size_t(i)], 0) << i;
  for (int i = 32; i < 48; ++i) EXPECT_EQ(h[size_t(i)], i - 31) << i;
}

TEST_F(Emulator, CpAsyncIntoStaticSharedMemory) {
  uint32_t* src = emu_test::device_copy(iota_words(4, 7));
  uint32_t* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 4 * sizeof(uint32_t)), cudaSuccess);
  ASSERT_EQ(run(dim3(1), dim3(1), 0, [src, out] {
              __shared__ __align__(16) uint32_t s[4];
              cp_async_16(s, src);
              cp_async_commit();
              cp_async_wait<0>();
              for (int i = 0; i < 4; ++i) out[i] = s[i];
            }),
            "");
  EXPECT_EQ(emu_test::host_copy(out, 4), iota_words(4, 7));
}

TEST_F(Emulator, CpAsyncChecksAlignmentRangesAndTheStateSpace) {
  uint32_t* src = emu_test::device_copy(iota_words(8, 0));
  uint32_t* global_dst = nullptr;
  ASSERT_EQ(cudaMalloc(&global_dst, 64), cudaSuccess);
  auto copy_error = [&](int offset_dst, int offset_src, bool to_global, int src_bytes) {
    const std::string e = run(dim3(1), dim3(32), 128, [=] {
      char* s = static_cast<char*>(vtv_emu::dynamic_shared());
      if (threadIdx.x == 3) {
        char* dst = to_global ? reinterpret_cast<char*>(global_dst) : s + offset_dst;
        cp_async_16_zfill(dst, reinterpret_cast<const char*>(src) + offset_src, src_bytes);
        cp_async_commit();
        cp_async_wait<0>();
      }
    }, "copier");
    cudaDeviceReset();
    return e;
  };
  EXPECT_EQ(copy_error(16, 16, false, 16), "");
  std::string e = copy_error(8, 0, false, 16);
  EXPECT_NE(e.find("kernel copier, block (0, 0, 0), thread (3, 0, 0)"), std::string::npos) << e;
  EXPECT_NE(e.find("is not 16-byte aligned"), std::string::npos) << e;
  src = emu_test::device_copy(iota_words(8, 0));
  ASSERT_EQ(cudaMalloc(&global_dst, 64), cudaSuccess);
  e = copy_error(0, 4, false, 16);
  EXPECT_NE(e.find("global source"), std::string::npos) << e;
  src = emu_test::device_copy(iota_words(8, 0));
  ASSERT_EQ(cudaMalloc(&global_dst, 64), cudaSuccess);
  e = copy_error(0, 0, true, 16);
  EXPECT_NE(e.find("is not shared memory of this block"), std::string::npos) << e;
  src = emu_test::device_copy(iota_words(8, 0));
  ASSERT_EQ(cudaMalloc(&global_dst, 64), cudaSuccess);
  e = copy_error(0, 32, false, 1);  // one byte past the 32-byte source
  EXPECT_NE(e.find("not inside one device allocation"), std::string::npos) << e;
  src = emu_test::device_copy(iota_words(8, 0));
  ASSERT_EQ(cudaMalloc(&global_dst, 64), cudaSuccess);
  e = copy_error(128, 0, false, 16);  // just past the 128 bytes of dynamic shared memory
  EXPECT_NE(e.find("is not shared memory of this block"), std::string::npos) << e;
}

TEST_F(Emulator, CpAsyncNeverWaitedForIsReportedAtExit) {
  uint32_t* src = emu_test::device_copy(iota_words(4, 0));
  const std::string e = run(dim3(1), dim3(1), 16, [src] {
    cp_async_16(vtv_emu::dynamic_shared(), src);
    cp_async_commit();
  });
  EXPECT_NE(e.find("exited with 1 cp.async copy never waited for"), std::string::npos) << e;
}

// ldmatrix: shared memory holds count 8x8 b16 matrices, element (m, row, col) = 1000 m + 10 row + col,
// each row 16 bytes at its own place (rows 48 bytes apart, matrices in reverse order), and every lane
// passes the address of the row it supplies (lanes 8m .. 8m+7: rows 0..7 of matrix m). The PTX ISA's
// fragment: thread l holds elements 2l and 2l+1 of the matrix in row-major order (the lower one in the
// low half); with .trans, elements 2l and 2l+1 in column-major order.
template <int COUNT>
void check_ldmatrix(bool trans) {
  uint32_t* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 32 * COUNT * sizeof(uint32_t)), cudaSuccess);
  const std::string err = run(dim3(1), dim3(32), 4096, [out, trans] {
    char* s = static_cast<char*>(vtv_emu::dynamic_shared());
    auto row_at = [s](int m, int row) { return reinterpret_cast<uint16_t*>(s + (COUNT - 1 - m) * 512 + row * 48 + 16); };
    const int lane = int(threadIdx.x);
    if (lane < 8 * COUNT)
      for (int c = 0; c < 8; ++c) row_at(lane / 8, lane % 8)[c] = uint16_t(1000 * (lane / 8) + 10 * (lane % 8) + c);
    __syncwarp();
    // lanes past 8 * COUNT pass an address that is never read
    const void* a = lane < 8 * COUNT ? static_cast<const void*>(row_at(lane / 8, lane % 8)) : nullptr;
    uint32_t r[COUNT];
    if constexpr (COUNT == 1) trans ? ldmatrix_x1_trans(r, a) : ldmatrix_x1(r, a);
    if constexpr (COUNT == 2) trans ? ldmatrix_x2_trans(r, a) : ldmatrix_x2(r, a);
    if constexpr (COUNT == 4) trans ? ldmatrix_x4_trans(r, a) : ldmatrix_x4(r, a);
    for (int m = 0; m < COUNT; ++m) out[m * 32 + lane] = r[m];
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 32 * COUNT);
  auto element = [&](int m, int linear) {
    const int row = trans ? linear % 8 : linear / 8, col = trans ? linear / 8 : linear % 8;
    return uint32_t(1000 * m + 10 * row + col);
  };
  for (int m = 0; m < COUNT; ++m)
    for (int l = 0; l < 32; ++l)
      EXPECT_EQ(h[size_t(m * 32 + l)], element(m, 2 * l) | (element(m, 2 * l + 1) << 16))
          << "matrix " << m << " lane " << l << (trans ? " .trans" : "");
}

TEST_F(Emulator, LdmatrixX1) { check_ldmatrix<1>(false); }
TEST_F(Emulator, LdmatrixX2) { check_ldmatrix<2>(false); }
TEST_F(Emulator, LdmatrixX4) { check_ldmatrix<4>(false); }
TEST_F(Emulator, LdmatrixX1Trans) { check_ldmatrix<1>(true); }
TEST_F(Emulator, LdmatrixX2Trans) { check_ldmatrix<2>(true); }
TEST_F(Emulator, LdmatrixX4Trans) { check_ldmatrix<4>(true); }

TEST_F(Emulator, LdmatrixChecksRowAddresses) {
  const std::string misaligned = run(dim3(1), dim3(32), 1024, [] {
    char* s = static_cast<char*>(vtv_emu::dynamic_shared());
    uint32_t r[2];
    ldmatrix_x2(r, s + 16 * threadIdx.x + (threadIdx.x == 9 ? 8 : 0));
  });
  EXPECT_NE(misaligned.find("lane 9's row address"), std::string::npos) << misaligned;
  EXPECT_NE(misaligned.find("(row 1 of matrix 1) is not 16-byte aligned"), std::string::npos) << misaligned;
  cudaDeviceReset();
  uint32_t* g = nullptr;
  ASSERT_EQ(cudaMalloc(&g, 1024), cudaSuccess);
  const std::string global = run(dim3(1), dim3(32), 1024, [g] {
    uint32_t r[1];
    ldmatrix_x1(r, g + 4 * threadIdx.x);
  });
  EXPECT_NE(global.find("is not shared memory of this block"), std::string::npos) << global;
}
