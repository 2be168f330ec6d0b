// Argmax keys -> token indices and token grids (docs/method.md#vqgan step 1; the zero-shot duplication, docs/method.md#zero-shot).
#include "cuda/argmax.cuh"
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/kernels.h"
#include "vtv/config.h"

namespace vtv::cuda {

namespace {

__global__ void keys_to_index_kernel(const unsigned long long* __restrict__ keys, int64_t rows, int32_t* __restrict__ out) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r < rows) out[r] = argmax_key_column(keys[r]);
}

__global__ void token_grid_kernel(const unsigned long long* __restrict__ keys, int64_t samples, int P,
                                  int32_t* __restrict__ tokens) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= samples * kPatches) return;
  const int64_t s = i / kPatches;
  const int q = static_cast<int>(i % kPatches);
  tokens[i] = argmax_key_column(keys[s * P + q % P]);
}

unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

void argmax_keys_reset(unsigned long long* keys, int64_t rows, cudaStream_t stream) {
  if (rows > 0) VTV_CUDA_CHECK(cudaMemsetAsync(keys, 0, sizeof(unsigned long long) * size_t(rows), stream));
}

void argmax_keys_to_index(const unsigned long long* keys, int64_t rows, int32_t* index, cudaStream_t stream) {
  if (rows <= 0) return;
  VTV_LAUNCH("keys_to_index_kernel", blocks_for(rows, 256), 256, 0, stream, keys_to_index_kernel, keys, rows, index);
}

void token_grid(const unsigned long long* keys, int64_t samples, int P, int32_t* tokens, cudaStream_t stream) {
  check(P == kPatches || P == kPatches / 2, "token_grid: P must be 196 (one-shot) or 98 (zero-shot), got " + std::to_string(P));
  if (samples <= 0) return;
  VTV_LAUNCH("token_grid_kernel", blocks_for(samples * kPatches, 256), 256, 0, stream, token_grid_kernel, keys, samples,
             P, tokens);
}

}  // namespace vtv::cuda
