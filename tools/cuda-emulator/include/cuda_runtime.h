// The CPU CUDA emulator's stand-in for the toolkit's cuda_runtime.h (see tools/cuda-emulator/README.md):
// the runtime types and calls the engine uses, the device qualifiers and built-ins (threadIdx, ...,
// __syncthreads, warp shuffles, atomics), and the launch entry point. A build with VTV_CUDA=EMULATE puts
// this directory first on the include path and compiles native/src/cuda/*.cu as C++ against it, so the
// very kernel sources the GPU runs execute on the CPU: each CUDA thread is a fiber, a block runs its
// fibers cooperatively on one OS thread, and barriers are where fibers switch.
#pragma once
#include <math.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#ifndef VTV_CUDA_EMULATOR
#define VTV_CUDA_EMULATOR 1
#endif

// ---- qualifiers -----------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
// A block runs on one OS thread at a time, and each worker thread runs one block at a time: a block's
// shared memory is a function-local static of the worker thread.
#define __shared__ static thread_local

// ---- vector types ---------------------------------------------------------------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

// ---- runtime types --------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16BF = 14 };

struct CUstream_st;
typedef CUstream_st* cudaStream_t;
struct CUevent_st;
typedef CUevent_st* cudaEvent_t;
struct CUgraph_st;
typedef CUgraph_st* cudaGraph_t;
struct CUgraphExec_st;
typedef CUgraphExec_st* cudaGraphExec_t;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int multiProcessorCount;
  int major;
  int minor;
  int l2CacheSize;
  int clockRate;
  int memoryClockRate;
  int memoryBusWidth;
};

// ---- runtime calls (tools/cuda-emulator/runtime.cc) ----------------------------------------------
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaMalloc(void** p, size_t bytes);
template <class T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
template <class F>
inline cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

// ---- device built-ins (tools/cuda-emulator/scheduler.cc) -----------------------------------------
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace vtv_emu {

// Runs `body` as every thread of every block of the launch (or records it while `stream` is being
// captured into a graph). Launch-configuration errors become the sticky error cudaGetLastError returns.
void launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t dynamic_smem, cudaStream_t stream,
            std::function<void()> body);

void block_barrier();                 // __syncthreads: every live thread of the block
void warp_barrier();                  // __syncwarp: every live lane of the calling warp
unsigned lane_id();                   // threadIdx linearised, mod 32
void* warp_exchange(int slot_bytes);  // this warp's 32 slots of slot_bytes, alternating between two buffers
int block_reduce_or(int v);           // __syncthreads_or
void* dynamic_shared();               // extern __shared__: this block's dynamic shared memory
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, executed collectively by the calling warp.
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);

// The asynchronous PTX primitives (ptx.cc; native/src/cuda/ptx.cuh wraps them as on the GPU).
// cp.async: `bytes` (4 or 16) to shared `dst` from global `src`, of which the first `src_bytes` are read
// and the rest zero-filled; queued per thread, landing at the cp.async.wait_group that retires them.
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();                  // cp.async.commit_group
void cp_async_wait(int n);               // cp.async.wait_group n
// ldmatrix.sync.aligned.m8n8.x{count}[.trans].shared.b16, executed collectively by the calling warp.
void ldmatrix(uint32_t* r, int count, bool trans, const void* row_addr);
// The shared window's address of a shared-memory pointer (what cvta.to.shared gives on a GPU): in the
// emulator, a byte offset into the block's dynamic shared memory.
uint32_t shared_address(const void* p);
// wgmma.mma_async.sync.aligned.m64n{n}k16.f32.bf16.bf16, executed collectively by the calling
// warpgroup: D (n / 2 floats per thread) += A x B, A from registers (a_regs, 4 per thread) or from the
// matrix descriptor desc_a (a_regs null), B from desc_b; scale_d 0 ignores D's input. The result lands
// in d at the wgmma.wait_group that retires it.
void wgmma_bf16(float* d, int n, const uint32_t* a_regs, uint64_t desc_a, uint64_t desc_b, int scale_d);
void wgmma_fence();                      // wgmma.fence.sync.aligned
void wgmma_commit();                     // wgmma.commit_group.sync.aligned
void wgmma_wait(int n);                  // wgmma.wait_group.sync.aligned n

}  // namespace vtv_emu

inline void __syncthreads() { vtv_emu::block_barrier(); }
inline int __syncthreads_or(int v) { return vtv_emu::block_reduce_or(v); }
inline void __syncwarp(unsigned = 0xFFFFFFFFu) { vtv_emu::warp_barrier(); }

template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 8, "__shfl_xor_sync: at most 8 bytes");
  char* slots = static_cast<char*>(vtv_emu::warp_exchange(8));
  const unsigned lane = vtv_emu::lane_id();
  std::memcpy(slots + 8 * lane, &v, sizeof(T));
  vtv_emu::warp_barrier();
  const unsigned base = lane & ~unsigned(width - 1);
  const unsigned src = base + ((lane ^ unsigned(lane_mask)) & unsigned(width - 1));
  T r;
  std::memcpy(&r, slots + 8 * src, sizeof(T));
  return r;
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src_lane, int width = 32) {
  static_assert(sizeof(T) <= 8, "__shfl_sync: at most 8 bytes");
  char* slots = static_cast<char*>(vtv_emu::warp_exchange(8));
  const unsigned lane = vtv_emu::lane_id();
  std::memcpy(slots + 8 * lane, &v, sizeof(T));
  vtv_emu::warp_barrier();
  const unsigned src = (lane & ~unsigned(width - 1)) + (unsigned(src_lane) & unsigned(width - 1));
  T r;
  std::memcpy(&r, slots + 8 * src, sizeof(T));
  return r;
}

// Atomics: blocks of one launch run on several OS threads, so these are real atomics.
template <class T>
inline T atomicAdd(T* p, T v) {
  if constexpr (std::is_integral<T>::value) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  } else {
    T old;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    T next = old + v;
    while (!__atomic_compare_exchange(p, &old, &next, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) next = old + v;
    return old;
  }
}
template <class T>
inline T atomicMax(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T>
inline T atomicMin(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}

// ---- device math ----------------------------------------------------------------------------------
template <class T>
inline T __ldg(const T* p) { return *p; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline int __float_as_int(float f) { int u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
// The _rn intrinsics are never contracted into an FMA (volatile keeps the compiler from fusing).
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
inline double __ddiv_rn(double a, double b) { volatile double r = a / b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
// CUDA's global min / max overloads.
#define VTV_EMU_MINMAX(T)                                   \
  inline T min(T a, T b) { return b < a ? b : a; }          \
  inline T max(T a, T b) { return a < b ? b : a; }
VTV_EMU_MINMAX(int)
VTV_EMU_MINMAX(unsigned)
VTV_EMU_MINMAX(long)
VTV_EMU_MINMAX(unsigned long)
VTV_EMU_MINMAX(long long)
VTV_EMU_MINMAX(unsigned long long)
VTV_EMU_MINMAX(float)
VTV_EMU_MINMAX(double)
#undef VTV_EMU_MINMAX
// erfcf, expf, fmaf, fmaxf, fminf, sqrtf, ...: the C library's, from <math.h>.
