// The variants of the bf16 Linear (registered in variants.cu; linear_bf16 in gemm_bf16.cu dispatches
// among them): each checks its own arguments and enqueues on `stream`.
//   baseline   gemm_bf16.cu: fp32 x rounded while staging, register double buffering, 32-bit fragment loads
//   pipelined  gemm_bf16_pipelined.cu: bf16 x_bf16, 4-stage cp.async, ldmatrix, 64 x 64 warp tiles
//   wgmma      gemm_bf16_wgmma.cu: pipelined's loads, sm_90a warpgroup MMA (m64n128k16) from shared memory
//   cublaslt   cublaslt.cu: cublasLtMatmul from libcublasLt.so when it loads at run time (dlopen), then
//              this package's epilogue where cuBLASLt has no exact equivalent (exact GELU, bf16 copy,
//              argmax)
#pragma once
#include <string>

#include "cuda/kernels.h"
#include "cuda/variants.h"

namespace vtv::cuda {

void linear_bf16_baseline(const LinearArgs& a, cudaStream_t stream);
void linear_bf16_pipelined(const LinearArgs& a, cudaStream_t stream);
void linear_bf16_cublaslt(const LinearArgs& a, cudaStream_t stream);
// Once per device, outside graph captures: the pipelined kernel's dynamic shared memory attribute.
void gemm_pipelined_prepare();
void linear_bf16_wgmma(const LinearArgs& a, cudaStream_t stream);
// Once per device, outside graph captures: whether the device runs this build's sm_90a code (a probe
// kernel), and the wgmma kernel's dynamic shared memory attribute.
void gemm_wgmma_prepare();
// "" when the wgmma variant can run on the current device (prepared, sm_90a code), else why not.
std::string gemm_wgmma_unavailable();
// "" when libcublasLt.so was loaded and has every entry point used, else why not.
const std::string& cublaslt_unavailable();

}  // namespace vtv::cuda
