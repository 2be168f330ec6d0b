// The emulator's scheduler and runtime: CUDA threads as fibers, __syncthreads and warp collectives,
// shuffles, the order that exposes a missing barrier, poisoned memory, guard-page faults and launch
// checks.
#include <cmath>
#include <cstdint>

#include "emu_test.h"

using emu_test::Emulator;
using emu_test::run;

TEST_F(Emulator, EveryThreadRunsOnceWithItsIndices) {
  int* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 2 * 3 * 4 * 5 * 2 * sizeof(int)), cudaSuccess);
  const std::string err = run(dim3(2, 3), dim3(4, 5, 2), 0, [out] {
    const unsigned block = blockIdx.y * gridDim.x + blockIdx.x;
    const unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    out[block * 40 + t] = int(1000 * block + t);
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 240);
  for (int i = 0; i < 240; ++i) EXPECT_EQ(h[size_t(i)], 1000 * (i / 40) + i % 40) << i;
}

TEST_F(Emulator, SyncthreadsOrdersSharedMemory) {
  int* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 2 * 256 * sizeof(int)), cudaSuccess);
  const std::string err = run(dim3(2), dim3(256), 256 * sizeof(int), [out] {
    int* s = static_cast<int*>(vtv_emu::dynamic_shared());
    const int t = int(threadIdx.x);
    s[t] = t * 3 + int(blockIdx.x);
    __syncthreads();
    out[blockIdx.x * 256 + t] = s[(t + 1) % 256];
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 512);
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 256; ++t) EXPECT_EQ(h[size_t(b * 256 + t)], ((t + 1) % 256) * 3 + b);
}

// Without the barrier, one of the two blocks (threads in index order in even blocks, reversed in odd
// ones) reads a neighbour's slot before the neighbour writes it: the poison.
TEST_F(Emulator, AMissingBarrierReadsStaleSharedMemory) {
  int* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 2 * 64 * sizeof(int)), cudaSuccess);
  const std::string err = run(dim3(2), dim3(64), 64 * sizeof(int), [out] {
    int* s = static_cast<int*>(vtv_emu::dynamic_shared());
    const int t = int(threadIdx.x);
    s[t] = t;
    out[blockIdx.x * 64 + t] = s[t ^ 1];  // no __syncthreads
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 128);
  int stale[2] = {0, 0};
  for (int i = 0; i < 128; ++i) stale[i / 64] += h[size_t(i)] != ((i % 64) ^ 1);
  EXPECT_EQ(stale[0], 32);  // forward: the even threads read their odd neighbour too early
  EXPECT_EQ(stale[1], 32);  // reversed: the odd threads do
}

TEST_F(Emulator, ShufflesExchangeWithinTheWarp) {
  float* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 64 * 2 * sizeof(float)), cudaSuccess);
  const std::string err = run(dim3(1), dim3(64), 0, [out] {
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float v = float(lane + 100 * warp);
    for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, m);
    out[threadIdx.x] = v;
    out[64 + threadIdx.x] = __shfl_sync(0xFFFFFFFFu, float(lane * 10 + warp), 3, 16);  // lane 3 of each half
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 128);
  for (int t = 0; t < 64; ++t) {
    EXPECT_EQ(h[size_t(t)], 496.0f + 3200.0f * float(t / 32)) << t;
    EXPECT_EQ(h[size_t(64 + t)], float(((t % 32) / 16 * 16 + 3) * 10 + t / 32)) << t;
  }
}

TEST_F(Emulator, SyncthreadsOrCombinesTheBlock) {
  int* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 2 * sizeof(int)), cudaSuccess);
  const std::string err = run(dim3(2), dim3(96), 0, [out] {
    const int any = __syncthreads_or(blockIdx.x == 1 && threadIdx.x == 77);
    if (threadIdx.x == 0) out[blockIdx.x] = any;
  });
  ASSERT_EQ(err, "");
  const auto h = emu_test::host_copy(out, 2);
  EXPECT_EQ(h[0], 0);
  EXPECT_EQ(h[1], 1);
}

TEST_F(Emulator, AWarpSplitBetweenCollectivesIsADeadlock) {
  const std::string err = run(dim3(1), dim3(32), 0, [] {
    if (threadIdx.x < 16) __syncwarp();
    else __syncthreads();
  }, "split_warp");
  EXPECT_NE(err.find("split_warp"), std::string::npos) << err;
  EXPECT_NE(err.find("deadlock"), std::string::npos) << err;
}

TEST_F(Emulator, ACollectiveAfterLanesExitedIsReported) {
  const std::string err = run(dim3(1), dim3(32), 0, [] {
    if (threadIdx.x == 5) return;
    __syncwarp();
  });
  EXPECT_NE(err.find("after 1 of its lanes exited"), std::string::npos) << err;
}

TEST_F(Emulator, DeviceMemoryStartsPoisoned) {
  float* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 10 * sizeof(float)), cudaSuccess);
  const auto h = emu_test::host_copy(p, 10);
  for (float v : h) EXPECT_TRUE(std::isnan(v));
  // dynamic shared memory too, per block
  float* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, 2 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(run(dim3(2), dim3(1), 64, [out] {
              float* s = static_cast<float*>(vtv_emu::dynamic_shared());
              out[blockIdx.x] = s[3];
              s[3] = 1.0f;  // the next block on this worker must not see it
            }),
            "");
  for (float v : emu_test::host_copy(out, 2)) EXPECT_TRUE(std::isnan(v));
}

TEST_F(Emulator, AReadPastAnAllocationFaultsNamingKernelBlockThread) {
  float* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 100 * sizeof(float)), cudaSuccess);
  const std::string err = run(dim3(3), dim3(32), 0, [p] {
    const unsigned i = blockIdx.x * 32 + threadIdx.x;
    if (i == 70) p[i + 1024] = 1.0f;  // 3980 bytes past the end: the guard page
  }, "overrun");
  EXPECT_NE(err.find("kernel overrun, block (2, 0, 0), thread (6, 0, 0)"), std::string::npos) << err;
  EXPECT_NE(err.find("bytes past the end of the 400-byte device allocation"), std::string::npos) << err;
  // The context is lost, as on a GPU: later calls fail until a reset.
  float* q = nullptr;
  EXPECT_NE(cudaMalloc(&q, 16), cudaSuccess);
}

TEST_F(Emulator, LaunchConfigurationsAreCheckedAgainstSm90) {
  EXPECT_NE(run(dim3(1), dim3(1025), 0, [] {}).find("1025 threads per block"), std::string::npos);
  EXPECT_NE(run(dim3(1, 70000), dim3(1), 0, [] {}).find("a grid over"), std::string::npos);
  const std::string smem = run(dim3(1), dim3(32), 64 * 1024, [] {});
  EXPECT_NE(smem.find("without cudaFuncAttributeMaxDynamicSharedMemorySize"), std::string::npos) << smem;
  // A configuration error is not sticky.
  EXPECT_EQ(run(dim3(1), dim3(32), 1024, [] {}), "");
}

TEST_F(Emulator, CopiesMustStayInsideOneAllocation) {
  float* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, 16 * sizeof(float)), cudaSuccess);
  std::vector<float> h(32);
  EXPECT_EQ(cudaMemcpy(p, h.data(), 17 * sizeof(float), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_NE(std::string(cudaGetErrorString(cudaPeekAtLastError())).find("not inside one device allocation"), std::string::npos);
  cudaGetLastError();
  EXPECT_EQ(cudaMemcpy(p, h.data(), 16 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
}
