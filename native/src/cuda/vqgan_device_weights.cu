// Uploads of the VQGAN's convolutions, norms and blocks (see vqgan_device_weights.h).
#include "cuda/vqgan_device_weights.h"

#include <algorithm>
#include <vector>

#include "cuda/kernels.h"
#include "cuda/vqgan_kernels.h"
#include "vtv/error.h"

namespace vtv::cuda {

DeviceBuffer<float> upload_weight(const float* host, int64_t count, const std::string& what) {
  check(host != nullptr, "VQGAN weights: '" + what + "' is null");
  DeviceBuffer<float> d(static_cast<size_t>(count));
  d.upload(host, static_cast<size_t>(count));
  return d;
}

DevConv upload_conv_raw(const float* w, const float* b, int out, int in, int k, Precision p, const std::string& what) {
  DevConv d;
  d.in = in;
  d.out = out;
  d.k = k;
  const int64_t count = int64_t(out) * in * k * k;
  d.b = upload_weight(b, out, what + ".bias");
  if (p == Precision::F32) {
    d.w32 = upload_weight(w, count, what + ".weight");
  } else {
    DeviceBuffer<float> tmp = upload_weight(w, count, what + ".weight");
    d.w16.resize(static_cast<size_t>(count));
    f32_to_bf16(tmp.get(), count, d.w16.get());
    if (k == 3) {
      d.w16_taps.resize(static_cast<size_t>(count));
      conv_weights_to_taps(d.w16.get(), out, in, d.w16_taps.get());
    }
    device_synchronize();
  }
  return d;
}

DevConv upload_conv(const model::ConvW& w, Precision p, const std::string& what) {
  return upload_conv_raw(w.w, w.b, w.out, w.in, w.k, p, what);
}

DevNorm upload_norm(const model::NormW& w, int64_t c, const std::string& what) {
  return DevNorm{upload_weight(w.gamma, c, what + ".weight"), upload_weight(w.beta, c, what + ".bias")};
}

DevResnet upload_resnet(const model::ResnetBlockW& w, Precision p, const std::string& what) {
  DevResnet d;
  d.norm1 = upload_norm(w.norm1, w.in, what + ".norm1");
  d.conv1 = upload_conv(w.conv1, p, what + ".conv1");
  d.norm2 = upload_norm(w.norm2, w.out, what + ".norm2");
  d.conv2 = upload_conv(w.conv2, p, what + ".conv2");
  d.has_nin = w.nin_shortcut.w != nullptr;
  if (d.has_nin) d.nin = upload_conv(w.nin_shortcut, p, what + ".nin_shortcut");
  return d;
}

DevAttn upload_attn(const model::AttnBlockW& w, Precision p, const std::string& what) {
  DevAttn d;
  const int C = w.channels;
  d.channels = C;
  d.norm = upload_norm(w.norm, C, what + ".norm");
  std::vector<float> wq(size_t(3) * C * C), bq(size_t(3) * C);
  const model::ConvW* parts[3] = {&w.q, &w.k, &w.v};
  for (int i = 0; i < 3; ++i) {
    check(parts[i]->w && parts[i]->b && parts[i]->in == C && parts[i]->out == C && parts[i]->k == 1,
          "VQGAN weights: " + what + " q/k/v must be 1x1 " + std::to_string(C) + " -> " + std::to_string(C));
    std::copy(parts[i]->w, parts[i]->w + int64_t(C) * C, wq.begin() + int64_t(i) * C * C);
    std::copy(parts[i]->b, parts[i]->b + C, bq.begin() + int64_t(i) * C);
  }
  d.qkv = upload_conv_raw(wq.data(), bq.data(), 3 * C, C, 1, p, what + ".qkv");
  d.proj = upload_conv(w.proj_out, p, what + ".proj_out");
  return d;
}

size_t conv_bytes(const DevConv& c) {
  return (c.w32.size() + c.b.size()) * sizeof(float) + c.w16.size() * sizeof(uint16_t);
}
size_t norm_bytes(const DevNorm& n) { return (n.gamma.size() + n.beta.size()) * sizeof(float); }
size_t resnet_bytes(const DevResnet& r) {
  return norm_bytes(r.norm1) + norm_bytes(r.norm2) + conv_bytes(r.conv1) + conv_bytes(r.conv2) + conv_bytes(r.nin);
}
size_t attn_bytes(const DevAttn& a) { return norm_bytes(a.norm) + conv_bytes(a.qkv) + conv_bytes(a.proj); }

}  // namespace vtv::cuda
