// The task-vector patch as the attention kernels read it (kernels.h HeadPatch, docs/method.md#patching):
// which positions of one (sample, head) are patched, where a patched position's task mean is, and the
// block-wide vote that lets a head whose every position is patched skip loading K and V. Shared by the
// baseline (attention.cu) and the tensor-core variant (attention_mma.cu) so both read the mask the same way.
#pragma once
#include <cstdint>

#include "cuda/kernels.h"

namespace vtv::cuda {

struct HeadPatchView {
  const uint8_t* mask;     // this sample's bits (null: nothing patched)
  int64_t first_bit;       // bit of position 0 of this head
  const float* means;      // HeadPatch::means
  int position_shift;
  int H, h;

  __device__ __forceinline__ bool patching() const { return mask != nullptr; }
  // Whether position p of this (sample, head) is patched.
  __device__ __forceinline__ bool patched(int p) const {
    if (!mask) return false;
    const int64_t i = first_bit + p;
    return (mask[i >> 3] >> (i & 7)) & 1;
  }
  // The task mean position p writes: means[p'][h][0 .. dh), p' = 0 for p = 0, else p + position_shift.
  __device__ __forceinline__ const float* mean(int p, int dh) const {
    const int src = p == 0 ? 0 : p + position_shift;
    return means + (int64_t(src) * H + h) * dh;
  }
};

__device__ __forceinline__ HeadPatchView head_patch_view(const HeadPatch& patch, int64_t b, int H, int h, int N) {
  HeadPatchView v;
  v.means = patch.means;
  v.position_shift = patch.position_shift;
  v.mask = patch.mask ? patch.mask + b * patch.mask_stride : nullptr;
  v.first_bit = patch.bit_offset + int64_t(h) * N;
  v.H = H;
  v.h = h;
  return v;
}

// Whether any of the N positions is not patched, by all `threads` threads of the block (a barrier: every
// thread calls it).
__device__ __forceinline__ bool head_computes(const HeadPatchView& v, int N, int threads) {
  int computes = !v.patching();
  if (v.patching()) {
    for (int p = threadIdx.x; p < N; p += threads) computes |= !v.patched(p);
  }
  return __syncthreads_or(computes);
}

}  // namespace vtv::cuda
