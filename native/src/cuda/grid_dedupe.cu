// Exact work sharing on the device: identical token grids are found where the MAE left them, so a search
// step decodes each distinct grid once without sending its tokens to the host (only the count comes
// back). The same grouping as model::group_identical: distinct grids numbered in order of first
// occurrence, the first occurrence standing for the rest. Four small kernels: a 64-bit hash per grid;
// per grid, the first earlier grid with the same hash and the same 196 tokens (O(sources^2) hash
// compares, about 50k for a batch of 320: microseconds); numbering in source order (one thread: the
// order is sequential by definition); and the copy of each distinct grid.
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/vqgan_kernels.h"
#include "vtv/config.h"

namespace vtv::cuda {

namespace {

constexpr int THREADS = 128;

__global__ void grid_hash_kernel(const int32_t* __restrict__ tokens, int64_t sources, unsigned long long* hashes) {
  const int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (s >= sources) return;
  const int32_t* g = tokens + s * kPatches;
  unsigned long long h = 1469598103934665603ull;  // FNV-1a over the 196 tokens
  for (int t = 0; t < kPatches; ++t) {
    h ^= static_cast<unsigned>(g[t]);
    h *= 1099511628211ull;
  }
  hashes[s] = h;
}

__global__ void grid_first_kernel(const int32_t* __restrict__ tokens, int64_t sources,
                                  const unsigned long long* __restrict__ hashes, int32_t* first) {
  const int64_t s = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (s >= sources) return;
  const int32_t* g = tokens + s * kPatches;
  int64_t f = s;
  for (int64_t j = 0; j < s; ++j) {
    if (hashes[j] != hashes[s]) continue;
    const int32_t* o = tokens + j * kPatches;
    bool same = true;
    for (int t = 0; t < kPatches && same; ++t) same = o[t] == g[t];
    if (same) {
      f = j;
      break;
    }
  }
  first[s] = static_cast<int32_t>(f);
}

__global__ void grid_number_kernel(const int32_t* __restrict__ first, int64_t sources, int32_t* grid_of_source,
                                   int32_t* count) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int32_t n = 0;
  for (int64_t s = 0; s < sources; ++s) grid_of_source[s] = first[s] == s ? n++ : grid_of_source[first[s]];
  *count = n;
}

__global__ void grid_gather_kernel(const int32_t* __restrict__ tokens, int64_t sources, const int32_t* __restrict__ first,
                                   const int32_t* __restrict__ grid_of_source, int32_t* unique) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= sources * kPatches) return;
  const int64_t s = i / kPatches;
  if (first[s] != s) return;
  unique[int64_t(grid_of_source[s]) * kPatches + i % kPatches] = tokens[i];
}

unsigned blocks(int64_t n) { return static_cast<unsigned>((n + THREADS - 1) / THREADS); }

}  // namespace

void grid_dedupe(const int32_t* tokens, int64_t sources, int32_t* grid_of_source, int32_t* unique, int32_t* count,
                 unsigned long long* hashes, int32_t* first, cudaStream_t stream) {
  check(sources >= 0 && sources < (int64_t(1) << 31) / kPatches, "grid_dedupe: sources out of range");
  check(tokens && grid_of_source && unique && count && hashes && first, "grid_dedupe: a pointer is null");
  if (sources == 0) {
    VTV_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(int32_t), stream));
    return;
  }
  VTV_LAUNCH("grid_hash_kernel", blocks(sources), THREADS, 0, stream, grid_hash_kernel, tokens, sources, hashes);
  VTV_LAUNCH("grid_first_kernel", blocks(sources), THREADS, 0, stream, grid_first_kernel, tokens, sources,
             static_cast<const unsigned long long*>(hashes), first);
  VTV_LAUNCH("grid_number_kernel", 1, 32, 0, stream, grid_number_kernel, static_cast<const int32_t*>(first), sources,
             grid_of_source, count);
  VTV_LAUNCH("grid_gather_kernel", blocks(sources * kPatches), THREADS, 0, stream, grid_gather_kernel, tokens, sources,
             static_cast<const int32_t*>(first), static_cast<const int32_t*>(grid_of_source), unique);
}

}  // namespace vtv::cuda
