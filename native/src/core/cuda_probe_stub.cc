// The CUDA probe when the CUDA backend is not compiled in (VTV_CUDA=OFF or no nvcc at build time).
#ifndef VTV_WITH_CUDA
#include "cuda/probe.h"

namespace vtv::cuda {

Probe probe() {
  Probe p;
  p.detail = "not compiled in (built with VTV_CUDA=OFF or without nvcc); rebuild with VTV_CUDA=ON";
  return p;
}

}  // namespace vtv::cuda
#endif
