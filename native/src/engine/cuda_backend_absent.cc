// The cuda side of backend.h in a build without the CUDA backend (VTV_CUDA=OFF, or no nvcc at build
// time): CMake compiles this file instead of cuda_backend.cc, so no source needs an #ifdef. The probe
// says why, and asking for the backend is an error naming the fix.
#include "cuda/probe.h"
#include "engine/backend.h"
#include "vtv/error.h"

namespace vtv {

namespace cuda {

Probe probe() {
  Probe p;
  p.detail = "not compiled in (built with VTV_CUDA=OFF or without nvcc); rebuild with VTV_CUDA=ON";
  return p;
}

}  // namespace cuda

namespace engine {

CudaAvailability cuda_availability() {
  const cuda::Probe p = cuda::probe();
  return {p.compiled, p.usable, p.detail};
}

std::unique_ptr<Backend> make_cuda_backend(const ModelConfig&, Weights&, BackendParts, Precision) {
  throw Error("engine: the cuda backend is " + cuda::probe().detail);
}

}  // namespace engine

}  // namespace vtv
