// Every kernel launch goes through VTV_LAUNCH: on the GPU it is kernel<<<grid, block, smem, stream>>>
// followed by the launch-error check; in the CPU emulator build (VTV_CUDA=EMULATE, tools/cuda-emulator)
// it hands the kernel and its arguments to the emulator, which runs the same kernel source on CPU fibers.
//   VTV_LAUNCH("name", grid, block, dynamic_smem_bytes, stream, kernel, args...);
#pragma once
#include <cuda_runtime.h>

#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda/check.cuh"

#ifdef VTV_CUDA_EMULATOR
// An emulated kernel keeps its dynamic shared memory in the emulator's block state.
#define VTV_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::vtv_emu::dynamic_shared())
#else
#define VTV_DYNAMIC_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif

namespace vtv::cuda {

template <class... Params, class... Args>
void launch_kernel(const char* name, const char* file, int line, dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, void (*kernel)(Params...), Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "VTV_LAUNCH: argument count differs from the kernel's");
#ifdef VTV_CUDA_EMULATOR
  // The arguments are converted to the parameter types once, as a launch does, and copied into the body.
  std::tuple<std::decay_t<Params>...> bound(std::forward<Args>(args)...);
  ::vtv_emu::launch(name, reinterpret_cast<const void*>(kernel), grid, block, smem, stream,
                    [kernel, bound]() { std::apply(kernel, bound); });
#else
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
#endif
  check_cuda(cudaGetLastError(), name, file, line);
}

}  // namespace vtv::cuda

#define VTV_LAUNCH(name, grid, block, smem, stream, ...) \
  ::vtv::cuda::launch_kernel(name, __FILE__, __LINE__, grid, block, smem, stream, __VA_ARGS__)
