// The variants of the bf16 3x3 convolution (registered in variants.cu; conv2d_bf16 in conv_bf16.cu
// dispatches among them). Plain C++.
//   baseline  conv_bf16.cu: fp32 NCHW gathered element by element, GroupNorm+SiLU per tap
//   nhwc      conv_bf16_nhwc.cu: GroupNorm+SiLU once per element into a bf16 NHWC copy (the caller's
//             workspace), then an implicit GEMM over it with 16-byte cp.async row gathers
#pragma once
#include <string>

#include "cuda/vqgan_kernels.h"
#include "cuda/variants.h"

namespace vtv::cuda {

void conv2d_bf16_baseline(const ConvArgs& a, cudaStream_t stream);
void conv2d_bf16_nhwc(const ConvArgs& a, cudaStream_t stream);
// Once per device, outside graph captures: the nhwc kernel's dynamic shared memory attribute.
void conv_nhwc_prepare();
// "" when the nhwc variant can run the shape (Ci a multiple of 32), else why not.
std::string conv_nhwc_unsupported(const KernelShape& s);
// Whether this call gives the nhwc variant everything it needs (shape, 3x3 without downsampling, workspace).
bool conv_nhwc_can_run(const ConvArgs& a);

}  // namespace vtv::cuda
