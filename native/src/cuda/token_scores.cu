// The token losses (docs/method.md#token-objective) on the device, as model::score_tokens: a search step
// of the token objective scores its samples where the logits are, so only one loss and one metric per
// sample leave the GPU instead of its 98 x vocab logits. One block per sample; a warp per output-quadrant
// position takes the row's max, then sums exp(logit - max) in double; thread 0 adds the 49 terms in
// position order, as the CPU does.
#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "cuda/launch.cuh"
#include "vtv/config.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

constexpr int THREADS = 256, WARPS = THREADS / 32;

__global__ void __launch_bounds__(THREADS)
token_scores_kernel(bool cross_entropy, int row_offset, const float* __restrict__ logits,
                    const int32_t* __restrict__ grids, int P, int vocab, const int32_t* __restrict__ targets,
                    float* losses, float* metrics) {
  __shared__ double term[kQuadrantTokens];
  const int64_t s = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int32_t* target = targets + s * kQuadrantTokens;
  if (cross_entropy) {
    for (int i = warp; i < kQuadrantTokens; i += WARPS) {
      // The logit row of output-quadrant position i: rows 7..13, columns 7..13 of the grid, less the
      // rows the mode's logits do not cover (zero-shot starts at row 7).
      const int row = (kHalf + i / kHalf) * kGrid + kHalf + i % kHalf - row_offset;
      const float* l = logits + (s * P + row) * int64_t(vocab);
      float m = -INFINITY;
      for (int v = lane; v < vocab; v += 32) m = fmaxf(m, l[v]);
#pragma unroll
      for (int d = 16; d > 0; d >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, d));
      double sum = 0;
      for (int v = lane; v < vocab; v += 32) sum += exp(double(l[v]) - double(m));
#pragma unroll
      for (int d = 16; d > 0; d >>= 1) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, d);
      if (lane == 0) term[i] = double(m) + log(sum) - double(l[target[i]]);
    }
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  const int32_t* grid = grids + s * kPatches;
  int correct = 0;
  double ce = 0;
  for (int i = 0; i < kQuadrantTokens; ++i) {
    const int row = (kHalf + i / kHalf) * kGrid + kHalf + i % kHalf - row_offset;
    correct += grid[row] == target[i];
    if (cross_entropy) ce += term[i];
  }
  const float accuracy = float(double(correct) / kQuadrantTokens);
  losses[s] = cross_entropy ? float(ce / kQuadrantTokens) : -accuracy;
  metrics[s] = accuracy;
}

}  // namespace

void token_scores(Loss loss, Mode mode, const float* logits, const int32_t* grids, int64_t n, int vocab,
                  const int32_t* targets, float* losses, float* metrics, cudaStream_t stream) {
  check(is_token_loss(loss), "token_scores: the loss must be TokenCE or TokenAccuracy");
  check(vocab > 0, "token_scores: vocab must be positive, got " + std::to_string(vocab));
  if (n <= 0) return;
  const int P = dec_tokens(mode) - 1;
  const int row_offset = mode == Mode::OneShot ? 0 : kHalf * kGrid;
  VTV_LAUNCH("token_scores_kernel", static_cast<unsigned>(n), THREADS, 0, stream, token_scores_kernel,
             loss == Loss::TokenCE, row_offset, logits, grids, P, vocab, targets, losses, metrics);
}

}  // namespace vtv::cuda
