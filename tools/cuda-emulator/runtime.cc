// The CPU CUDA emulator's runtime API: device memory, streams, events, graphs, errors and launches.
// Streams execute their work when it is enqueued (so every stream is always idle), except while one is
// being captured into a graph: then launches and async copies are recorded, and replayed by
// cudaGraphLaunch. The GPU's rules are enforced where they catch real bugs:
//   - device memory is mapped so that it ends at a PROT_NONE guard page (an access past the end faults
//     and is reported with the kernel, block and thread), and starts filled with 0xFF bytes (NaN floats)
//     where a GPU's fresh memory often reads as zeros, so that reading memory nobody wrote shows;
//   - copies must stay inside the device allocation they name, in the direction they name;
//   - launch configurations are checked against sm_90's limits (threads, grid, dynamic shared memory and
//     its opt-in attribute);
//   - during a stream capture, synchronous calls (cudaMalloc, cudaMemcpy, synchronisations) and work
//     on the legacy default stream fail and invalidate the capture, as in cudaStreamCaptureModeThreadLocal.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "emulator.h"

struct CUstream_st {
  bool capturing = false;
  bool invalidated = false;
  CUgraph_st* graph = nullptr;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point at{};
  bool recorded = false;
};
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};

namespace vtv_emu {

namespace {

constexpr size_t kSharedDefault = 48 * 1024;
constexpr size_t kSharedOptin = 232448;  // sm_90: 227 KiB per block with the opt-in attribute

std::recursive_mutex g_mutex;  // guards everything below (recursive: graph replays launch kernels under it)
cudaError_t g_error = cudaSuccess;
std::string g_error_message;
bool g_failed = false;  // a kernel failed: every later call fails (a GPU context is lost the same way)

struct Allocation {
  char* base;     // mapping start
  size_t mapped;  // bytes mapped, the guard page included
  char* ptr;      // what cudaMalloc returned
  size_t bytes;   // what was asked for
};
std::map<uintptr_t, Allocation> g_allocations;  // by ptr
size_t g_allocated = 0;
std::unordered_map<const void*, int> g_max_dynamic_smem;  // cudaFuncAttributeMaxDynamicSharedMemorySize
thread_local CUstream_st* t_capturing = nullptr;           // the stream this thread captures, if any

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

cudaError_t fail(cudaError_t code, const std::string& message) {
  set_error(code, message);
  return code;
}

// The allocation holding [p, p + bytes), or null.
const Allocation* find_allocation(const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocations.upper_bound(a);
  if (it == g_allocations.begin()) return nullptr;
  --it;
  const Allocation& al = it->second;
  const auto lo = reinterpret_cast<uintptr_t>(al.ptr);
  if (a < lo || a + bytes > lo + al.bytes) return nullptr;
  return &al;
}

std::string pointer_text(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

// Checks that [p, p + bytes) is device memory (or host memory when !device).
cudaError_t check_range(const char* call, const char* role, const void* p, size_t bytes, bool device) {
  const Allocation* a = find_allocation(p, bytes);
  if (device && !a) {
    return fail(cudaErrorInvalidValue, std::string(call) + ": the " + role + " range of " + std::to_string(bytes) +
                                           " bytes at " + pointer_text(p) +
                                           " is not inside one device allocation (" + describe_device_address(p) + ")");
  }
  if (!device && find_allocation(p, 1)) {
    return fail(cudaErrorInvalidValue, std::string(call) + ": the " + role + " pointer " + pointer_text(p) +
                                           " is device memory, but the copy's kind says host memory");
  }
  return cudaSuccess;
}

// A call that would synchronise, made while this thread captures a stream: fails and spoils the capture.
bool blocked_by_capture(const char* call) {
  if (!t_capturing) return false;
  t_capturing->invalidated = true;
  set_error(cudaErrorStreamCaptureUnsupported,
            std::string(call) + " was called during a stream capture (not allowed in thread-local capture mode)");
  return true;
}

// Runs `op` now, or records it when `s` is being captured. Work on the legacy stream during a capture
// fails and spoils it.
cudaError_t enqueue(cudaStream_t s, const char* call, std::function<void()> op) {
  if (s && s->capturing) {
    s->graph->ops.push_back(std::move(op));
    return cudaSuccess;
  }
  if (!s && t_capturing) {
    t_capturing->invalidated = true;
    return fail(cudaErrorStreamCaptureImplicit,
                std::string(call) + " on the legacy default stream during a stream capture");
  }
  op();
  return g_failed ? g_error : cudaSuccess;
}

cudaError_t copy_checked(const char* call, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (g_failed) return g_error;
  if (bytes == 0) return cudaSuccess;
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault) return cudaSuccess;
  if (kind == cudaMemcpyHostToHost) return cudaSuccess;
  cudaError_t e = check_range(call, "destination", dst, bytes, dst_dev);
  if (e == cudaSuccess) e = check_range(call, "source", src, bytes, src_dev);
  return e;
}

}  // namespace

void set_error(cudaError_t code, const std::string& message) {
  if (g_error == cudaSuccess || code == cudaErrorLaunchFailure) {
    g_error = code;
    g_error_message = message;
  }
  if (code == cudaErrorLaunchFailure) g_failed = true;
  std::fprintf(stderr, "vtv cuda emulator: %s\n", message.c_str());
}

bool is_device_range(const void* p, size_t bytes) { return find_allocation(p, bytes) != nullptr; }

std::string describe_device_address(const void* addr) {
  const auto a = reinterpret_cast<uintptr_t>(addr);
  for (const auto& [k, al] : g_allocations) {
    const auto guard = reinterpret_cast<uintptr_t>(al.base) + al.mapped - page_size();
    const auto end = reinterpret_cast<uintptr_t>(al.ptr) + al.bytes;
    if (a >= end && a < guard + page_size()) {
      return std::to_string(a - end) + " bytes past the end of the " + std::to_string(al.bytes) +
             "-byte device allocation at " + pointer_text(al.ptr);
    }
    if (a >= reinterpret_cast<uintptr_t>(al.base) && a < reinterpret_cast<uintptr_t>(al.ptr)) {
      return "before the start of the " + std::to_string(al.bytes) + "-byte device allocation at " + pointer_text(al.ptr);
    }
  }
  return "not in any device allocation";
}

void launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            std::function<void()> body) {
  std::unique_lock<std::recursive_mutex> lock(g_mutex);
  if (g_failed) return;
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  std::string bad;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0) bad = "an empty grid or block";
  else if (threads > 1024 || block.z > 64) bad = std::to_string(threads) + " threads per block (at most 1024, z at most 64)";
  else if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) bad = "a grid over (2^31-1, 65535, 65535)";
  else {
    auto it = g_max_dynamic_smem.find(kernel);
    const size_t allowed = it == g_max_dynamic_smem.end() ? kSharedDefault : size_t(it->second);
    if (smem > allowed) {
      bad = std::to_string(smem) + " bytes of dynamic shared memory (this kernel may use " + std::to_string(allowed) +
            (it == g_max_dynamic_smem.end() ? " without cudaFuncAttributeMaxDynamicSharedMemorySize)" : ")");
    }
  }
  if (!bad.empty()) {
    set_error(cudaErrorInvalidConfiguration, std::string("launch of ") + name + " with " + bad);
    return;
  }
  auto spec = std::make_shared<LaunchSpec>();
  spec->name = name;
  spec->grid = grid;
  spec->block = block;
  spec->dynamic_smem = smem;
  spec->body = std::move(body);
  lock.unlock();
  enqueue(stream, name, [spec] {
    const std::string failure = execute(*spec);
    if (!failure.empty()) {
      std::lock_guard<std::recursive_mutex> l(g_mutex);
      set_error(cudaErrorLaunchFailure, failure);
    }
  });
}

}  // namespace vtv_emu

using namespace vtv_emu;

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
  }
  return "cudaErrorUnknown";
}

// The emulator's own description of the latest error (what failed, where), not just the code's meaning.
const char* cudaGetErrorString(cudaError_t e) {
  static thread_local std::string text;
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  text = (e == g_error && !g_error_message.empty()) ? g_error_message : std::string(cudaGetErrorName(e));
  return text.c_str();
}

cudaError_t cudaGetLastError() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  const cudaError_t e = g_error;
  if (!g_failed) g_error = cudaSuccess;  // a kernel failure stays, as a lost GPU context does
  return e;
}

cudaError_t cudaPeekAtLastError() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  return g_error;
}

cudaError_t cudaRuntimeGetVersion(int* v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int* v) { *v = 13000; return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return cudaErrorInvalidValue;
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "vtv CPU CUDA emulator (sm_90 limits)");
  p->totalGlobalMem = size_t(sysconf(_SC_PHYS_PAGES)) * page_size();
  p->sharedMemPerBlock = kSharedDefault;
  p->sharedMemPerBlockOptin = kSharedOptin;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->multiProcessorCount = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  p->major = 9;
  p->minor = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (d != 0) return cudaErrorInvalidValue;
  switch (a) {
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = int(kSharedDefault); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = int(kSharedOptin); break;
    case cudaDevAttrMultiProcessorCount: *v = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    default: return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (blocked_by_capture("cudaDeviceSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return g_failed ? g_error : cudaSuccess;
}

// Frees every allocation and clears the sticky error of a failed kernel (a new context, as on a GPU).
cudaError_t cudaDeviceReset() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (blocked_by_capture("cudaDeviceReset")) return cudaErrorStreamCaptureUnsupported;
  for (const auto& [k, al] : g_allocations) munmap(al.base, al.mapped);
  g_allocations.clear();
  g_allocated = 0;
  g_max_dynamic_smem.clear();
  g_error = cudaSuccess;
  g_error_message.clear();
  g_failed = false;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** out, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (blocked_by_capture("cudaMalloc")) return cudaErrorStreamCaptureUnsupported;
  if (g_failed) return g_error;
  *out = nullptr;
  if (bytes == 0) return cudaSuccess;
  const size_t page = page_size();
  const size_t rounded = (bytes + 15) / 16 * 16;  // 16-byte alignment for the kernels' vector loads
  const size_t pages = (rounded + page - 1) / page;
  const size_t mapped = (pages + 1) * page;
  void* m = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return fail(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(bytes) + " bytes");
  char* base = static_cast<char*>(m);
  mprotect(base + pages * page, page, PROT_NONE);
  char* ptr = base + pages * page - rounded;  // ends at the guard page
  std::memset(ptr, 0xFF, rounded);
  g_allocations[reinterpret_cast<uintptr_t>(ptr)] = Allocation{base, mapped, ptr, bytes};
  g_allocated += bytes;
  *out = ptr;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (!p) return cudaSuccess;
  if (blocked_by_capture("cudaFree")) return cudaErrorStreamCaptureUnsupported;
  auto it = g_allocations.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_allocations.end()) return fail(cudaErrorInvalidDevicePointer, "cudaFree of " + pointer_text(p) + ", not an allocation");
  munmap(it->second.base, it->second.mapped);
  g_allocated -= it->second.bytes;
  g_allocations.erase(it);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  *total_bytes = p.totalGlobalMem;
  *free_bytes = p.totalGlobalMem > g_allocated ? p.totalGlobalMem - g_allocated : 0;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  {
    std::lock_guard<std::recursive_mutex> lock(g_mutex);
    if (blocked_by_capture("cudaMemcpy")) return cudaErrorStreamCaptureUnsupported;
  }
  const cudaError_t e = copy_checked("cudaMemcpy", dst, src, bytes, kind);
  if (e != cudaSuccess) return e;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  const cudaError_t e = copy_checked("cudaMemcpyAsync", dst, src, bytes, kind);
  if (e != cudaSuccess) return e;
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  return enqueue(s, "cudaMemcpyAsync", [=] {
    if (bytes) std::memmove(dst, src, bytes);
  });
}

cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (blocked_by_capture("cudaMemset")) return cudaErrorStreamCaptureUnsupported;
  if (g_failed) return g_error;
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_range("cudaMemset", "destination", p, bytes, true)) return e;
  std::memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (g_failed) return g_error;
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_range("cudaMemsetAsync", "destination", p, bytes, true)) return e;
  return enqueue(s, "cudaMemsetAsync", [=] { std::memset(p, value, bytes); });
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = new CUstream_st();
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s && s->capturing) return cudaErrorStreamCaptureUnsupported;
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (blocked_by_capture("cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return g_failed ? g_error : cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  return enqueue(s, "cudaEventRecord", [e] {
    e->at = std::chrono::steady_clock::now();
    e->recorded = true;
  });
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (blocked_by_capture("cudaEventSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return e->recorded ? cudaSuccess : cudaErrorInvalidResourceHandle;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a->recorded || !b->recorded) return cudaErrorInvalidResourceHandle;
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (!s) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture on the legacy default stream");
  if (s->capturing || t_capturing) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture: already capturing");
  s->capturing = true;
  s->invalidated = false;
  s->graph = new CUgraph_st();
  t_capturing = s;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  *g = nullptr;
  if (!s || !s->capturing) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture on a stream that is not capturing");
  s->capturing = false;
  t_capturing = nullptr;
  if (s->invalidated) {
    delete s->graph;
    s->graph = nullptr;
    return cudaErrorStreamCaptureInvalidated;
  }
  *g = s->graph;
  s->graph = nullptr;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long) {
  if (!g) return cudaErrorInvalidValue;
  *exec = new CUgraphExec_st{g->ops};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return cudaErrorInvalidValue;
  std::vector<std::function<void()>> ops = exec->ops;
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (g_failed) return g_error;
  return enqueue(s, "cudaGraphLaunch", [ops] {
    for (const auto& op : ops) op();
  });
}

cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || size_t(value) > kSharedOptin) {
      return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: " + std::to_string(value) +
                                             " bytes of dynamic shared memory exceed the opt-in limit " +
                                             std::to_string(kSharedOptin));
    }
    g_max_dynamic_smem[func] = value;
  }
  return cudaSuccess;
}
