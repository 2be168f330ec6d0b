#include <cuda_runtime.h>

#include <string>

#include "cuda/probe.h"

namespace vtv::cuda {

Probe probe() {
  Probe p;
  p.compiled = true;
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaError_t derr = cudaDriverGetVersion(&driver);
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || derr != cudaSuccess || driver == 0) {
    p.detail = std::string("no usable CUDA device: ") +
               (driver == 0 ? "no NVIDIA driver found" : cudaGetErrorString(err));
    cudaGetLastError();
    return p;
  }
  if (n == 0) {
    p.detail = "no CUDA device present";
    return p;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  p.devices = n;
  if (prop.major < 8) {
    p.detail = std::string(prop.name) + " is sm_" + std::to_string(prop.major * 10 + prop.minor) +
               "; the CUDA backend needs sm_80 or newer";
    return p;
  }
  p.usable = true;
#ifdef VTV_CUDA_EMULATOR
  p.emulated = true;
  p.detail = std::string(prop.name) + ": the CUDA kernels run on the CPU, for correctness checks only";
  return p;
#endif
  p.detail = std::string(prop.name) + " (sm_" + std::to_string(prop.major * 10 + prop.minor) + ", " +
             std::to_string(prop.totalGlobalMem >> 20) + " MiB), runtime " + std::to_string(runtime) +
             ", driver " + std::to_string(driver);
  return p;
}

}  // namespace vtv::cuda
