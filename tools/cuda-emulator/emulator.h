// What the CPU CUDA emulator's parts share (not a public header): a launch as the scheduler runs it,
// the sticky error, and where an address lies in emulated device memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

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

// [p, p + bytes) lies inside one device allocation (cudaMalloc).
bool is_device_range(const void* p, size_t bytes);

// ---- for the PTX primitives (ptx.cc), on the calling CUDA thread --------------------------------

// Ends the block with `what`, reported with the kernel, block and thread (only on a CUDA thread).
[[noreturn]] void fail_thread(const std::string& what);

// [p, p + bytes) is shared memory of the running block: its dynamic shared memory, or the worker
// thread's thread-local storage, where static __shared__ arrays live.
bool is_shared_range(const void* p, size_t bytes);
// The block's dynamic shared memory (1024-byte aligned) and its size: the emulator's shared window,
// whose byte offsets are the addresses that wgmma matrix descriptors hold.
char* dynamic_shared_base();
size_t dynamic_shared_bytes();

// The calling thread's asynchronous state: cp.async copies issued and not yet landed (the uncommitted
// ones, then the committed groups, oldest first), and wgmma accumulators not yet written back.
struct AsyncCopy {
  char* dst;
  unsigned bytes;
  unsigned char data[16];
};
struct PendingMma {
  float* d;                 // the thread's accumulator registers
  int n;                    // how many
  float value[128];         // what wgmma.wait_group writes there
  long group;               // -1: not yet committed
};
struct ThreadAsync {
  std::vector<AsyncCopy> uncommitted;
  std::deque<std::vector<AsyncCopy>> groups;
  std::vector<PendingMma> mmas;
  long mma_groups_committed = 0;
  long mma_groups_retired = 0;
  bool mma_fenced = false;  // a wgmma.fence since the accumulators were last written back
  void clear() {
    uncommitted.clear();
    groups.clear();
    mmas.clear();
    mma_groups_committed = mma_groups_retired = 0;
    mma_fenced = false;
  }
};
ThreadAsync& thread_async();

// The running block's dynamic shared memory that wgmma operations in flight read, per 16-byte chunk:
// how many issued, not yet retired wgmma groups read it. A wgmma registers its descriptors' chunks as
// the warpgroup issues it; the commit of the warpgroup's thread 0 closes them into a group; the first of
// its threads whose wgmma.wait_group retires that group releases them (the hardware is done reading
// then). A cp.async into such a chunk, as it issues or lands, is a write-after-read race: the hardware
// may write before the wgmma has read.
struct WgmmaReads {
  struct Group {
    long seq;
    std::vector<uint32_t> chunks;
  };
  std::vector<uint16_t> count;
  std::vector<std::vector<uint32_t>> open;   // per warpgroup: issued, not yet committed
  std::vector<std::deque<Group>> committed;  // per warpgroup, oldest first
  void reset(size_t dynamic_smem_bytes, int warpgroups) {
    count.assign((dynamic_smem_bytes + 15) / 16, 0);
    open.assign(size_t(warpgroups), {});
    committed.assign(size_t(warpgroups), {});
  }
};
WgmmaReads& wgmma_reads();
unsigned warpgroup_index();  // the calling thread's warpgroup in its block
// What a thread that exits leaves behind: "" or a description (cp.async or wgmma never waited for).
std::string unfinished_async(const ThreadAsync& a);

// A warpgroup collective (wgmma): every thread of the calling warpgroup (4 consecutive warps, 128
// threads) has to reach it. warpgroup_exchange returns the group's buffer of 128 slots of slot_bytes
// (at most 64) followed by scratch_bytes of scratch (at most 64 KiB + 64), alternating between two
// buffers as warp_exchange does; warpgroup_barrier waits for the whole warpgroup.
void* warpgroup_exchange(int slot_bytes);
void* warpgroup_scratch(void* exchange);
void warpgroup_barrier();
unsigned warpgroup_rank();  // the calling thread's index within its warpgroup, 0..127

}  // namespace vtv_emu
