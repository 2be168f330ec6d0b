// conv2d_nhwc: the bf16 NHWC decoder's convolutions (vqgan_kernels.h), 3x3 and 1x1, dispatched among the
// "conv_nhwc" kernel variants (variants.h): mma_sync (conv_bf16_nhwc.cu's kernel, sm_80+, the default),
// wgmma and wgmma_n256 (conv_bf16_wgmma.cu, sm_90a). The kernels are the NCHW-fed NHWC variants' own: they
// already gather a bf16 NHWC input, so here they get the decoder's map as stored (no prologue pass, the
// GroupNorm having run once per element in group_norm_nhwc) and store bf16 NHWC (ConvParams::y16).
#include <atomic>

#include "cuda/check.cuh"
#include "cuda/conv_common.cuh"
#include "cuda/conv_variants.h"
#include "cuda/variants.h"

namespace vtv::cuda {

namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void validate_nhwc(const ConvNhwcArgs& a) {
  const std::string n = "conv2d_nhwc";
  check(a.N >= 0 && a.Ci > 0 && a.H > 0 && a.W > 0 && a.Co > 0,
        n + ": sizes must be positive (N " + std::to_string(a.N) + ", Ci " + std::to_string(a.Ci) + ", H " +
            std::to_string(a.H) + ", W " + std::to_string(a.W) + ", Co " + std::to_string(a.Co) + ")");
  check(a.k == 1 || a.k == 3, n + ": kernel size must be 1 or 3, got " + std::to_string(a.k));
  check(a.Ci % 8 == 0, n + ": Ci must be a multiple of 8 (16-byte channel vectors), got " + std::to_string(a.Ci));
  check(a.Ci <= kConvMaxCi, n + ": Ci must be at most " + std::to_string(kConvMaxCi) + ", got " + std::to_string(a.Ci));
  check(a.N <= 65535, n + ": at most 65535 samples per launch, got " + std::to_string(a.N));
  check(a.x && a.w_taps && a.bias && a.y, n + ": x, w_taps, bias and y must be set");
  check(static_cast<const void*>(a.x) != static_cast<const void*>(a.y), n + ": x must not alias y");
  check(a.residual != a.x || a.residual == nullptr, n + ": residual must not alias x");
  check(aligned16(a.x) && aligned16(a.w_taps) && aligned16(a.y) && aligned16(a.residual),
        n + ": x, w_taps, residual and y must be 16-byte aligned");
  const int64_t ho = int64_t(a.H) << (a.upsample2x ? 1 : 0), wo = int64_t(a.W) << (a.upsample2x ? 1 : 0);
  check(ho * wo * a.Co < (int64_t(1) << 31) && int64_t(a.H) * a.W * a.Ci < (int64_t(1) << 31),
        n + ": a sample's map is too large");
  if (a.stats_out) {
    check(a.stats_groups > 0 && a.Co % a.stats_groups == 0,
          n + ": Co " + std::to_string(a.Co) + " is not a multiple of stats_groups " + std::to_string(a.stats_groups));
  }
}

}  // namespace

// The compute capability is asked once per device (choose_variant asks on every call, also inside graph
// captures).
bool nhwc_decoder_supported() {
  static std::atomic<int> state[kMaxVariantDevices];  // 0 not asked yet, 1 yes, 2 no
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxVariantDevices) return false;
  int s = state[device].load();
  if (s == 0) {
    int major = 0;
    s = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 8 ? 1 : 2;
    state[device].store(s);
  }
  return s == 1;
}

void conv2d_nhwc(const ConvNhwcArgs& a, cudaStream_t stream) {
  validate_nhwc(a);
  if (a.stats_out) {
    VTV_CUDA_CHECK(cudaMemsetAsync(a.stats_out, 0, sizeof(double) * 2 * size_t(a.N) * a.stats_groups, stream));
  }
  const ConvParams p = conv_params(a);
  const KernelVariant& v = choose_variant(conv_nhwc_shape(a.N, a.Ci, a.Co, a.H, a.W, a.upsample2x, a.k));
  const std::string name = v.name;
  if (name == "wgmma" || name == "wgmma_n256") {
    conv_nhwc_launch_wgmma(p, a.N, name == "wgmma" ? 128 : 256, a.x, a.w_taps, stream);
    note_variant_run(KernelFamily::ConvNhwc, v.name);
    return;
  }
  check(name == "mma_sync", "conv2d_nhwc: no kernel for variant '" + name + "'");
  check(v.unsupported(conv_nhwc_shape(a.N, a.Ci, a.Co, a.H, a.W, a.upsample2x, a.k)).empty(),
        "conv2d_nhwc: the device cannot run the NHWC convolutions (they need sm_80 or newer)");
  conv_nhwc_launch_mma_sync(p, a.N, a.x, a.w_taps, stream);
  note_variant_run(KernelFamily::ConvNhwc, "mma_sync");
}

}  // namespace vtv::cuda
