// MaeCuda: weights on the device and the forward of model::MaeForward::run as a sequence of kernels.
#include "cuda/mae_cuda.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/device_buffer.h"
#include "cuda/graph_cache.h"
#include "cuda/kernels.h"
#include "cuda/variants.h"
#include "model/token_layout.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

constexpr int kPatchVec = 3 * kPatch * kPatch;
constexpr int64_t kCanvasFloats = int64_t(3) * kImage * kImage;

struct DevLinear {
  DeviceBuffer<float> w32;
  DeviceBuffer<uint16_t> w16;
  DeviceBuffer<float> b;
  int64_t in = 0, out = 0;
};

struct DevNorm {
  DeviceBuffer<float> gamma, beta;
};

struct DevBlock {
  DevNorm norm1, norm2;
  DevLinear qkv, proj, fc1, fc2;
};

DeviceBuffer<float> upload(const float* host, int64_t count, const char* what) {
  check(host != nullptr, std::string("MaeCuda: weight '") + what + "' is null");
  DeviceBuffer<float> d(static_cast<size_t>(count));
  d.upload(host, static_cast<size_t>(count));
  return d;
}

DevLinear upload_linear(const model::LinearW& w, int64_t out, int64_t in, Precision p, const char* what) {
  DevLinear d;
  d.in = in;
  d.out = out;
  d.b = upload(w.b, out, what);
  if (p == Precision::F32) {
    d.w32 = upload(w.w, out * in, what);
  } else {
    DeviceBuffer<float> tmp = upload(w.w, out * in, what);
    d.w16.resize(static_cast<size_t>(out * in));
    f32_to_bf16(tmp.get(), out * in, d.w16.get());
    device_synchronize();
  }
  return d;
}

DevNorm upload_norm(const model::NormW& w, int64_t c, const char* what) {
  return DevNorm{upload(w.gamma, c, what), upload(w.beta, c, what)};
}

DevBlock upload_block(const model::TransformerBlockW& w, int64_t dim, int64_t hidden, Precision p) {
  DevBlock b;
  b.norm1 = upload_norm(w.norm1, dim, "norm1");
  b.norm2 = upload_norm(w.norm2, dim, "norm2");
  b.qkv = upload_linear(w.qkv, 3 * dim, dim, p, "attn.qkv");
  b.proj = upload_linear(w.proj, dim, dim, p, "attn.proj");
  b.fc1 = upload_linear(w.fc1, hidden, dim, p, "mlp.fc1");
  b.fc2 = upload_linear(w.fc2, dim, hidden, p, "mlp.fc2");
  return b;
}

size_t linear_bytes(const DevLinear& l) {
  return l.w32.size() * sizeof(float) + l.w16.size() * sizeof(uint16_t) + l.b.size() * sizeof(float);
}

}  // namespace

struct MaeCuda::State {
  ModelConfig c;
  Precision precision;
  int max_chunk;
  cudaStream_t stream = nullptr;  // every kernel of a pass runs here (a graph capture needs a stream)
  GraphCache graphs;              // one graph per pass shape and buffer set (see graph_key)
  DeviceBuffer<float> cls, pos, mask_token, dpos;
  DevLinear patch, decoder_embed, decoder_pred;
  std::vector<DevBlock> enc, dec;
  DevNorm norm, decoder_norm;
  // Token layout tables per mode (index 0 one-shot, 1 zero-shot): encoder patch ids, decoder patch ids,
  // and for each of the 196 patches its encoder slot (1..) or -1 when it is a mask token.
  DeviceBuffer<int32_t> enc_ids[2], dec_ids[2], slot_of_patch[2];
  // Activations of one pass, grown on demand.
  DeviceBuffer<float> x, h, qkv, o, hid, patches, emb, canvases, logits;
  // bf16 mode: the bf16 copies of the Linears' inputs that a variant reading bf16 activations takes
  // (variants.h), written by their producer (LayerNorm, fc1's epilogue) or converted (attention output,
  // patches, the encoder output, the head's input) only when the chosen variant reads them.
  DeviceBuffer<uint16_t> h16, hid16;
  DeviceBuffer<float> means_enc, means_dec, cap_enc, cap_dec;
  // The task means a run reads: the uploaded tables above, or tables the caller keeps on the device.
  const float* run_means_enc = nullptr;
  const float* run_means_dec = nullptr;
  DeviceBuffer<int32_t> canvas_of_sample, tokens;
  // Token scoring: a pass's target tokens [n][49] and its per-sample losses and metrics.
  DeviceBuffer<int32_t> target_tokens;
  DeviceBuffer<float> token_losses, token_metrics;
  DeviceBuffer<uint8_t> masks;
  DeviceBuffer<unsigned long long> keys;

  // Whether the bf16 Linear of this shape runs a variant that reads the bf16 activations (x_bf16).
  bool reads_bf16(const DevLinear& w, int64_t M) const {
    return precision == Precision::BF16 &&
           std::string(choose_variant(gemm_shape(M, w.out, w.in, true)).name) != "baseline";
  }

  // y (and/or y16) = Linear w of x_in / x16_in. x_in may be null when x16_in is set and the chosen variant
  // reads it; `convert`: x16_in is scratch, filled from x_in here when the chosen variant reads it.
  void linear(const DevLinear& w, const float* x_in, int64_t M, float* y, Epilogue ep = Epilogue::None,
              const float* residual = nullptr, unsigned long long* argmax_keys = nullptr, uint16_t* x16_in = nullptr,
              uint16_t* y16 = nullptr, bool convert = false) {
    LinearArgs a;
    a.x = x_in;
    a.M = M;
    a.K = w.in;
    a.N = w.out;
    if (precision == Precision::F32) {
      a.w_f32 = w.w32.get();
    } else {
      a.w_bf16 = w.w16.get();
      if (x16_in && reads_bf16(w, M)) {
        if (convert) f32_to_bf16(x_in, M * w.in, x16_in, stream);
        a.x_bf16 = x16_in;
      }
    }
    a.bias = w.b.get();
    a.y = y;
    a.y_bf16 = y16;
    a.epilogue = ep;
    a.residual = residual;
    a.argmax_keys = argmax_keys;
    cuda::linear(a, stream);
  }

  void block(const DevBlock& w, int64_t n, int N, int dim, int heads, const HeadPatch* patch, float* capture) {
    const int64_t rows = n * N;
    const int dh = dim / heads;
    // timm: attn = (q @ k^T) * head_dim**-0.5, the Python double rounded to fp32 (as model/mae.cc).
    const float scale = static_cast<float>(std::pow(double(dh), -0.5));
    cuda::layer_norm(x.get(), rows, dim, w.norm1.gamma.get(), w.norm1.beta.get(), c.ln_eps, h.get(), stream,
                     reads_bf16(w.qkv, rows) ? h16.get() : nullptr);
    linear(w.qkv, h.get(), rows, qkv.get(), Epilogue::None, nullptr, nullptr, h16.get());
    mha_attention(qkv.get(), n, N, heads, dh, scale, o.get(), patch, stream);
    if (capture) add_batch_sum(o.get(), n, int64_t(N) * dim, capture, stream);
    linear(w.proj, o.get(), rows, x.get(), Epilogue::None, x.get(), nullptr, h16.get(), nullptr, true);
    cuda::layer_norm(x.get(), rows, dim, w.norm2.gamma.get(), w.norm2.beta.get(), c.ln_eps, h.get(), stream,
                     reads_bf16(w.fc1, rows) ? h16.get() : nullptr);
    // fc1's epilogue writes what fc2 reads: the bf16 copy only, or the fp32 values only.
    const bool fc2_bf16 = reads_bf16(w.fc2, rows);
    linear(w.fc1, h.get(), rows, fc2_bf16 ? nullptr : hid.get(), Epilogue::Gelu, nullptr, nullptr, h16.get(),
           fc2_bf16 ? hid16.get() : nullptr);
    linear(w.fc2, fc2_bf16 ? nullptr : hid.get(), rows, x.get(), Epilogue::None, x.get(), nullptr, hid16.get());
  }

  int64_t floats_per_sample(Mode mode, bool with_logits) const {
    const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode), P = Nd - 1, Np = Ne - 1;
    const int64_t E = c.enc_dim, D = c.dec_dim, R = c.mlp_ratio;
    const int64_t act = std::max(Ne * E, Nd * D);
    // bf16 mode: h16 and hid16 at half a float per element.
    const int64_t bf16_copies =
        precision == Precision::BF16 ? (std::max({act, P * D, Np * E, Np * kPatchVec}) + R * act + 1) / 2 : 0;
    return act /*x*/ + std::max({act, P * D, Np * E}) /*h*/ + 3 * act /*qkv*/ + act /*o*/ + R * act /*hid*/ +
           Np * kPatchVec + Ne * D + (with_logits ? P * c.vocab() : 0) + 2 /*keys*/ * P + bf16_copies;
  }

  void ensure_capacity(Mode mode, int64_t n, bool with_logits) {
    const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode), P = Nd - 1, Np = Ne - 1;
    const int64_t E = c.enc_dim, D = c.dec_dim, R = c.mlp_ratio;
    const int64_t act = std::max(Ne * E, Nd * D);
    auto sz = [&](int64_t per) { return static_cast<size_t>(n * per); };
    x.resize(sz(act));
    h.resize(sz(std::max({act, P * D, Np * E})));
    qkv.resize(sz(3 * act));
    o.resize(sz(act));
    hid.resize(sz(R * act));
    if (precision == Precision::BF16) {
      h16.resize(sz(std::max({act, P * D, Np * E, Np * kPatchVec})));
      hid16.resize(sz(R * act));
    }
    patches.resize(sz(Np * kPatchVec));
    emb.resize(sz(Ne * D));
    if (with_logits) logits.resize(sz(P * c.vocab()));
    keys.resize(sz(P));
    tokens.resize(sz(kPatches));
    canvas_of_sample.resize(sz(1));
  }

  void pass(const model::MaeChunk& chunk, int64_t s0, int64_t n, const MaeCudaOutputs& out, int64_t mask_bytes,
            const MaeCudaRunOptions& options);

  // What a pass's kernels are: its shape and every device buffer it names (a buffer that grows moves, and
  // a graph captured before would write to the old one).
  struct Kernels {
    Mode mode;
    int64_t n;
    bool patching, capture_enc, capture_dec, logits;
    int64_t mask_bytes;
  };
  std::vector<int64_t> graph_key(const Kernels& k) const {
    // The tuning table decides which kernels a pass enqueues: a new table needs new graphs.
    std::vector<int64_t> key{int64_t(k.mode), k.n, k.patching, k.capture_enc, k.capture_dec, k.logits, k.mask_bytes,
                             static_cast<int64_t>(tuning_generation())};
    for (const void* p : {(const void*)x.get(), (const void*)h.get(), (const void*)qkv.get(), (const void*)o.get(),
                          (const void*)hid.get(), (const void*)patches.get(), (const void*)emb.get(),
                          (const void*)canvases.get(), (const void*)logits.get(), (const void*)run_means_enc,
                          (const void*)run_means_dec, (const void*)cap_enc.get(), (const void*)cap_dec.get(),
                          (const void*)canvas_of_sample.get(), (const void*)tokens.get(), (const void*)masks.get(),
                          (const void*)keys.get(), (const void*)h16.get(), (const void*)hid16.get()}) {
      key.push_back(reinterpret_cast<int64_t>(p));
    }
    return key;
  }
  // The kernels of one pass, inputs already on the device; `out` (direct runs only) takes the encoder
  // and decoder outputs as they pass by.
  void kernels(const Kernels& k, const MaeCudaOutputs* out, int64_t s0);
  // One transformer stack (the encoder's or the decoder's) on x, then its final norm. Layer l's patch
  // bits start at bit_base + l*heads*N, its means (one-shot positions) at means + l*means_rows*dim; its
  // capture sums (when `capture` is set) at capture + l*N*dim.
  void stack(const Kernels& k, const std::vector<DevBlock>& blocks, int64_t n, int N, int dim, int heads,
             int64_t bit_base, const float* means, int means_rows, float* capture, const DevNorm& final_norm) {
    for (size_t l = 0; l < blocks.size(); ++l) {
      HeadPatch hp;
      if (k.patching) {
        hp.mask = masks.get();
        hp.mask_stride = k.mask_bytes;
        hp.bit_offset = bit_base + int64_t(l) * heads * N;
        hp.means = means + int64_t(l) * means_rows * dim;
        hp.position_shift = k.mode == Mode::ZeroShot ? kZeroShotShift : 0;
      }
      float* cap = capture ? capture + int64_t(l) * N * dim : nullptr;
      block(blocks[l], n, N, dim, heads, k.patching ? &hp : nullptr, cap);
    }
    cuda::layer_norm(x.get(), n * N, dim, final_norm.gamma.get(), final_norm.beta.get(), c.ln_eps, x.get(), stream);
  }
};

MaeCuda::MaeCuda(const ModelConfig& config, const model::MaeW& w, Precision precision, int max_chunk, bool use_graphs)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.c = config;
  s.precision = precision;
  s.max_chunk = max_chunk;
  s.graphs.set_enabled(use_graphs);
  config.validate();
  check(max_chunk > 0, "MaeCuda: max_chunk must be positive, got " + std::to_string(max_chunk));
  check(static_cast<int>(w.blocks.size()) == config.enc_depth && static_cast<int>(w.decoder_blocks.size()) == config.dec_depth,
        "MaeCuda: the weights hold " + std::to_string(w.blocks.size()) + " encoder / " +
            std::to_string(w.decoder_blocks.size()) + " decoder blocks, the config " + std::to_string(config.enc_depth) +
            " / " + std::to_string(config.dec_depth));
  for (int dh : {config.enc_head_dim(), config.dec_head_dim()}) {
    check(dh == 8 || dh == 16 || dh == 32 || dh == 64, "MaeCuda: head dims must be 8, 16, 32 or 64, got " + std::to_string(dh));
  }
  check(config.enc_dim % 8 == 0 && config.dec_dim % 8 == 0, "MaeCuda: embedding widths must be multiples of 8");
  mha_prepare();  // the attention's device attributes, queried here rather than inside a graph capture
  prepare_kernel_variants();  // likewise the GEMM and conv variants' (variants.h)
  const int64_t E = config.enc_dim, D = config.dec_dim, T = kPatches + 1, R = config.mlp_ratio;
  s.cls = upload(w.cls_token, E, "cls_token");
  s.pos = upload(w.pos_embed, T * E, "pos_embed");
  s.patch = upload_linear(model::LinearW{w.patch_w, w.patch_b}, E, kPatchVec, precision, "patch_embed.proj");
  for (const auto& b : w.blocks) s.enc.push_back(upload_block(b, E, E * R, precision));
  s.norm = upload_norm(w.norm, E, "norm");
  s.decoder_embed = upload_linear(w.decoder_embed, D, E, precision, "decoder_embed");
  s.mask_token = upload(w.mask_token, D, "mask_token");
  s.dpos = upload(w.decoder_pos_embed, T * D, "decoder_pos_embed");
  for (const auto& b : w.decoder_blocks) s.dec.push_back(upload_block(b, D, D * R, precision));
  s.decoder_norm = upload_norm(w.decoder_norm, D, "decoder_norm");
  s.decoder_pred = upload_linear(w.decoder_pred, config.vocab(), D, precision, "decoder_pred");

  for (int mi = 0; mi < 2; ++mi) {
    const Mode mode = mi == 0 ? Mode::OneShot : Mode::ZeroShot;
    std::vector<int> enc_ids = model::encoder_patch_ids(mode), dec_ids = model::decoder_patch_ids(mode);
    std::vector<int32_t> slot(kPatches, -1);
    for (size_t i = 0; i < enc_ids.size(); ++i) slot[static_cast<size_t>(enc_ids[i])] = static_cast<int32_t>(i + 1);
    check(int(enc_ids.size()) == enc_tokens(mode) - 1 && int(dec_ids.size()) == dec_tokens(mode) - 1,
          "MaeCuda: token layout disagrees with the mode's sequence lengths");
    s.enc_ids[mi] = DeviceBuffer<int32_t>(std::vector<int32_t>(enc_ids.begin(), enc_ids.end()));
    s.dec_ids[mi] = DeviceBuffer<int32_t>(std::vector<int32_t>(dec_ids.begin(), dec_ids.end()));
    s.slot_of_patch[mi] = DeviceBuffer<int32_t>(slot);
  }
  VTV_CUDA_CHECK(cudaStreamCreate(&s.stream));
  device_synchronize();
}

MaeCuda::~MaeCuda() {
  if (!s_) return;
  s_->graphs.clear();
  if (s_->stream) {
    cudaStreamSynchronize(s_->stream);
    cudaStreamDestroy(s_->stream);
  }
}

Precision MaeCuda::precision() const { return s_->precision; }
bool MaeCuda::graphs_enabled() const { return s_->graphs.enabled(); }
int MaeCuda::graphs_captured() const { return s_->graphs.size(); }
const std::string& MaeCuda::graph_capture_error() const { return s_->graphs.capture_error(); }

size_t MaeCuda::weight_bytes() const {
  const State& s = *s_;
  size_t b = (s.cls.size() + s.pos.size() + s.mask_token.size() + s.dpos.size()) * sizeof(float);
  b += linear_bytes(s.patch) + linear_bytes(s.decoder_embed) + linear_bytes(s.decoder_pred);
  for (const auto* blocks : {&s.enc, &s.dec}) {
    for (const DevBlock& k : *blocks) {
      b += linear_bytes(k.qkv) + linear_bytes(k.proj) + linear_bytes(k.fc1) + linear_bytes(k.fc2);
      b += 2 * (k.norm1.gamma.size() + k.norm2.gamma.size()) * sizeof(float);
    }
  }
  b += 2 * (s.norm.gamma.size() + s.decoder_norm.gamma.size()) * sizeof(float);
  return b;
}

int64_t MaeCuda::device_bytes_per_sample(Mode mode) const {
  return s_->floats_per_sample(mode, true) * int64_t(sizeof(float)) + kCanvasFloats * int64_t(sizeof(float));
}

int MaeCuda::max_chunk() const { return s_->max_chunk; }

void MaeCuda::run(const model::MaeChunk& chunk, const MaeCudaOutputs& out, const MaeCudaRunOptions& options) {
  State& s = *s_;
  const ModelConfig& c = s.c;
  const Mode mode = chunk.mode;
  const int64_t n = static_cast<int64_t>(chunk.canvases.size());
  const int64_t Ne = enc_tokens(mode), Nd = dec_tokens(mode);
  for (int64_t i = 0; i < n; ++i) {
    check(chunk.canvases[static_cast<size_t>(i)] != nullptr, "MaeCuda::run: canvas of sample " + std::to_string(i) + " is null");
  }
  const bool patching = chunk.patch_masks != nullptr;
  const bool device_means = options.means_enc_device && options.means_dec_device;
  check(!patching || device_means || (chunk.means_enc && chunk.means_dec),
        "MaeCuda::run: patch_masks need means_enc and means_dec (host or device)");
  const bool scoring = options.token_loss != Loss::None;
  check(!scoring || (is_token_loss(options.token_loss) && options.target_tokens),
        "MaeCuda::run: token scoring needs TokenCE or TokenAccuracy and target_tokens");
  const int64_t bits = int64_t(c.enc_depth) * c.enc_heads * Ne + int64_t(c.dec_depth) * c.dec_heads * Nd;
  const int64_t mask_bytes = (bits + 7) / 8;
  if (n == 0) return;

  s.run_means_enc = s.run_means_dec = nullptr;
  if (patching && device_means) {
    s.run_means_enc = options.means_enc_device;
    s.run_means_dec = options.means_dec_device;
  } else if (patching) {
    const int64_t fe = means_enc_floats(c), fd = means_dec_floats(c);
    s.means_enc.resize(static_cast<size_t>(fe));
    s.means_dec.resize(static_cast<size_t>(fd));
    s.means_enc.upload(chunk.means_enc, static_cast<size_t>(fe));
    s.means_dec.upload(chunk.means_dec, static_cast<size_t>(fd));
    s.run_means_enc = s.means_enc.get();
    s.run_means_dec = s.means_dec.get();
  }
  const int64_t cap_e = int64_t(c.enc_depth) * Ne * c.enc_dim, cap_d = int64_t(c.dec_depth) * Nd * c.dec_dim;
  if (chunk.capture_enc) {
    s.cap_enc.resize(static_cast<size_t>(cap_e));
    device_fill_bytes(s.cap_enc.get(), 0, sizeof(float) * size_t(cap_e));
  }
  if (chunk.capture_dec) {
    s.cap_dec.resize(static_cast<size_t>(cap_d));
    device_fill_bytes(s.cap_dec.get(), 0, sizeof(float) * size_t(cap_d));
  }
  for (int64_t s0 = 0; s0 < n; s0 += s.max_chunk) {
    s.pass(chunk, s0, std::min<int64_t>(s.max_chunk, n - s0), out, mask_bytes, options);
  }
  auto add_back = [](const DeviceBuffer<float>& d, int64_t count, float* host) {
    std::vector<float> sum = d.to_host(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) host[i] += sum[static_cast<size_t>(i)];
  };
  if (chunk.capture_enc) add_back(s.cap_enc, cap_e, chunk.capture_enc);
  if (chunk.capture_dec) add_back(s.cap_dec, cap_d, chunk.capture_dec);
  device_synchronize();
}

void MaeCuda::State::pass(const model::MaeChunk& chunk, int64_t s0, int64_t n, const MaeCudaOutputs& out,
                          int64_t mask_bytes, const MaeCudaRunOptions& options) {
  const Mode mode = chunk.mode;
  const int P = dec_tokens(mode) - 1, V = c.vocab();
  // The token losses read the logits on the device: they are computed then, and leave only when asked for.
  const bool scoring = options.token_loss != Loss::None;
  const bool device_logits = out.logits != nullptr || scoring;
  ensure_capacity(mode, n, device_logits);

  // ---- inputs: the distinct canvases of this pass, which sample runs which, the masks ----------------
  std::unordered_map<const float*, int32_t> index_of;
  std::vector<const float*> distinct;
  std::vector<int32_t> canvas_of(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float* p = chunk.canvases[static_cast<size_t>(s0 + i)];
    auto it = index_of.find(p);
    if (it == index_of.end()) {
      it = index_of.emplace(p, static_cast<int32_t>(distinct.size())).first;
      distinct.push_back(p);
    }
    canvas_of[static_cast<size_t>(i)] = it->second;
  }
  canvases.resize(distinct.size() * static_cast<size_t>(kCanvasFloats));
  for (size_t i = 0; i < distinct.size(); ++i) {
    copy_to_device(canvases.get() + i * kCanvasFloats, distinct[i], sizeof(float) * size_t(kCanvasFloats));
  }
  canvas_of_sample.upload(canvas_of.data(), canvas_of.size());
  const bool patching = chunk.patch_masks != nullptr;
  if (patching) {
    masks.resize(static_cast<size_t>(n * mask_bytes));
    masks.upload(chunk.patch_masks + s0 * mask_bytes, static_cast<size_t>(n * mask_bytes));
  }

  const Kernels k{mode, n, patching, chunk.capture_enc != nullptr, chunk.capture_dec != nullptr, device_logits,
                  mask_bytes};
  if (out.encoder_out || out.decoder_out) {
    kernels(k, &out, s0);  // the encoder's output is overwritten by the decoder's: copy it out on the way
  } else {
    graphs.run(graph_key(k), stream, [&] { kernels(k, nullptr, 0); });
  }
  if (scoring) {
    const size_t targets = static_cast<size_t>(n) * kQuadrantTokens;
    target_tokens.resize(targets);
    token_losses.resize(static_cast<size_t>(n));
    token_metrics.resize(static_cast<size_t>(n));
    VTV_CUDA_CHECK(cudaMemcpyAsync(target_tokens.get(), options.target_tokens + s0 * kQuadrantTokens,
                                   sizeof(int32_t) * targets, cudaMemcpyHostToDevice, stream));
    token_scores(options.token_loss, mode, logits.get(), tokens.get(), n, V, target_tokens.get(), token_losses.get(),
                 token_metrics.get(), stream);
    if (options.token_losses) {
      VTV_CUDA_CHECK(cudaMemcpyAsync(options.token_losses + s0, token_losses.get(), sizeof(float) * size_t(n),
                                     cudaMemcpyDeviceToHost, stream));
    }
    if (options.token_metrics) {
      VTV_CUDA_CHECK(cudaMemcpyAsync(options.token_metrics + s0, token_metrics.get(), sizeof(float) * size_t(n),
                                     cudaMemcpyDeviceToHost, stream));
    }
  }
  if (out.tokens_device) {
    VTV_CUDA_CHECK(cudaMemcpyAsync(out.tokens_device + s0 * kPatches, tokens.get(), sizeof(int32_t) * size_t(n) * kPatches,
                                   cudaMemcpyDeviceToDevice, stream));
  }
  VTV_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (out.logits) logits.download(out.logits + s0 * P * V, static_cast<size_t>(n * P * V));
  if (out.tokens) tokens.download(out.tokens + s0 * kPatches, static_cast<size_t>(n * kPatches));
  device_synchronize();
}

void MaeCuda::State::kernels(const Kernels& k, const MaeCudaOutputs* out, int64_t s0) {
  const Mode mode = k.mode;
  const int64_t n = k.n;
  const int mi = mode == Mode::OneShot ? 0 : 1;
  const int Ne = enc_tokens(mode), Nd = dec_tokens(mode), P = Nd - 1, Np = Ne - 1;
  const int E = c.enc_dim, D = c.dec_dim;
  const int64_t enc_bits = int64_t(c.enc_depth) * c.enc_heads * Ne;

  // ---- patch embedding, CLS, positions ----------------------------------------------------------------
  gather_patches(canvases.get(), canvas_of_sample.get(), n, enc_ids[mi].get(), Np, patches.get(), stream);
  linear(patch, patches.get(), n * Np, h.get(), Epilogue::None, nullptr, nullptr, h16.get(), nullptr, true);
  assemble_encoder_tokens(h.get(), cls.get(), pos.get(), enc_ids[mi].get(), n, Ne, E, x.get(), stream);

  // ---- encoder ----------------------------------------------------------------------------------------
  stack(k, enc, n, Ne, E, c.enc_heads, 0, run_means_enc, kOneShotEncTokens, k.capture_enc ? cap_enc.get() : nullptr,
        norm);
  if (out && out->encoder_out) {
    VTV_CUDA_CHECK(cudaStreamSynchronize(stream));
    x.download(out->encoder_out + s0 * Ne * E, static_cast<size_t>(n * Ne * E));
  }

  // ---- encoder -> decoder -----------------------------------------------------------------------------
  linear(decoder_embed, x.get(), n * Ne, emb.get(), Epilogue::None, nullptr, nullptr, h16.get(), nullptr, true);
  assemble_decoder_tokens(emb.get(), Ne, mask_token.get(), dpos.get(), dec_ids[mi].get(), slot_of_patch[mi].get(), n,
                          Nd, D, x.get(), stream);

  // ---- decoder ----------------------------------------------------------------------------------------
  stack(k, dec, n, Nd, D, c.dec_heads, enc_bits, run_means_dec, kOneShotDecTokens,
        k.capture_dec ? cap_dec.get() : nullptr, decoder_norm);
  if (out && out->decoder_out) {
    VTV_CUDA_CHECK(cudaStreamSynchronize(stream));
    x.download(out->decoder_out + s0 * Nd * D, static_cast<size_t>(n * Nd * D));
  }

  // ---- prediction head with the argmax fused into its epilogue ------------------------------------
  drop_cls_rows(x.get(), n, Nd, D, h.get(), stream);
  argmax_keys_reset(keys.get(), n * P, stream);
  linear(decoder_pred, h.get(), n * P, k.logits ? logits.get() : nullptr, Epilogue::None, nullptr, keys.get(), h16.get(),
         nullptr, true);
  token_grid(keys.get(), n, P, tokens.get(), stream);
}

}  // namespace vtv::cuda
