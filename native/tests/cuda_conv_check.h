// Shared by the CUDA convolution tests (cuda_vqgan_test.cc: decoder convs; cuda_vqgan_encoder_test.cc:
// the encoder's Downsample): run one cuda::conv2d (its output poisoned by the caller), compare it with the
// CPU reference, report the line check.sh tabulates, and, when the conv leaves GroupNorm statistics,
// check them by normalising the GPU output with them (group_norm_apply) against cpu::group_norm of the
// same output.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "cpu/norm.h"
#include "cuda/device_buffer.h"
#include "cuda/vqgan_kernels.h"
#include "cuda_test_util.h"

namespace vtv::test {

// a: the conv (outputs on the device); Ho x Wo: its output size; ref: the CPU output; norm_seed: the seed
// of the random affine used for the statistics check (and norm_seed + 1).
inline void check_conv_output(const cuda::ConvArgs& a, int64_t Ho, int64_t Wo, const std::vector<float>& ref, bool bf16,
                              const std::string& name, const std::string& report_name, uint32_t norm_seed, float eps) {
  const int64_t out_n = a.N * a.Co * Ho * Wo;
  cuda::GpuTimer timer;
  timer.start();
  cuda::conv2d(a);
  const float ms = timer.stop_ms();
  cuda::device_synchronize();
  std::vector<float> got(static_cast<size_t>(out_n));
  cuda::copy_to_host(got.data(), a.y, sizeof(float) * got.size());
  const Diff d = compare(got, ref);
  const double tol = bf16 ? 5e-3 : 1e-4;
  EXPECT_LE(d.rel, tol) << name << (bf16 ? " bf16: " : " fp32: ") << describe(d);
  report(report_name, bf16 ? "bf16" : "fp32", d.rel, -1, ms);

  if (!a.stats_out) return;
  // Normalise the GPU output with the GPU's statistics; the CPU normalises the same values two-pass.
  std::vector<float> go = random_vector(size_t(a.Co), norm_seed, 0.1f, 1.0f), bo = random_vector(size_t(a.Co), norm_seed + 1, 0.1f);
  cuda::DeviceBuffer<float> dgo(go), dbo(bo), dn(static_cast<size_t>(out_n));
  dn.poison();
  cuda::group_norm_apply(a.y, a.N, a.Co, Ho * Wo, cuda::GroupNormIn{a.stats_out, dgo.get(), dbo.get(), a.stats_groups, eps, true},
                         dn.get());
  cuda::device_synchronize();
  std::vector<float> nref(static_cast<size_t>(out_n));
  cpu::group_norm(pool(), got.data(), a.N, a.Co, Ho * Wo, a.stats_groups, eps, go.data(), bo.data(), true, nref.data());
  const Diff dn_diff = compare(dn.to_host(static_cast<size_t>(out_n)), nref);
  EXPECT_LE(dn_diff.rel, 1e-4) << name << ": GroupNorm from the epilogue's statistics: " << describe(dn_diff);
}

}  // namespace vtv::test
