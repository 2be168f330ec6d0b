// What the emulator's own tests share: launching a lambda as a kernel, device buffers, and a fixture
// that resets the emulated device after each test (a failed kernel leaves the context failed, as on a
// GPU).
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace emu_test {

// Runs `body` as every thread of a grid x block launch with `smem` bytes of dynamic shared memory and
// returns "" or the error the launch reported (the emulator's description: kernel, block, thread, what).
template <class F>
std::string run(dim3 grid, dim3 block, size_t smem, F body, const char* name = "test_kernel") {
  static int tag;
  vtv_emu::launch(name, &tag, grid, block, smem, nullptr, body);
  cudaDeviceSynchronize();
  const cudaError_t e = cudaPeekAtLastError();
  const std::string message = e == cudaSuccess ? "" : cudaGetErrorString(e);
  cudaGetLastError();
  return message;
}

template <class T>
T* device_copy(const std::vector<T>& host) {
  T* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return p;
}
template <class T>
std::vector<T> host_copy(const T* p, size_t n) {
  std::vector<T> host(n);
  EXPECT_EQ(cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return host;
}

class Emulator : public ::testing::Test {
 protected:
  void TearDown() override { cudaDeviceReset(); }
};

// bf16 bits of a small integer (exact), and back.
inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace emu_test
