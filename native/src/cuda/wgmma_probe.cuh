// Whether the device runs the sm_90a code of the .cu file that includes this header. wgmma exists only
// in sm_90a code, and which code a device runs is decided per file at load time (an sm_90a cubin when
// the build has one for that file and the device is an sm_90, else sm_90 or PTX): so each wgmma file
// includes this header, gets its own probe kernel compiled with its own architectures, and asks it once
// per device. Everything here is in an unnamed namespace on purpose (one copy per file).
#pragma once
#include <atomic>
#include <mutex>
#include <string>

#include "cuda/check.cuh"
#include "cuda/device_buffer.h"
#include "cuda/launch.cuh"
#include "cuda/ptx.cuh"
#include "cuda/variants.h"

namespace vtv::cuda {
namespace {

__global__ void wgmma_probe_kernel(int* out) { *out = VTV_HAVE_WGMMA; }

struct WgmmaDevice {
  std::once_flag once;
  std::atomic<int> state{0};  // 0 not probed yet, 1 available, 2 not
};

// Once per device, outside graph captures (the probe launches and synchronises): runs the probe and,
// when the device runs this file's sm_90a code, `enable()` (the kernel's shared-memory attribute).
template <class Enable>
void wgmma_probe_once(WgmmaDevice (&devices)[kMaxVariantDevices], const char* what, Enable enable) {
  int device = 0;
  VTV_CUDA_CHECK(cudaGetDevice(&device));
  check(device >= 0 && device < kMaxVariantDevices,
        std::string(what) + ": device " + std::to_string(device) + " out of range");
  WgmmaDevice& d = devices[device];
  std::call_once(d.once, [&d, &enable] {
    int* flag = static_cast<int*>(device_alloc(sizeof(int)));
    device_fill_bytes(flag, 0, sizeof(int));
    VTV_LAUNCH("wgmma_probe_kernel", 1, 1, 0, nullptr, wgmma_probe_kernel, flag);
    int host = 0;
    copy_to_host(&host, flag, sizeof(int));
    device_free(flag);
    if (host == 1) enable();
    d.state = host == 1 ? 1 : 2;
  });
}

// "" when the current device was probed and runs this file's sm_90a code, else why not.
std::string wgmma_unavailable(WgmmaDevice (&devices)[kMaxVariantDevices]) {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxVariantDevices) return "no usable device";
  // Only a prepared device answers: the probe launches and synchronises, which a graph capture forbids.
  switch (devices[device].state.load()) {
    case 1: return "";
    case 0: return "not probed on this device yet (prepare_kernel_variants)";
    default: return "the device runs no sm_90a code of this build (wgmma needs an sm_90 GPU and a build for 90a)";
  }
}

}  // namespace
}  // namespace vtv::cuda
