// VqganCuda: the decoder's weights on the device and model::VqganDecoder::run + model::score_cell as a
// sequence of kernels on one stream, captured as a CUDA graph per pass size.
#include "cuda/vqgan_cuda.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/device_buffer.h"
#include "cuda/graph_cache.h"
#include "cuda/kernels.h"
#include "cuda/variants.h"
#include "cuda/vqgan_device_blocks.h"
#include "cuda/vqgan_device_weights.h"
#include "cuda/vqgan_kernels.h"
#include "model/losses.h"
#include "vtv/error.h"

namespace vtv::cuda {

namespace {

constexpr int64_t kPixelFloats = int64_t(3) * kImage * kImage;

struct DevLevel {
  std::vector<DevResnet> blocks;
  std::vector<DevAttn> attn;
  DevConv upsample;
  bool has_upsample = false;
};

}  // namespace

// The ring, blocks and stream come from VqganDeviceBlocks (shared with VqganEncoderCuda).
struct VqganCuda::State : VqganDeviceBlocks {
  int max_chunk;
  GraphCache graphs;  // one graph per pass size
  int V = 0, Cz = 0;
  DeviceBuffer<float> table;  // [V][Cz]: post_quant_conv(codebook[v])
  DevConv conv_in, conv_out;  // conv_out is always fp32 (its own kernel)
  DevResnet mid1, mid2;
  DevAttn mid_attn;
  std::vector<DevLevel> up;
  DevNorm norm_out;

  // Activations of one pass (capacity grids; the ring and attention scratch in VqganDeviceBlocks), grown
  // on demand; growing drops the captured graphs.
  int64_t capacity = 0;
  DeviceBuffer<float> pixels;
  DeviceBuffer<int32_t> tokens;
  // Scoring.
  DeviceBuffer<uint8_t> targets;
  DeviceBuffer<int32_t> job_image, job_target;
  DeviceBuffer<float> job_loss, job_metric;
  // find_distinct: each source's grid, the distinct grids, their count, and grid_dedupe's scratch. The
  // distinct grids' tokens are unique_tokens (dedupe) or the sources themselves.
  DeviceBuffer<int32_t> grid_of_source, unique_tokens, distinct_count, first_of;
  DeviceBuffer<unsigned long long> hashes;
  const int32_t* distinct_tokens = nullptr;
  int64_t distinct = 0;


  // tokens (device, n grids) -> pixels (device). The blocks branch on the layout themselves
  // (VqganDeviceBlocks); the ends here: in the NHWC layout the lookup writes bf16 NHWC and norm_out runs
  // once per element before conv_out, in NCHW conv_out applies it as it loads.
  void forward(int64_t n) {
    H = W = kGrid;
    if (nhwc) {
      codebook_lookup_nhwc(tokens.get(), n, table.get(), V, Cz, map(1), stream);
      conv_nhwc(conv_in, map(1), n, false, map(0), nullptr, st(0));
    } else {
      codebook_lookup(tokens.get(), n, table.get(), V, Cz, buf(1), stream);
      conv(conv_in, buf(1), n, Resample::None, buf(0), nullptr, GroupNormIn{}, st(0));
    }
    cur = 0;
    resnet(mid1, n);
    attention(mid_attn, n);
    resnet(mid2, n);
    for (int i = c.vq.levels() - 1; i >= 0; --i) {
      const DevLevel& L = up[static_cast<size_t>(i)];
      for (size_t j = 0; j < L.blocks.size(); ++j) {
        resnet(L.blocks[j], n);
        if (!L.attn.empty()) attention(L.attn[j], n);
      }
      if (L.has_upsample) resample(L.upsample, n, Resample::Up2x);
    }
    if (nhwc) {
      conv_out_pixels_nhwc(normalise(cur, norm_out, true, conv_out.in, n), n, conv_out.in, H, W, conv_out.w32.get(),
                           conv_out.b.get(), pixels.get(), stream);
    } else {
      conv_out_pixels(buf(cur), n, conv_out.in, H, W, gn(norm_out, st(cur), true), conv_out.w32.get(),
                      conv_out.b.get(), pixels.get(), stream);
    }
  }

  void ensure_capacity(int64_t n) {
    if (n <= capacity) return;
    graphs.clear();
    const size_t N = static_cast<size_t>(n);
    reserve(n);
    pixels.resize(N * static_cast<size_t>(kPixelFloats));
    tokens.resize(N * kPatches);
    capacity = n;
  }

  // The decode of n grids already in `tokens`: the graph for n (captured on first use), else direct.
  void decode(int64_t n) {
    // The tuning table decides which kernels a decode enqueues: a new table needs new graphs.
    graphs.run({n, static_cast<int64_t>(tuning_generation())}, stream, [&] { forward(n); });
  }

  void run(const int32_t* tok, bool tok_on_device, int64_t grids, const VqganScoreJobs& sj, const VqganCudaOutputs& out);
  int64_t run_shared(const int32_t* tok, int64_t sources, bool dedupe, const VqganScoreJobs& sj,
                     const VqganCudaOutputs& out, int32_t* grid_of_source_out);
  int64_t find_distinct(const int32_t* tok, int64_t sources, bool dedupe);

  // Checks score jobs against `grids` (run) or `sources` (run_shared) and puts the targets on the device.
  const uint8_t* prepare_scoring(const VqganScoreJobs& sj, int64_t grids, const VqganCudaOutputs& out, const char* where) {
    const std::string w(where);
    check(sj.loss == Loss::IoU || sj.loss == Loss::MSE, w + ": scores.loss must be None, IoU or MSE");
    check(sj.count >= 0 && (sj.count == 0 || (sj.grid && sj.target)),
          w + ": scores.grid and scores.target must be set for scores.count > 0");
    check(sj.count == 0 || (sj.targets && sj.num_targets > 0), w + ": scores.targets must be set");
    check(sj.count == 0 || out.losses || out.metrics, w + ": scoring asks for neither losses nor metrics");
    for (int64_t j = 0; j < sj.count; ++j) {
      check(sj.grid[j] >= 0 && sj.grid[j] < grids, w + ": scores.grid[" + std::to_string(j) + "] = " +
                                                      std::to_string(sj.grid[j]) + " is outside [0, " +
                                                      std::to_string(grids) + ")");
      check(sj.target[j] >= 0 && sj.target[j] < sj.num_targets,
            w + ": scores.target[" + std::to_string(j) + "] = " + std::to_string(sj.target[j]) + " is outside [0, " +
                std::to_string(sj.num_targets) + ")");
    }
    if (sj.count == 0) return nullptr;
    if (sj.targets_on_device) return sj.targets;
    const size_t bytes = static_cast<size_t>(sj.num_targets * model::kCellBytes);
    targets.resize(bytes);
    VTV_CUDA_CHECK(cudaMemcpyAsync(targets.get(), sj.targets, bytes, cudaMemcpyHostToDevice, stream));
    return targets.get();
  }
};

VqganCuda::VqganCuda(const ModelConfig& config, const model::VqganDecoderW& w, Precision precision, int max_chunk,
                     bool use_graphs, bool nhwc)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  config.validate();
  check(max_chunk > 0, "VqganCuda: max_chunk must be positive, got " + std::to_string(max_chunk));
  s.c = config;
  s.precision = precision;
  s.max_chunk = max_chunk;
  prepare_kernel_variants();  // the conv variants' device attributes, set before any graph capture
  s.graphs.set_enabled(use_graphs);
  const VqganConfig& q = config.vq;
  s.V = q.n_embed;
  s.Cz = w.post_quant_conv.out;
  check(w.codebook && w.post_quant_conv.w && w.post_quant_conv.b && w.post_quant_conv.k == 1 &&
            w.post_quant_conv.in == q.embed_dim,
        "VqganCuda: post_quant_conv must be a bound 1x1 conv from embed_dim " + std::to_string(q.embed_dim));
  check(static_cast<int>(w.up.size()) == q.levels(), "VqganCuda: the weights hold " + std::to_string(w.up.size()) +
                                                         " levels, the config " + std::to_string(q.levels()));

  // post_quant_conv applied to every codebook vector (in double, rounded once).
  {
    const int Ce = q.embed_dim, Cz = s.Cz;
    std::vector<float> table(size_t(s.V) * Cz);
    for (int v = 0; v < s.V; ++v) {
      const float* e = w.codebook + int64_t(v) * Ce;
      for (int co = 0; co < Cz; ++co) {
        const float* wr = w.post_quant_conv.w + int64_t(co) * Ce;
        double acc = w.post_quant_conv.b[co];
        for (int ci = 0; ci < Ce; ++ci) acc += double(wr[ci]) * double(e[ci]);
        table[size_t(v) * Cz + co] = static_cast<float>(acc);
      }
    }
    s.table = DeviceBuffer<float>(table);
  }

  // Upload in forward order while walking the shapes for the largest maps.
  int64_t res = kGrid;
  auto see = [&](int64_t channels, int64_t side) { s.max_elems = std::max(s.max_elems, channels * side * side); };
  see(s.Cz, res);
  s.conv_in = upload_conv(w.conv_in, precision, "decoder.conv_in");
  see(w.conv_in.out, res);
  s.mid1 = upload_resnet(w.mid_block_1, precision, "decoder.mid.block_1");
  s.mid_attn = upload_attn(w.mid_attn_1, precision, "decoder.mid.attn_1");
  s.max_attn = std::max<int64_t>(s.max_attn, int64_t(w.mid_attn_1.channels) * res * res);
  s.mid2 = upload_resnet(w.mid_block_2, precision, "decoder.mid.block_2");
  s.up.resize(static_cast<size_t>(q.levels()));
  for (int i = q.levels() - 1; i >= 0; --i) {
    const model::VqLevelW& L = w.up[static_cast<size_t>(i)];
    DevLevel& D = s.up[static_cast<size_t>(i)];
    const std::string name = "decoder.up." + std::to_string(i);
    check(L.attn.empty() || L.attn.size() == L.blocks.size(), "VqganCuda: " + name + " has attention on some blocks only");
    for (size_t j = 0; j < L.blocks.size(); ++j) {
      D.blocks.push_back(upload_resnet(L.blocks[j], precision, name + ".block." + std::to_string(j)));
      see(L.blocks[j].in, res);
      see(L.blocks[j].out, res);
      if (!L.attn.empty()) {
        D.attn.push_back(upload_attn(L.attn[j], precision, name + ".attn." + std::to_string(j)));
        s.max_attn = std::max<int64_t>(s.max_attn, int64_t(L.attn[j].channels) * res * res);
      }
    }
    D.has_upsample = L.upsample.w != nullptr;
    check(D.has_upsample == (i != 0), "VqganCuda: " + name + (i != 0 ? " lacks" : " has") + " an upsample conv");
    if (D.has_upsample) {
      D.upsample = upload_conv(L.upsample, precision, name + ".upsample.conv");
      res *= 2;
      see(L.channels, res);
    }
  }
  check(res == kImage, "VqganCuda: the decoder's upsampling does not take 14x14 tokens to 224x224 pixels");
  // The NHWC layout reads and writes 8 channels at a time, and its attention holds at most 512 channels.
  bool widths_ok = s.Cz % 8 == 0;
  for (int m : q.ch_mult) widths_ok = widths_ok && (q.ch * m) % 8 == 0 && q.ch * m <= 512;
  s.nhwc = nhwc && precision == Precision::BF16 && widths_ok && nhwc_decoder_supported();
  s.norm_out = upload_norm(w.norm_out, w.conv_out.in, "decoder.norm_out");
  check(w.conv_out.out == 3 && w.conv_out.k == 3, "VqganCuda: decoder.conv_out must be 3x3 to 3 channels");
  s.conv_out = upload_conv(w.conv_out, Precision::F32, "decoder.conv_out");
  VTV_CUDA_CHECK(cudaStreamCreate(&s.stream));
  device_synchronize();
}

VqganCuda::~VqganCuda() {
  if (!s_) return;
  s_->graphs.clear();
  if (s_->stream) {
    cudaStreamSynchronize(s_->stream);
    cudaStreamDestroy(s_->stream);
  }
}

Precision VqganCuda::precision() const { return s_->precision; }
bool VqganCuda::nhwc() const { return s_->nhwc; }
int VqganCuda::max_chunk() const { return s_->max_chunk; }
bool VqganCuda::graphs_enabled() const { return s_->graphs.enabled(); }
int VqganCuda::graphs_captured() const { return s_->graphs.size(); }
const std::string& VqganCuda::graph_capture_error() const { return s_->graphs.capture_error(); }

size_t VqganCuda::weight_bytes() const {
  const State& s = *s_;
  size_t b = s.table.size() * sizeof(float) + conv_bytes(s.conv_in) + conv_bytes(s.conv_out) + norm_bytes(s.norm_out);
  b += resnet_bytes(s.mid1) + resnet_bytes(s.mid2) + attn_bytes(s.mid_attn);
  for (const DevLevel& L : s.up) {
    for (const auto& r : L.blocks) b += resnet_bytes(r);
    for (const auto& a : L.attn) b += attn_bytes(a);
    b += conv_bytes(L.upsample);
  }
  return b;
}

int64_t VqganCuda::device_bytes_per_sample() const {
  const State& s = *s_;
  return s.bytes_per_sample() + kPixelFloats * int64_t(sizeof(float)) + kPatches * int64_t(sizeof(int32_t));
}

void VqganCuda::run(const int32_t* tokens, int64_t grids, const VqganScoreJobs& scores, const VqganCudaOutputs& out) {
  s_->run(tokens, false, grids, scores, out);
}

void VqganCuda::run_device(const int32_t* tokens_device, int64_t grids, const VqganScoreJobs& scores,
                           const VqganCudaOutputs& out) {
  s_->run(tokens_device, true, grids, scores, out);
}

int64_t VqganCuda::run_shared(const int32_t* tokens_device, int64_t sources, bool dedupe, const VqganScoreJobs& scores,
                              const VqganCudaOutputs& out, int32_t* grid_of_source) {
  return s_->run_shared(tokens_device, sources, dedupe, scores, out, grid_of_source);
}

int64_t VqganCuda::distinct_grids(const int32_t* tokens_device, int64_t sources, bool dedupe, int32_t* grid_of_source) {
  State& s = *s_;
  check(sources >= 0, "VqganCuda::distinct_grids: sources must be >= 0, got " + std::to_string(sources));
  check(sources == 0 || tokens_device != nullptr, "VqganCuda::distinct_grids: tokens is null");
  const int64_t G = s.find_distinct(tokens_device, sources, dedupe);
  if (grid_of_source && sources > 0) s.grid_of_source.download(grid_of_source, static_cast<size_t>(sources));
  return G;
}

void VqganCuda::decode_distinct(int64_t first, int64_t grids, const VqganScoreJobs& scores, const VqganCudaOutputs& out) {
  State& s = *s_;
  check(first >= 0 && grids >= 0 && first + grids <= s.distinct,
        "VqganCuda::decode_distinct: grids [" + std::to_string(first) + ", " + std::to_string(first + grids) +
            ") are not among the " + std::to_string(s.distinct) + " distinct grids of the last distinct_grids call");
  s.run(s.distinct_tokens + first * kPatches, true, grids, scores, out);
}

// Numbers the distinct grids among `sources` (grid_of_source on the device) and keeps where their tokens are.
int64_t VqganCuda::State::find_distinct(const int32_t* tok, int64_t sources, bool dedupe) {
  distinct_tokens = tok;
  distinct = 0;
  if (sources == 0) return 0;
  const size_t S = static_cast<size_t>(sources);
  grid_of_source.resize(S);
  const int32_t* grid_tokens = tok;
  int64_t G = sources;
  if (dedupe) {
    unique_tokens.resize(S * kPatches);
    hashes.resize(S);
    first_of.resize(S);
    distinct_count.resize(1);
    grid_dedupe(tok, sources, grid_of_source.get(), unique_tokens.get(), distinct_count.get(), hashes.get(),
                first_of.get(), stream);
    int32_t count = 0;
    VTV_CUDA_CHECK(cudaMemcpyAsync(&count, distinct_count.get(), sizeof count, cudaMemcpyDeviceToHost, stream));
    VTV_CUDA_CHECK(cudaStreamSynchronize(stream));
    G = count;
    grid_tokens = unique_tokens.get();
  } else {
    std::vector<int32_t> identity(S);
    for (size_t i = 0; i < S; ++i) identity[i] = static_cast<int32_t>(i);
    VTV_CUDA_CHECK(cudaMemcpyAsync(grid_of_source.get(), identity.data(), sizeof(int32_t) * S, cudaMemcpyHostToDevice,
                                   stream));
    VTV_CUDA_CHECK(cudaStreamSynchronize(stream));  // `identity` leaves scope
  }
  distinct_tokens = grid_tokens;
  distinct = G;
  return G;
}

int64_t VqganCuda::State::run_shared(const int32_t* tok, int64_t sources, bool dedupe, const VqganScoreJobs& sj,
                                     const VqganCudaOutputs& out, int32_t* grid_of_source_out) {
  check(sources >= 0, "VqganCuda::run_shared: sources must be >= 0, got " + std::to_string(sources));
  check(sources == 0 || tok != nullptr, "VqganCuda::run_shared: tokens is null");
  const bool scoring = sj.loss != Loss::None && sj.count > 0;
  const uint8_t* targets_dev =
      sj.loss != Loss::None ? prepare_scoring(sj, sources, out, "VqganCuda::run_shared") : nullptr;
  if (sources == 0) return 0;
  const size_t S = static_cast<size_t>(sources);
  const int64_t G = find_distinct(tok, sources, dedupe);
  const int32_t* grid_tokens = distinct_tokens;

  // ---- the jobs, on the device once ------------------------------------------------------------------
  const size_t J = static_cast<size_t>(scoring ? sj.count : 0);
  if (scoring) {
    job_image.resize(J);
    job_target.resize(J);
    job_loss.resize(J);
    job_metric.resize(J);
    VTV_CUDA_CHECK(cudaMemcpyAsync(job_image.get(), sj.grid, sizeof(int32_t) * J, cudaMemcpyHostToDevice, stream));
    VTV_CUDA_CHECK(cudaMemcpyAsync(job_target.get(), sj.target, sizeof(int32_t) * J, cudaMemcpyHostToDevice, stream));
  }
  if (!out.pixels && !scoring) return G;

  // ---- decode passes; each scores the jobs whose grid it holds ----------------------------------------
  for (int64_t g0 = 0; g0 < G; g0 += max_chunk) {
    const int64_t n = std::min<int64_t>(max_chunk, G - g0);
    ensure_capacity(n);
    VTV_CUDA_CHECK(cudaMemcpyAsync(tokens.get(), grid_tokens + g0 * kPatches, sizeof(int32_t) * size_t(n) * kPatches,
                                   cudaMemcpyDeviceToDevice, stream));
    decode(n);
    if (out.pixels) {
      VTV_CUDA_CHECK(cudaMemcpyAsync(out.pixels + g0 * kPixelFloats, pixels.get(),
                                     sizeof(float) * size_t(n * kPixelFloats), cudaMemcpyDeviceToHost, stream));
    }
    if (scoring) {
      cell_scores_in_pass(sj.loss, pixels.get(), targets_dev, job_image.get(), grid_of_source.get(), g0, n,
                          job_target.get(), sj.count, job_loss.get(), job_metric.get(), stream);
    }
  }
  if (scoring && out.losses) {
    VTV_CUDA_CHECK(cudaMemcpyAsync(out.losses, job_loss.get(), sizeof(float) * J, cudaMemcpyDeviceToHost, stream));
  }
  if (scoring && out.metrics) {
    VTV_CUDA_CHECK(cudaMemcpyAsync(out.metrics, job_metric.get(), sizeof(float) * J, cudaMemcpyDeviceToHost, stream));
  }
  if (grid_of_source_out) {
    VTV_CUDA_CHECK(cudaMemcpyAsync(grid_of_source_out, grid_of_source.get(), sizeof(int32_t) * S,
                                   cudaMemcpyDeviceToHost, stream));
  }
  VTV_CUDA_CHECK(cudaStreamSynchronize(stream));
  return G;
}

void VqganCuda::State::run(const int32_t* tok, bool tok_on_device, int64_t grids, const VqganScoreJobs& sj,
                           const VqganCudaOutputs& out) {
  check(grids >= 0, "VqganCuda::run: grids must be >= 0, got " + std::to_string(grids));
  check(grids == 0 || tok != nullptr, "VqganCuda::run: tokens is null");
  const bool scoring = sj.loss != Loss::None;
  const uint8_t* targets_dev = scoring ? prepare_scoring(sj, grids, out, "VqganCuda::run") : nullptr;
  if (grids == 0) return;
  if (!out.pixels && !(scoring && sj.count > 0)) return;  // nothing asked for

  // Score jobs grouped by pass.
  std::vector<std::vector<int64_t>> jobs_of_pass;
  const int64_t passes = (grids + max_chunk - 1) / max_chunk;
  if (scoring) {
    jobs_of_pass.resize(static_cast<size_t>(passes));
    for (int64_t j = 0; j < sj.count; ++j) jobs_of_pass[static_cast<size_t>(sj.grid[j] / max_chunk)].push_back(j);
  }
  std::vector<int32_t> ji, jt;
  std::vector<float> jl, jm;
  for (int64_t pi = 0; pi < passes; ++pi) {
    const int64_t g0 = pi * max_chunk, n = std::min<int64_t>(max_chunk, grids - g0);
    ensure_capacity(n);
    VTV_CUDA_CHECK(cudaMemcpyAsync(tokens.get(), tok + g0 * kPatches, sizeof(int32_t) * size_t(n) * kPatches,
                                   tok_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice, stream));
    decode(n);
    if (out.pixels) {
      VTV_CUDA_CHECK(cudaMemcpyAsync(out.pixels + g0 * kPixelFloats, pixels.get(), sizeof(float) * size_t(n * kPixelFloats),
                                     cudaMemcpyDeviceToHost, stream));
    }
    const std::vector<int64_t>* jobs = scoring ? &jobs_of_pass[static_cast<size_t>(pi)] : nullptr;
    const int64_t m = jobs ? static_cast<int64_t>(jobs->size()) : 0;
    if (m > 0) {
      ji.resize(static_cast<size_t>(m));
      jt.resize(static_cast<size_t>(m));
      for (int64_t i = 0; i < m; ++i) {
        const int64_t j = (*jobs)[static_cast<size_t>(i)];
        ji[static_cast<size_t>(i)] = static_cast<int32_t>(sj.grid[j] - g0);
        jt[static_cast<size_t>(i)] = sj.target[j];
      }
      job_image.resize(static_cast<size_t>(m));
      job_target.resize(static_cast<size_t>(m));
      job_loss.resize(static_cast<size_t>(m));
      job_metric.resize(static_cast<size_t>(m));
      VTV_CUDA_CHECK(cudaMemcpyAsync(job_image.get(), ji.data(), sizeof(int32_t) * size_t(m), cudaMemcpyHostToDevice, stream));
      VTV_CUDA_CHECK(cudaMemcpyAsync(job_target.get(), jt.data(), sizeof(int32_t) * size_t(m), cudaMemcpyHostToDevice, stream));
      cell_scores(sj.loss, pixels.get(), targets_dev, job_image.get(), job_target.get(), m, job_loss.get(),
                  job_metric.get(), stream);
      jl.resize(static_cast<size_t>(m));
      jm.resize(static_cast<size_t>(m));
      VTV_CUDA_CHECK(cudaMemcpyAsync(jl.data(), job_loss.get(), sizeof(float) * size_t(m), cudaMemcpyDeviceToHost, stream));
      VTV_CUDA_CHECK(cudaMemcpyAsync(jm.data(), job_metric.get(), sizeof(float) * size_t(m), cudaMemcpyDeviceToHost, stream));
    }
    // The host vectors above are reused next pass: wait for this pass's copies.
    VTV_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int64_t i = 0; i < m; ++i) {
      const int64_t j = (*jobs)[static_cast<size_t>(i)];
      if (out.losses) out.losses[j] = jl[static_cast<size_t>(i)];
      if (out.metrics) out.metrics[j] = jm[static_cast<size_t>(i)];
    }
  }
}

}  // namespace vtv::cuda
