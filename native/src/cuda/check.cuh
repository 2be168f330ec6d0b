// Error checking for CUDA runtime calls and kernel launches: every failure becomes a vtv::Error naming
// the call, the source line and the runtime's message, so a failed device run says where it broke.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "vtv/error.h"

namespace vtv::cuda {

inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) {
    throw Error(std::string("cuda: ") + what + " failed at " + file + ":" + std::to_string(line) + ": " +
                cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
  }
}

}  // namespace vtv::cuda

#define VTV_CUDA_CHECK(call) ::vtv::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// After a <<<...>>> launch: catches bad launch configurations (too much shared memory, grid too large).
#define VTV_CUDA_CHECK_LAUNCH(name) ::vtv::cuda::check_cuda(cudaGetLastError(), name, __FILE__, __LINE__)
