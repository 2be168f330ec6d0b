// The kernel variant functions of the addon (kernels.cc), added to its exports by addon.cc.
#pragma once
#include <napi.h>

namespace vtv_addon {

// kernelVariants, kernelDevice, tuneKernels, setKernelTuning, kernelTuning (bindings/addon.ts).
void register_kernel_functions(Napi::Env env, Napi::Object exports);

}  // namespace vtv_addon
