// The CUDA kernels of the VQGAN decoder and encoder and the losses (docs/method.md#vqgan and
// #metrics), as host functions over device pointers, one family per file:
//   conv_f32.cu / conv_bf16.cu  3x3 and 1x1 convolutions as implicit GEMM (fp32 FMA for parity, bf16
//                               mma.sync with fp32 accumulation), nearest x2 upsampling folded into the
//                               input indexing, GroupNorm(+swish) of the input applied as it is loaded,
//                               GroupNorm statistics of the output accumulated in the epilogue
//   conv_out.cu                 conv_out (Co = 3) with GroupNorm + swish before it and clamp/unmap after
//   group_norm.cu               GroupNorm applied from producer statistics (what the conv prologue does,
//                               as a standalone kernel the tests compare with cpu::group_norm)
//   spatial_attention.cu        the single-head AttnBlock core at 14x14
//   codebook.cu                 token grid -> post_quant_conv(codebook vectors), NCHW
//   cell_loss.cu                the bottom-right 111x111 crop and the per-sample IoU / MSE
//   map_pixels.cu               the encoder's input mapping, normalised canvas -> [-1, 1]
//   nearest_code.cu             the encoder's quantisation: nearest codebook vector per latent
// and the bf16 NHWC decoder's (the section below): conv_nhwc.cu (conv2d_nhwc, dispatching to the NHWC
// kernels of conv_bf16_nhwc.cu and conv_bf16_wgmma.cu), group_norm_nhwc.cu, and the _nhwc functions in
// codebook.cu, spatial_attention.cu and conv_out.cu.
// The convolutions also run the encoder's pad-(0,1,0,1) stride-2 Downsample (ConvArgs::downsample2x).
// CPU counterparts: cpu::conv2d, cpu::group_norm, cpu::spatial_attention, model::VqganDecoder,
// model::VqganEncoder, model::score_cell. Every function enqueues on `stream` and returns; bad arguments throw vtv::Error.
// No CUDA headers here.
#pragma once
#include <cstdint>

#include "cuda/device_buffer.h"
#include "vtv/engine.h"

namespace vtv::cuda {

// GroupNorm statistics as the producing kernel leaves them: per (sample, group) the sum and the sum of
// squares of the group's C/groups * H * W values, in double: stats[(n * groups + g) * 2 + {0, 1}].
// The consumer turns them into mean and biased variance (E[x^2] - mean^2 in double) and then, as
// cpu::group_norm does, into a = rstd * gamma[c], s = beta[c] - mean * a, y = x * a + s.
struct GroupNormIn {
  const double* stats = nullptr;  // null: the input is used as stored
  const float* gamma = nullptr;
  const float* beta = nullptr;
  int groups = 0;
  float eps = 1e-6f;
  bool swish = false;  // y * sigmoid(y) after the affine
};

// y[N][Co][Ho][Wo] = conv(prologue(x)[N][Ci][H][W], w[Co][Ci][k][k]) + bias (+ residual), stride 1,
// pad k/2, k in {1, 3}; Ho = 2H, Wo = 2W when upsample2x (the input is read as its nearest x2
// upsampling), else H, W. downsample2x instead makes it the encoder's taming Downsample: k = 3, pad
// (0, 1, 0, 1) (one zero row/column after the bottom/right edge only), stride 2, so
// Ho = (H - 2) / 2 + 1, Wo = (W - 2) / 2 + 1 (224 -> 112 -> ... -> 14). prologue = GroupNorm (+ swish) from `norm` when norm.stats is set; padding
// is zero after the prologue, as in PyTorch. residual may alias y (read, then written, by the same
// thread); x must not alias y. stats_out (nullable): zeroed, then the GroupNorm statistics of y over
// `stats_groups` groups are accumulated into it. Exactly one of w_f32 / w_bf16 picks the kernel.
// Requirements: Ci % 8 == 0 and Ci <= 512, Co % stats_groups == 0 when stats_out is set.
struct ConvArgs {
  const float* x = nullptr;
  int64_t N = 0;
  int Ci = 0, H = 0, W = 0;
  bool upsample2x = false;
  bool downsample2x = false;  // the encoder's pad-(0,1,0,1) stride-2 3x3 conv (excludes upsample2x)
  int Co = 0, k = 3;
  const float* w_f32 = nullptr;
  const uint16_t* w_bf16 = nullptr;  // bf16 bit patterns, [Co][Ci*k*k]
  const float* bias = nullptr;
  const float* residual = nullptr;
  float* y = nullptr;
  GroupNormIn norm;
  double* stats_out = nullptr;
  int stats_groups = 0;
  // For the bf16 variants (variants.h) that need them, both nullable: the weights in tap-major order
  // [Co][ky][kx][Ci] (bf16 bits; prepared once by the caller, else rearranged into the workspace on each
  // call), and device scratch of workspace_bytes (conv2d_workspace_bytes). A variant whose needs are not
  // met is not chosen for the call.
  const uint16_t* w_bf16_taps = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};
void conv2d(const ConvArgs& a, cudaStream_t stream = nullptr);
// The scratch every bf16 conv variant may use for this call (0 for the fp32 path): the nhwc variant's
// normalised bf16 NHWC copy of the input, and the tap-major weights when w_bf16_taps is not set.
size_t conv2d_workspace_bytes(const ConvArgs& a);
// w [Co][Ci][3][3] -> taps [Co][3][3][Ci], bf16 bits, on the device (for ConvArgs::w_bf16_taps).
void conv_weights_to_taps(const uint16_t* w, int Co, int Ci, uint16_t* taps, cudaStream_t stream = nullptr);

// Output side of the taming Downsample (ConvArgs::downsample2x) over `side` input pixels: pad 1 at the
// end, 3x3, stride 2.
inline int downsampled_side(int side) { return (side + 1 - 3) / 2 + 1; }

// conv_out of the decoder with what surrounds it: pixels[N][3][H][W] = (clamp(conv3x3(swish(GN(x))) +
// bias, -1, 1) + 1) / 2, in fp32 (both precisions: it is 3 output channels). w [3][Ci][3][3]. Ci <= 512.
void conv_out_pixels(const float* x, int64_t N, int Ci, int H, int W, const GroupNormIn& norm, const float* w,
                     const float* bias, float* pixels, cudaStream_t stream = nullptr);

// y = GroupNorm(x) (+ swish) with the statistics in norm.stats (x [N][C][HW]); y may alias x.
void group_norm_apply(const float* x, int64_t N, int C, int64_t HW, const GroupNormIn& norm, float* y,
                      cudaStream_t stream = nullptr);

// The AttnBlock core as cpu::spatial_attention, reading q, k, v from one tensor: for sample b,
// q = qkv + b * 3*C*HW, k = q + C*HW, v = q + 2*C*HW (each [C][HW]); out[b][C][HW].
// HW <= 256, C <= 512.
void spatial_attention(const float* qkv, int64_t B, int C, int HW, float* out, cudaStream_t stream = nullptr);

// z[n][c][t] = table[tokens[n][t]][c] for the 196 tokens of each grid; table [V][C] holds
// post_quant_conv(codebook[v]). A token outside [0, V) writes NaN (the test poisons show it).
void codebook_lookup(const int32_t* tokens, int64_t N, const float* table, int V, int C, float* z,
                     cudaStream_t stream = nullptr);

// Per score job j: the IoU or MSE (model::score_cell) of image[job_image[j]] ([3][224][224] pixels in
// [0, 1], cropped to [113:224, 113:224] and truncated to bytes) against target[job_target[j]]
// ([3][111][111] bytes). loss[j] = -IoU or MSE, metric[j] = IoU or MSE. Jobs' indices are device arrays.
void cell_scores(Loss loss, const float* pixels, const uint8_t* targets, const int32_t* job_image,
                 const int32_t* job_target, int64_t jobs, float* loss_out, float* metric_out,
                 cudaStream_t stream = nullptr);

// The same for jobs that name a source grid rather than a decoded image, for one decode pass: job j
// scores image grid_of_source[job_source[j]] - first_grid when that grid is one of the pass's
// [first_grid, first_grid + grids); other jobs are left for their own pass. All arrays are on the device.
void cell_scores_in_pass(Loss loss, const float* pixels, const uint8_t* targets, const int32_t* job_source,
                         const int32_t* grid_of_source, int64_t first_grid, int64_t grids, const int32_t* job_target,
                         int64_t jobs, float* loss_out, float* metric_out, cudaStream_t stream = nullptr);

// ---- The bf16 NHWC decoder ------------------------------------------------------------------------------
// The BF16 decoder's layout on devices that run the NHWC conv kernels (VqganDeviceBlocks::nhwc): every
// feature map is bf16 bits [N][H][W][C], channels innermost, and the GroupNorm statistics are as above
// (double, accumulated by the producing conv from the values it stores). GroupNorm (+ swish) runs ONCE per
// element, in a pass of its own (group_norm_nhwc) into a normalised copy that the next conv reads as
// stored; convs whose input is not normalised (upsampling, the shortcut, attention's projection) read the
// producer's map directly.

// y = GroupNorm(x) (+ swish) from norm.stats, x and y [N][HW][C] bf16 bits, fp32 arithmetic exactly as
// group_norm_value, rounded to bf16 once. C % 8 == 0 (16-byte vectors), C <= 512; y may alias x. Runs the
// groupnorm variant (variants.h: vec8, channel_regs; bit-identical) chosen for group_norm_shape(N, C, HW, groups).
void group_norm_nhwc(const uint16_t* x, int64_t N, int C, int64_t HW, const GroupNormIn& norm, uint16_t* y,
                     cudaStream_t stream = nullptr);

// A convolution in the NHWC layout: y[N][Ho][Wo][Co] = conv(x[N][H][W][Ci], w_taps[Co][k][k][Ci]) + bias
// (+ residual [N][Ho][Wo][Co]), all maps bf16 bits, fp32 accumulation; k in {1, 3} (pad k/2, stride 1),
// nearest x2 upsampling folded in as in ConvArgs. x is used as stored (normalised by group_norm_nhwc
// beforehand when the model asks for it). residual may alias y; x must not. stats_out as in ConvArgs (of
// the bf16 values stored). Ci % 8 == 0, Ci <= 512; x, w_taps, residual and y 16-byte aligned.
struct ConvNhwcArgs {
  const uint16_t* x = nullptr;
  int64_t N = 0;
  int Ci = 0, H = 0, W = 0;
  bool upsample2x = false;
  int Co = 0, k = 3;
  const uint16_t* w_taps = nullptr;  // [Co][k][k][Ci] (conv_weights_to_taps; a 1x1 conv's [Co][Ci] as is)
  const float* bias = nullptr;
  const uint16_t* residual = nullptr;
  uint16_t* y = nullptr;
  double* stats_out = nullptr;
  int stats_groups = 0;
};
void conv2d_nhwc(const ConvNhwcArgs& a, cudaStream_t stream = nullptr);
// Whether this device runs the NHWC conv kernels (cp.async and ldmatrix: sm_80 and newer), so that a
// decoder may keep its maps in NHWC. Throws nothing; false when no device answers.
bool nhwc_decoder_supported();

// codebook_lookup into the NHWC layout: z[n][t][c] = bf16(table[tokens[n][t]][c]) (a token outside [0, V)
// writes NaN). C % 8 == 0.
void codebook_lookup_nhwc(const int32_t* tokens, int64_t N, const float* table, int V, int C, uint16_t* z,
                          cudaStream_t stream = nullptr);

// spatial_attention in the NHWC layout: qkv [B][HW][3C] bf16 (per position q = channels 0..C-1, k = C..2C-1,
// v = 2C..3C-1, as the qkv 1x1 conv stores them), out [B][HW][C] bf16; scores, softmax and sums in fp32
// as spatial_attention. HW <= 256, C <= 512, C % 8 == 0.
void spatial_attention_nhwc(const uint16_t* qkv, int64_t B, int C, int HW, uint16_t* out,
                            cudaStream_t stream = nullptr);

// conv_out_pixels over an NHWC map that group_norm_nhwc has already normalised (norm_out + swish):
// pixels[N][3][H][W] = (clamp(conv3x3(x) + bias, -1, 1) + 1) / 2 in fp32, x [N][H][W][Ci] bf16, w [3][Ci][3][3]
// fp32. Ci % 8 == 0, Ci <= 512.
void conv_out_pixels_nhwc(const uint16_t* x, int64_t N, int Ci, int H, int W, const float* w, const float* bias,
                          float* pixels, cudaStream_t stream = nullptr);

// Identical token grids found on the device, as model::group_identical on the host (grid_dedupe.cu):
// tokens [sources][196] (device) -> grid_of_source[s], the index of s's grid among the distinct grids,
// numbered in order of first occurrence; unique [distinct][196], each distinct grid's tokens; *count,
// the number of distinct grids (device int32). hashes [sources] and first [sources] are scratch.
void grid_dedupe(const int32_t* tokens, int64_t sources, int32_t* grid_of_source, int32_t* unique, int32_t* count,
                 unsigned long long* hashes, int32_t* first, cudaStream_t stream = nullptr);

// map_pixels of the VQGAN encoder: x[n][c][i] = 2 * (canvas[n][c][i] * std[c] + mean[c]) - 1 for the three
// colour channels of each ImageNet-normalised canvas ([N][3][plane]), and 0 for channels 3..C-1 (x is
// [N][C][plane], C >= 3: conv_in's input padded to a multiple of 8 channels).
void map_pixels(const float* canvases, int64_t N, int64_t plane, int C, float* x, cudaStream_t stream = nullptr);

// Nearest codebook vector of each latent: z [N][E][T] (quant_conv's output, T = 196 positions),
// codebook [V][E], code_norms [V] = |codebook[v]|^2 in double (summed in order, as the CPU does);
// tokens[n][t] = argmin_v (code_norms[v] - 2 * z[n][:][t] . codebook[v]) in double, first index on ties.
// E <= 512.
void nearest_code(const float* z, int64_t N, int E, int T, const float* codebook, const double* code_norms, int V,
                  int32_t* tokens, cudaStream_t stream = nullptr);

}  // namespace vtv::cuda
