// The variants of the bf16 3x3 convolution (registered in variants.cu; conv2d_bf16 in conv_bf16.cu
// dispatches among them). Plain C++.
//   baseline  conv_bf16.cu: fp32 NCHW gathered element by element, GroupNorm+SiLU per tap
//   nhwc      conv_bf16_nhwc.cu: GroupNorm+SiLU once per element into a bf16 NHWC copy (the caller's
//             workspace), then an implicit GEMM over it with 16-byte cp.async row gathers
//   wgmma     conv_bf16_wgmma.cu: nhwc's bf16 NHWC input and gathers, multiplied by sm_90a warpgroup
//             MMA (wgmma.mma_async m64n128k16) from a 6-stage ring with loads and MMAs overlapped
//   wgmma_n256  the same kernel with 256-pixel block tiles (m64n256k16, one block per SM)
#pragma once
#include <string>

#include "cuda/vqgan_kernels.h"
#include "cuda/variants.h"

namespace vtv::cuda {

struct ConvParams;  // conv_common.cuh

void conv2d_bf16_baseline(const ConvArgs& a, cudaStream_t stream);
void conv2d_bf16_nhwc(const ConvArgs& a, cudaStream_t stream);
// Once per device, outside graph captures: the nhwc kernel's dynamic shared memory attribute.
void conv_nhwc_prepare();
// "" when the nhwc variant can run the shape (Ci a multiple of 32), else why not.
std::string conv_nhwc_unsupported(const KernelShape& s);
// Whether this call gives the nhwc variant everything it needs (shape, 3x3 without downsampling, workspace).
bool conv_nhwc_can_run(const ConvArgs& a);

// The NHWC family's operands of one call (nhwc, wgmma): after the argument checks, the stats_out reset
// and the prologue pass (GroupNorm+SiLU of x once per element into bf16 NHWC in the workspace), x is
// that copy [N][H][W][Ci] and taps the tap-major weights [Co][3][3][Ci] (the caller's, or rearranged
// into the workspace). Nothing is launched for N == 0.
struct NhwcOperands {
  const uint16_t* x = nullptr;
  const uint16_t* taps = nullptr;
};
NhwcOperands conv_nhwc_operands(const ConvArgs& a, const char* name, cudaStream_t stream);

// block_pixels: 128 (the "wgmma" variant) or 256 ("wgmma_n256").
void conv2d_bf16_wgmma(const ConvArgs& a, int block_pixels, cudaStream_t stream);
// Once per device, outside graph captures: whether the device runs conv_bf16_wgmma.cu's sm_90a code (a
// probe kernel), and the wgmma conv kernel's dynamic shared memory attribute.
void conv_wgmma_prepare();
// "" when the wgmma conv can run the shape on the current device (prepared, sm_90a code, Ci % 32 == 0);
// for both families that register it (conv3x3, conv_nhwc: Ci is d[1] of either shape).
std::string conv_wgmma_unsupported(const KernelShape& s);
// As conv_nhwc_can_run, and the device runs the wgmma code.
bool conv_wgmma_can_run(const ConvArgs& a);

// The kernels of the two NHWC variants launched on an NHWC implicit GEMM already set up: p from
// conv_params (either layout; p.y16 picks the bf16 NHWC epilogue), x the bf16 NHWC input [N][H][W][Ci] as
// the kernel reads it, taps the weights [Co][k][k][Ci]. For conv2d_nhwc (conv_nhwc.cu) and the NCHW
// variants above.
void conv_nhwc_launch_mma_sync(const ConvParams& p, int64_t N, const uint16_t* x, const uint16_t* taps,
                               cudaStream_t stream);
void conv_nhwc_launch_wgmma(const ConvParams& p, int64_t N, int block_pixels, const uint16_t* x, const uint16_t* taps,
                            cudaStream_t stream);

}  // namespace vtv::cuda
