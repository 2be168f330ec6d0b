// VqganEncoderCuda: the encoder's weights on the device and model::VqganEncoder::run as a sequence of
// kernels on one stream (direct launches: the encoder runs once per target canvas set, not per search
// step, so it is not captured as a graph).
#include "cuda/vqgan_encoder_cuda.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/device_buffer.h"
#include "cuda/vqgan_device_blocks.h"
#include "cuda/vqgan_device_weights.h"
#include "cuda/vqgan_kernels.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

constexpr int64_t kPlane = int64_t(kImage) * kImage;
constexpr int kInputChannels = 8;  // conv_in's 3 channels padded to the conv kernels' multiple of 8

struct DevDownLevel {
  std::vector<DevResnet> blocks;
  std::vector<DevAttn> attn;
  DevConv downsample;
  bool has_downsample = false;
};

}  // namespace

// The ring, blocks and stream come from VqganDeviceBlocks (shared with VqganCuda).
struct VqganEncoderCuda::State : VqganDeviceBlocks {
  int max_chunk;
  int V = 0, E = 0;
  DevConv conv_in;  // [ch][8][3][3]: input channels 3..7 zero
  std::vector<DevDownLevel> down;
  DevResnet mid1, mid2;
  DevAttn mid_attn;
  DevNorm norm_out;
  DevConv conv_out, quant_conv;
  DeviceBuffer<float> codebook;       // [V][E]
  DeviceBuffer<double> code_norms;    // [V]: |e_v|^2 summed in order in double, as the CPU

  // Activations of one pass (capacity canvases; the ring and attention scratch in VqganDeviceBlocks),
  // grown on demand.
  int64_t capacity = 0;
  DeviceBuffer<float> canvases, input, z;
  DeviceBuffer<int32_t> tokens;

  // canvases (device, n) -> z and tokens (device).
  void forward(int64_t n) {
    H = W = kImage;
    map_pixels(canvases.get(), n, kPlane, kInputChannels, input.get(), stream);
    conv(conv_in, input.get(), n, Resample::None, buf(0), nullptr, GroupNormIn{}, st(0));
    cur = 0;
    for (const DevDownLevel& L : down) {
      for (size_t j = 0; j < L.blocks.size(); ++j) {
        resnet(L.blocks[j], n);
        if (!L.attn.empty()) attention(L.attn[j], n);
      }
      if (L.has_downsample) resample(L.downsample, n, Resample::Down2x);
    }
    resnet(mid1, n);
    attention(mid_attn, n);
    resnet(mid2, n);
    // norm_out + swish as conv_out's prologue, then quant_conv into z.
    const int t1 = (cur + 1) % 3;
    conv(conv_out, buf(cur), n, Resample::None, buf(t1), nullptr, gn(norm_out, st(cur), true), nullptr);
    conv(quant_conv, buf(t1), n, Resample::None, z.get(), nullptr, GroupNormIn{}, nullptr);
    nearest_code(z.get(), n, E, H * W, codebook.get(), code_norms.get(), V, tokens.get(), stream);
  }

  void ensure_capacity(int64_t n) {
    if (n <= capacity) return;
    const size_t N = static_cast<size_t>(n);
    canvases.resize(N * 3 * kPlane);
    input.resize(N * kInputChannels * kPlane);
    reserve(n);
    z.resize(N * static_cast<size_t>(E) * kPatches);
    tokens.resize(N * kPatches);
    capacity = n;
  }
};

VqganEncoderCuda::VqganEncoderCuda(const ModelConfig& config, const model::VqganEncoderW& w, Precision precision,
                                   int max_chunk)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  config.validate();
  check(max_chunk > 0, "VqganEncoderCuda: max_chunk must be positive, got " + std::to_string(max_chunk));
  s.c = config;
  s.precision = precision;
  s.max_chunk = max_chunk;
  const VqganConfig& q = config.vq;
  s.V = q.n_embed;
  s.E = q.embed_dim;
  check(static_cast<int>(w.down.size()) == q.levels(), "VqganEncoderCuda: the weights hold " +
                                                           std::to_string(w.down.size()) + " levels, the config " +
                                                           std::to_string(q.levels()));
  check(w.codebook != nullptr, "VqganEncoderCuda: the codebook (quantize.embedding.weight) is not bound");
  check(w.conv_in.w && w.conv_in.in == 3 && w.conv_in.k == 3,
        "VqganEncoderCuda: encoder.conv_in must be a bound 3x3 conv from 3 channels");
  check(w.quant_conv.w && w.quant_conv.k == 1 && w.quant_conv.out == q.embed_dim,
        "VqganEncoderCuda: quant_conv must be a bound 1x1 conv to embed_dim " + std::to_string(q.embed_dim));

  // conv_in with its input channels padded from 3 to 8 by zero weights.
  {
    const int Co = w.conv_in.out;
    std::vector<float> padded(size_t(Co) * kInputChannels * 9, 0.0f);
    for (int co = 0; co < Co; ++co)
      for (int ci = 0; ci < 3; ++ci)
        std::copy(w.conv_in.w + (int64_t(co) * 3 + ci) * 9, w.conv_in.w + (int64_t(co) * 3 + ci + 1) * 9,
                  padded.begin() + (int64_t(co) * kInputChannels + ci) * 9);
    s.conv_in = upload_conv_raw(padded.data(), w.conv_in.b, Co, kInputChannels, 3, precision, "encoder.conv_in");
  }

  // Upload in forward order while walking the shapes for the largest maps.
  int res = kImage;
  auto see = [&](int64_t channels, int64_t side) { s.max_elems = std::max(s.max_elems, channels * side * side); };
  see(w.conv_in.out, res);
  s.down.resize(static_cast<size_t>(q.levels()));
  for (int i = 0; i < q.levels(); ++i) {
    const model::VqDownLevelW& L = w.down[static_cast<size_t>(i)];
    DevDownLevel& D = s.down[static_cast<size_t>(i)];
    const std::string name = "encoder.down." + std::to_string(i);
    check(L.attn.empty() || L.attn.size() == L.blocks.size(),
          "VqganEncoderCuda: " + name + " has attention on some blocks only");
    for (size_t j = 0; j < L.blocks.size(); ++j) {
      D.blocks.push_back(upload_resnet(L.blocks[j], precision, name + ".block." + std::to_string(j)));
      see(L.blocks[j].in, res);
      see(L.blocks[j].out, res);
      if (!L.attn.empty()) {
        check(res * res <= 256, "VqganEncoderCuda: " + name + " has attention at " + std::to_string(res) + "x" +
                                    std::to_string(res) + "; the attention kernel takes at most 256 positions");
        D.attn.push_back(upload_attn(L.attn[j], precision, name + ".attn." + std::to_string(j)));
        s.max_attn = std::max<int64_t>(s.max_attn, int64_t(L.attn[j].channels) * res * res);
      }
    }
    D.has_downsample = L.downsample.w != nullptr;
    check(D.has_downsample == (i != q.levels() - 1),
          "VqganEncoderCuda: " + name + (i != q.levels() - 1 ? " lacks" : " has") + " a downsample conv");
    if (D.has_downsample) {
      D.downsample = upload_conv(L.downsample, precision, name + ".downsample.conv");
      res = downsampled_side(res);
      see(L.channels, res);
    }
  }
  check(res == kGrid, "VqganEncoderCuda: the down-sampling does not take 224x224 pixels to a 14x14 token grid");
  s.mid1 = upload_resnet(w.mid_block_1, precision, "encoder.mid.block_1");
  s.mid_attn = upload_attn(w.mid_attn_1, precision, "encoder.mid.attn_1");
  s.max_attn = std::max<int64_t>(s.max_attn, int64_t(w.mid_attn_1.channels) * res * res);
  s.mid2 = upload_resnet(w.mid_block_2, precision, "encoder.mid.block_2");
  s.norm_out = upload_norm(w.norm_out, w.conv_out.in, "encoder.norm_out");
  s.conv_out = upload_conv(w.conv_out, precision, "encoder.conv_out");
  see(w.conv_out.out, res);
  s.quant_conv = upload_conv(w.quant_conv, precision, "quant_conv");

  // The codebook and its squared norms, the latter as model::VqganEncoder computes them.
  s.codebook = upload_weight(w.codebook, int64_t(s.V) * s.E, "quantize.embedding.weight");
  std::vector<double> norms(static_cast<size_t>(s.V));
  for (int v = 0; v < s.V; ++v) {
    double acc = 0;
    for (int e = 0; e < s.E; ++e) acc += double(w.codebook[int64_t(v) * s.E + e]) * w.codebook[int64_t(v) * s.E + e];
    norms[static_cast<size_t>(v)] = acc;
  }
  s.code_norms = DeviceBuffer<double>(norms);
  VTV_CUDA_CHECK(cudaStreamCreate(&s.stream));
  device_synchronize();
}

VqganEncoderCuda::~VqganEncoderCuda() {
  if (s_ && s_->stream) {
    cudaStreamSynchronize(s_->stream);
    cudaStreamDestroy(s_->stream);
  }
}

Precision VqganEncoderCuda::precision() const { return s_->precision; }

size_t VqganEncoderCuda::weight_bytes() const {
  const State& s = *s_;
  size_t b = conv_bytes(s.conv_in) + conv_bytes(s.conv_out) + conv_bytes(s.quant_conv) + norm_bytes(s.norm_out);
  b += resnet_bytes(s.mid1) + resnet_bytes(s.mid2) + attn_bytes(s.mid_attn);
  for (const DevDownLevel& L : s.down) {
    for (const auto& r : L.blocks) b += resnet_bytes(r);
    for (const auto& a : L.attn) b += attn_bytes(a);
    b += conv_bytes(L.downsample);
  }
  b += s.codebook.size() * sizeof(float) + s.code_norms.size() * sizeof(double);
  return b;
}

int64_t VqganEncoderCuda::device_bytes_per_sample() const {
  const State& s = *s_;
  return s.bytes_per_sample() + ((3 + kInputChannels) * kPlane + int64_t(s.E) * kPatches) * int64_t(sizeof(float)) +
         kPatches * int64_t(sizeof(int32_t));
}

void VqganEncoderCuda::encode(const float* canvases_host, int64_t n, int32_t* tokens_host, float* latents_host) {
  State& s = *s_;
  check(n >= 0, "VqganEncoderCuda::encode: n must be >= 0, got " + std::to_string(n));
  if (n == 0) return;
  check(canvases_host != nullptr, "VqganEncoderCuda::encode: canvases is null");
  check(tokens_host != nullptr, "VqganEncoderCuda::encode: tokens is null");
  const int64_t z_floats = int64_t(s.E) * kPatches;
  for (int64_t i0 = 0; i0 < n; i0 += s.max_chunk) {
    const int64_t m = std::min<int64_t>(s.max_chunk, n - i0);
    s.ensure_capacity(m);
    VTV_CUDA_CHECK(cudaMemcpyAsync(s.canvases.get(), canvases_host + i0 * 3 * kPlane,
                                   sizeof(float) * size_t(m * 3 * kPlane), cudaMemcpyHostToDevice, s.stream));
    s.forward(m);
    VTV_CUDA_CHECK(cudaMemcpyAsync(tokens_host + i0 * kPatches, s.tokens.get(), sizeof(int32_t) * size_t(m * kPatches),
                                   cudaMemcpyDeviceToHost, s.stream));
    if (latents_host) {
      VTV_CUDA_CHECK(cudaMemcpyAsync(latents_host + i0 * z_floats, s.z.get(), sizeof(float) * size_t(m * z_floats),
                                     cudaMemcpyDeviceToHost, s.stream));
    }
    // The device buffers are reused by the next pass, and the caller reads the host arrays on return.
    VTV_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  }
}

}  // namespace vtv::cuda
