// The variants of the bf16 Linear (registered in variants.cu; linear_bf16 in gemm_bf16.cu dispatches
// among them): each checks its own arguments and enqueues on `stream`.
//   baseline   gemm_bf16.cu: fp32 x rounded while staging, register double buffering, 32-bit fragment loads
//   pipelined  gemm_bf16_pipelined.cu: bf16 x_bf16, 4-stage cp.async, ldmatrix, 64 x 64 warp tiles
//   cublaslt   cublaslt.cu: cublasLtMatmul from libcublasLt.so when it loads at run time (dlopen), then
//              this package's epilogue where cuBLASLt has no exact equivalent (exact GELU, bf16 copy,
//              argmax)
#pragma once
#include <string>

#include "cuda/kernels.h"

namespace vtv::cuda {

void linear_bf16_baseline(const LinearArgs& a, cudaStream_t stream);
void linear_bf16_pipelined(const LinearArgs& a, cudaStream_t stream);
void linear_bf16_cublaslt(const LinearArgs& a, cudaStream_t stream);
// "" when libcublasLt.so was loaded and has every entry point used, else why not.
const std::string& cublaslt_unavailable();

}  // namespace vtv::cuda
