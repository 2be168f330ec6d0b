// PTX wrappers of the pipelined kernels (gemm_bf16_pipelined.cu, conv_bf16_nhwc.cu): asynchronous
// global -> shared copies (cp.async, sm_80+) and the warp-wide shared -> register matrix loads
// (ldmatrix, sm_75+), under the names the kernels use everywhere.
//
//   cp_async_16(smem, gmem)              16 bytes, global -> shared, asynchronous (cp.async.cg: L2 only)
//   cp_async_16_zfill(smem, gmem, valid) the same, or 16 zero bytes when !valid (src-size 0; gmem must
//                                        still be a mapped address, the caller clamps it)
//   cp_async_commit()                    closes the group of copies issued since the last commit
//   cp_async_wait<N>()                   waits until at most N committed groups are still in flight
//   ldmatrix_x1/x2/x4(r, smem)           1/2/4 8x8 b16 matrices; lanes 8j..8j+7 give the row addresses
//                                        of matrix j; lane l receives in r[j] row l/4, columns
//                                        2(l%4), 2(l%4)+1 of matrix j
//   ldmatrix_x*_trans(r, smem)           the same of the transposed matrices: r[j] holds rows 2(l%4) and
//                                        2(l%4)+1 of column l/4
//
// On the CPU CUDA emulator (VTV_CUDA_EMULATOR) the copies are done at once (a cp.async that completes
// early is a legal execution, so the barriers and waits the kernels need are still exercised by the
// emulator's block scheduling but not the waits themselves), and ldmatrix is built from what every
// lane can do: the row addresses are exchanged with __shfl_sync and each lane reads its own words.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>

namespace vtv::cuda {

#ifndef VTV_CUDA_EMULATOR
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem) {
#ifdef VTV_CUDA_EMULATOR
  *static_cast<uint4*>(smem) = *static_cast<const uint4*>(gmem);
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(smem)), "l"(gmem));
#endif
}

__device__ __forceinline__ void cp_async_16_zfill(void* smem, const void* gmem, bool valid) {
#ifdef VTV_CUDA_EMULATOR
  *static_cast<uint4*>(smem) = valid ? *static_cast<const uint4*>(gmem) : make_uint4(0, 0, 0, 0);
#else
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes));
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifndef VTV_CUDA_EMULATOR
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifndef VTV_CUDA_EMULATOR
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

#ifdef VTV_CUDA_EMULATOR
namespace detail {
// Matrix j's row (lane % 32) / 4 comes from lane 8j + lane / 4; this lane reads 32 bits of it (plain) or
// two b16 of two rows (trans).
template <int NMAT, bool TRANS>
inline void ldmatrix_emulated(uint32_t* r, const void* smem) {
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const unsigned long long mine = reinterpret_cast<uintptr_t>(smem);
  for (int j = 0; j < NMAT; ++j) {
    if (!TRANS) {
      const unsigned long long row = __shfl_sync(0xFFFFFFFFu, mine, 8 * j + lane / 4);
      r[j] = *reinterpret_cast<const uint32_t*>(static_cast<uintptr_t>(row) + 4 * (lane % 4));
    } else {
      // Transposed: this lane holds elements (2(l%4), l/4) and (2(l%4)+1, l/4) of the stored matrix.
      const unsigned long long r0 = __shfl_sync(0xFFFFFFFFu, mine, 8 * j + 2 * (lane % 4));
      const unsigned long long r1 = __shfl_sync(0xFFFFFFFFu, mine, 8 * j + 2 * (lane % 4) + 1);
      const uint16_t lo = *reinterpret_cast<const uint16_t*>(static_cast<uintptr_t>(r0) + 2 * (lane / 4));
      const uint16_t hi = *reinterpret_cast<const uint16_t*>(static_cast<uintptr_t>(r1) + 2 * (lane / 4));
      r[j] = uint32_t(lo) | (uint32_t(hi) << 16);
    }
  }
}
}  // namespace detail
#endif

#ifdef VTV_CUDA_EMULATOR
#define VTV_LDMATRIX(NMAT, TRANS, r, smem) detail::ldmatrix_emulated<NMAT, TRANS>(r, smem)
#endif

__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* smem) {
#ifdef VTV_CUDA_EMULATOR
  VTV_LDMATRIX(1, false, r, smem);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_u32(smem)));
#endif
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem) {
#ifdef VTV_CUDA_EMULATOR
  VTV_LDMATRIX(2, false, r, smem);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(smem)));
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
#ifdef VTV_CUDA_EMULATOR
  VTV_LDMATRIX(4, false, r, smem);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem)));
#endif
}

__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* smem) {
#ifdef VTV_CUDA_EMULATOR
  VTV_LDMATRIX(1, true, r, smem);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(smem_u32(smem)));
#endif
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem) {
#ifdef VTV_CUDA_EMULATOR
  VTV_LDMATRIX(2, true, r, smem);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_u32(smem)));
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
#ifdef VTV_CUDA_EMULATOR
  VTV_LDMATRIX(4, true, r, smem);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(smem)));
#endif
}

#undef VTV_LDMATRIX

}  // namespace vtv::cuda
