#include "cuda/device_buffer.h"

#include <string>

#include "cuda/check.cuh"

namespace vtv::cuda {

void* device_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    throw Error("cuda: cudaMalloc of " + std::to_string(bytes >> 20) + " MiB failed (" + cudaGetErrorString(err) +
                "; " + std::to_string(free_b >> 20) + " of " + std::to_string(total_b >> 20) + " MiB free)");
  }
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) VTV_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) VTV_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void device_fill_bytes(void* p, int byte, size_t bytes) {
  if (bytes) VTV_CUDA_CHECK(cudaMemset(p, byte, bytes));
}

void device_synchronize() { VTV_CUDA_CHECK(cudaDeviceSynchronize()); }

GpuTimer::GpuTimer() {
  cudaEvent_t a, b;
  VTV_CUDA_CHECK(cudaEventCreate(&a));
  VTV_CUDA_CHECK(cudaEventCreate(&b));
  start_ = a;
  stop_ = b;
}

GpuTimer::~GpuTimer() {
  cudaEventDestroy(static_cast<cudaEvent_t>(start_));
  cudaEventDestroy(static_cast<cudaEvent_t>(stop_));
}

void GpuTimer::start() { VTV_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(start_))); }

float GpuTimer::stop_ms() {
  VTV_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(stop_)));
  VTV_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop_)));
  float ms = 0.0f;
  VTV_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start_), static_cast<cudaEvent_t>(stop_)));
  return ms;
}

}  // namespace vtv::cuda
