// The variants of the MAE's multi-head attention (registered in variants.cu; mha_attention in
// attention.cu dispatches among them). Plain C++.
//   baseline  attention.cu: fp32 FMA, one block per (sample, head), a warp per query
//   mma_sync  attention_mma.cu: bf16 tensor cores (mma.sync m16n8k16), one block per (sample, head), a
//             warp per 16-query tile, the whole score row in registers (N <= 256, head dim 16, 32 or 64)
#pragma once
#include <cstdint>
#include <string>

#include "cuda/kernels.h"
#include "cuda/variants.h"

namespace vtv::cuda {

// "" when the mma_sync variant can run the shape on the current device, else why not.
std::string attention_mma_unsupported(const KernelShape& s);
// Whether this call gives the mma_sync variant what it needs beyond the shape (qkv 16-byte aligned).
bool attention_mma_can_run(const float* qkv);
// Once per device, outside graph captures: the kernels' dynamic shared memory attributes (mha_prepare).
void mha_mma_prepare();
// As mha_attention (after its argument checks, B > 0), on the mma_sync kernel.
void mha_attention_mma(const float* qkv, int64_t B, int N, int H, int dh, float scale, float* out,
                       const HeadPatch& patch, cudaStream_t stream);

}  // namespace vtv::cuda
