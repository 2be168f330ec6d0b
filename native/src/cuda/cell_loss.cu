// The per-sample metrics (docs/method.md#metrics) on the device, as model::score_cell: the bottom-right 111x111 cell
// [113:224, 113:224] of a decoded image, truncated to bytes (trunc(clip(p * 255, 0, 255))), against the
// target's bytes. IoU: foreground iff R+G+B > 382.5 (2 * sum > 765 in integers), IoU = |and| / |or|,
// 1 when both masks are empty. MSE: both crops mapped to ImageNet-normalised space in double, mean
// squared difference over 3x111x111. One block per score job; only the two floats per job leave.
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/vqgan_kernels.h"
#include "vtv/config.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

constexpr int THREADS = 256;  // the cell geometry (kCell, kCellStart, kImage) is vtv/model_constants.h's
// The ImageNet normalisation, from vtv/model_constants.h: a namespace-scope array is host memory, so
// device code gets its values as scalar constants.
struct Norm3 {
  double v[3];
  __host__ __device__ constexpr double operator[](int i) const { return v[i]; }
};
__device__ constexpr Norm3 kMean{{kImagenetMean[0], kImagenetMean[1], kImagenetMean[2]}};
__device__ constexpr Norm3 kStd{{kImagenetStd[0], kImagenetStd[1], kImagenetStd[2]}};

__device__ __forceinline__ int pixel_byte(float p) {
  float v = __fmul_rn(p, 255.0f);
  v = fminf(255.0f, fmaxf(0.0f, v));
  return static_cast<int>(v);
}

__device__ __forceinline__ double normalised(int byte, int ch) {
  const double mean = ch == 0 ? kMean[0] : (ch == 1 ? kMean[1] : kMean[2]);
  const double std = ch == 0 ? kStd[0] : (ch == 1 ? kStd[1] : kStd[2]);
  return __ddiv_rn(__dsub_rn(__ddiv_rn(double(byte), 255.0), mean), std);
}

template <class T>
__device__ T block_sum(T v, T* shared) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, m);
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
  __syncthreads();
  T s = 0;
  if (threadIdx.x == 0) {
    for (int w = 0; w < THREADS / 32; ++w) s += shared[w];
  }
  __syncthreads();
  return s;  // valid in thread 0
}

// Where job j's image comes from: job_image[j] directly, or (in_pass) its source's grid within the pass.
struct JobImages {
  const int32_t* job_image;       // [jobs]: an image index, when grid_of_source is null
  const int32_t* grid_of_source;  // [sources], or null
  int64_t first_grid, grids;      // the pass, when grid_of_source is set
};

__global__ void __launch_bounds__(THREADS)
cell_scores_kernel(bool iou, const float* __restrict__ pixels, const uint8_t* __restrict__ targets, JobImages ji,
                   const int32_t* __restrict__ job_target, float* loss_out, float* metric_out) {
  __shared__ long long si[THREADS / 32];
  __shared__ double sd[THREADS / 32];
  const int64_t j = blockIdx.x;
  int64_t image = ji.job_image[j];
  if (ji.grid_of_source) {
    image = ji.grid_of_source[image] - ji.first_grid;
    if (image < 0 || image >= ji.grids) return;  // the whole block: another pass scores this job
  }
  const int64_t plane = int64_t(kImage) * kImage, cell_plane = int64_t(kCell) * kCell;
  const float* img = pixels + image * 3 * plane;
  const uint8_t* tgt = targets + int64_t(job_target[j]) * 3 * cell_plane;
  auto pred = [&](int ch, int y, int x) {
    return pixel_byte(img[ch * plane + int64_t(kCellStart + y) * kImage + kCellStart + x]);
  };
  if (iou) {
    long long inter = 0, uni = 0;
    for (int i = threadIdx.x; i < kCell * kCell; i += THREADS) {
      const int y = i / kCell, x = i % kCell;
      int sp = 0, st = 0;
      for (int ch = 0; ch < 3; ++ch) {
        sp += pred(ch, y, x);
        st += tgt[ch * cell_plane + i];
      }
      const bool fp = 2 * sp > 765, ft = 2 * st > 765;
      inter += (fp && ft) ? 1 : 0;
      uni += (fp || ft) ? 1 : 0;
    }
    inter = block_sum(inter, si);
    uni = block_sum(uni, si);
    if (threadIdx.x == 0) {
      const float v = uni == 0 ? 1.0f : static_cast<float>(double(inter) / double(uni));
      if (loss_out) loss_out[j] = -v;
      if (metric_out) metric_out[j] = v;
    }
    return;
  }
  double sum = 0.0;
  for (int i = threadIdx.x; i < 3 * kCell * kCell; i += THREADS) {
    const int ch = i / (kCell * kCell), r = i % (kCell * kCell);
    const double d = __dsub_rn(normalised(pred(ch, r / kCell, r % kCell), ch), normalised(tgt[i], ch));
    sum = __dadd_rn(sum, __dmul_rn(d, d));
  }
  sum = block_sum(sum, sd);
  if (threadIdx.x == 0) {
    const float v = static_cast<float>(sum / double(3 * kCell * kCell));
    if (loss_out) loss_out[j] = v;
    if (metric_out) metric_out[j] = v;
  }
}

}  // namespace

namespace {

void launch_cell_scores(const char* name, Loss loss, const float* pixels, const uint8_t* targets, const JobImages& ji,
                        const int32_t* job_target, int64_t jobs, float* loss_out, float* metric_out,
                        cudaStream_t stream) {
  const std::string n(name);
  check(loss == Loss::IoU || loss == Loss::MSE, n + ": the loss must be IoU or MSE");
  check(jobs >= 0, n + ": jobs must be >= 0");
  if (jobs == 0) return;
  check(pixels && targets && ji.job_image && job_target, n + ": pixels, targets and the job indices must be set");
  check(loss_out || metric_out, n + ": neither loss_out nor metric_out is set");
  check(jobs < (int64_t(1) << 31), n + ": too many jobs");
  VTV_LAUNCH("cell_scores_kernel", static_cast<unsigned>(jobs), THREADS, 0, stream, cell_scores_kernel,
             loss == Loss::IoU, pixels, targets, ji, job_target, loss_out, metric_out);
}

}  // namespace

void cell_scores(Loss loss, const float* pixels, const uint8_t* targets, const int32_t* job_image,
                 const int32_t* job_target, int64_t jobs, float* loss_out, float* metric_out, cudaStream_t stream) {
  launch_cell_scores("cell_scores", loss, pixels, targets, JobImages{job_image, nullptr, 0, 0}, job_target, jobs,
                     loss_out, metric_out, stream);
}

void cell_scores_in_pass(Loss loss, const float* pixels, const uint8_t* targets, const int32_t* job_source,
                         const int32_t* grid_of_source, int64_t first_grid, int64_t grids, const int32_t* job_target,
                         int64_t jobs, float* loss_out, float* metric_out, cudaStream_t stream) {
  check(grid_of_source != nullptr, "cell_scores_in_pass: grid_of_source is null");
  check(first_grid >= 0 && grids > 0, "cell_scores_in_pass: the pass must be first_grid >= 0, grids > 0");
  launch_cell_scores("cell_scores_in_pass", loss, pixels, targets, JobImages{job_source, grid_of_source, first_grid, grids},
                     job_target, jobs, loss_out, metric_out, stream);
}

}  // namespace vtv::cuda
