// Patch embedding and token assembly (docs/method.md#model, the forward at inference): gathering the visible
// patches of each sample's canvas into rows for the patch_embed GEMM, adding position embeddings and
// CLS, and building the decoder sequence (embedded tokens, mask tokens, un-shuffle, positions). The
// GEMMs in between are linear() calls; together they reproduce model::MaeForward::run's host loops.
#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/kernels.h"
#include "vtv/config.h"

namespace vtv::cuda {

namespace {

constexpr int kPatchVec = 3 * kPatch * kPatch;  // (channel, y, x), the Conv2d weight order

unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

__global__ void gather_patches_kernel(const float* __restrict__ canvases, const int32_t* __restrict__ canvas_of_sample,
                                      int64_t samples, const int32_t* __restrict__ patch_ids, int Np,
                                      float* __restrict__ out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= samples * Np * kPatchVec) return;
  const int e = static_cast<int>(i % kPatchVec);
  const int64_t r = i / kPatchVec;  // s * Np + t
  const int64_t s = r / Np;
  const int id = patch_ids[r % Np];
  const int ch = e / (kPatch * kPatch), y = (e / kPatch) % kPatch, x = e % kPatch;
  const int py = (id / kGrid) * kPatch + y, px = (id % kGrid) * kPatch + x;
  const float* canvas = canvases + int64_t(canvas_of_sample[s]) * 3 * kImage * kImage;
  out[i] = canvas[(int64_t(ch) * kImage + py) * kImage + px];
}

__global__ void assemble_encoder_kernel(const float* __restrict__ embedded, const float* __restrict__ cls,
                                        const float* __restrict__ pos, const int32_t* __restrict__ patch_ids,
                                        int64_t samples, int Ne, int E, float* __restrict__ x) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= samples * Ne * E) return;
  const int j = static_cast<int>(i % E);
  const int64_t r = i / E;
  const int64_t s = r / Ne;
  const int t = static_cast<int>(r % Ne);
  if (t == 0) {
    x[i] = cls[j] + pos[j];
  } else {
    x[i] = embedded[(s * (Ne - 1) + t - 1) * E + j] + pos[int64_t(1 + patch_ids[t - 1]) * E + j];
  }
}

__global__ void assemble_decoder_kernel(const float* __restrict__ emb, int Ne, const float* __restrict__ mask_token,
                                        const float* __restrict__ dpos, const int32_t* __restrict__ dec_patch_ids,
                                        const int32_t* __restrict__ slot_of_patch, int64_t samples, int Nd, int D,
                                        float* __restrict__ x) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= samples * Nd * D) return;
  const int j = static_cast<int>(i % D);
  const int64_t r = i / D;
  const int64_t s = r / Nd;
  const int t = static_cast<int>(r % Nd);
  if (t == 0) {
    x[i] = emb[s * Ne * D + j] + dpos[j];
  } else {
    const int id = dec_patch_ids[t - 1];
    const int slot = slot_of_patch[id];
    const float src = slot >= 0 ? emb[(s * Ne + slot) * D + j] : mask_token[j];
    x[i] = src + dpos[int64_t(1 + id) * D + j];
  }
}

__global__ void drop_cls_kernel(const float* __restrict__ x, int64_t samples, int Nd, int D, float* __restrict__ out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t P = Nd - 1;
  if (i >= samples * P * D) return;
  const int j = static_cast<int>(i % D);
  const int64_t r = i / D;
  const int64_t s = r / P, t = r % P;
  out[i] = x[(s * Nd + t + 1) * D + j];
}

}  // namespace

void gather_patches(const float* canvases, const int32_t* canvas_of_sample, int64_t samples, const int32_t* patch_ids,
                    int Np, float* out, cudaStream_t stream) {
  check(Np > 0 && Np <= kPatches, "gather_patches: Np must be in 1..196, got " + std::to_string(Np));
  const int64_t n = samples * Np * kPatchVec;
  if (n <= 0) return;
  VTV_LAUNCH("gather_patches_kernel", blocks_for(n, 256), 256, 0, stream, gather_patches_kernel, canvases,
             canvas_of_sample, samples, patch_ids, Np, out);
}

void assemble_encoder_tokens(const float* embedded, const float* cls, const float* pos, const int32_t* patch_ids,
                             int64_t samples, int Ne, int E, float* x, cudaStream_t stream) {
  check(Ne >= 1 && E > 0, "assemble_encoder_tokens: Ne >= 1 and E > 0 required");
  const int64_t n = samples * Ne * E;
  if (n <= 0) return;
  VTV_LAUNCH("assemble_encoder_kernel", blocks_for(n, 256), 256, 0, stream, assemble_encoder_kernel, embedded, cls, pos,
             patch_ids, samples, Ne, E, x);
}

void assemble_decoder_tokens(const float* emb, int Ne, const float* mask_token, const float* dpos,
                             const int32_t* dec_patch_ids, const int32_t* slot_of_patch, int64_t samples, int Nd, int D,
                             float* x, cudaStream_t stream) {
  check(Ne >= 1 && Nd >= 1 && D > 0, "assemble_decoder_tokens: Ne, Nd >= 1 and D > 0 required");
  const int64_t n = samples * Nd * D;
  if (n <= 0) return;
  VTV_LAUNCH("assemble_decoder_kernel", blocks_for(n, 256), 256, 0, stream, assemble_decoder_kernel, emb, Ne, mask_token,
             dpos, dec_patch_ids, slot_of_patch, samples, Nd, D, x);
}

void drop_cls_rows(const float* x, int64_t samples, int Nd, int D, float* out, cudaStream_t stream) {
  check(Nd >= 2 && D > 0, "drop_cls_rows: Nd >= 2 and D > 0 required");
  const int64_t n = samples * (Nd - 1) * D;
  if (n <= 0) return;
  VTV_LAUNCH("drop_cls_kernel", blocks_for(n, 256), 256, 0, stream, drop_cls_kernel, x, samples, Nd, D, out);
}

}  // namespace vtv::cuda
