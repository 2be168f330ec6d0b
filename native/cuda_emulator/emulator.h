// What the CPU CUDA emulator's parts share (not a public header): a launch as the scheduler runs it,
// the sticky error, and where an address lies in emulated device memory.
#pragma once
#include <cstddef>
#include <functional>
#include <string>

#include "cuda_runtime.h"

namespace vtv_emu {

struct LaunchSpec {
  std::string name;   // the kernel's name, for error messages
  dim3 grid, block;
  size_t dynamic_smem = 0;
  std::function<void()> body;  // the kernel call with its arguments bound, run once per CUDA thread
};

// Runs every block of the launch (on the worker threads), alternating the order in which a block's
// threads run between barriers: forward in even blocks, reverse in odd ones, so a read of shared memory
// that misses a barrier sees stale data in one of them. Returns "" or the first failure's description.
std::string execute(const LaunchSpec& launch);

// The error cudaGetLastError returns next (and every call after a kernel failure, as on a GPU).
void set_error(cudaError_t code, const std::string& message);

// 1 KiB after the 32 slots of a buffer warp_exchange returned: where a warp keeps a result that one
// of its lanes computes for all (tensor_core.cc), in the same double-buffered cycle as the slots.
void* warp_scratch(void* exchange);

// A description of `addr` for a fault report: a device allocation's guard page, or none of ours.
std::string describe_device_address(const void* addr);

}  // namespace vtv_emu
