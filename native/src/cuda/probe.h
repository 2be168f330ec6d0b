// What the CUDA backend can do on this machine: probe.cu, or in a build without CUDA the stand-in in
// native/src/engine/cuda_backend_absent.cc, so callers never need #ifdefs.
#pragma once
#include <string>

namespace vtv::cuda {

struct Probe {
  bool compiled = false;  // the CUDA backend is built into this binary
  bool usable = false;    // a device is present and the driver accepts our kernels
  bool emulated = false;  // the CPU CUDA emulator (VTV_CUDA=EMULATE): correct, not fast
  int devices = 0;
  std::string detail;     // device name and compute capability, or why not usable
};

Probe probe();

}  // namespace vtv::cuda
