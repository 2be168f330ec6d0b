// The engine's public API: one call runs a batch of MAE-VQGAN forwards (docs/method.md#model, #zero-shot) with optional
// per-sample activation patching, activation capture, and per-sample losses (docs/method.md#metrics).
// It knows nothing of Node.js; the addon in bindings/ is a thin async wrapper over it, and the only
// place where backend and precision names are strings.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vtv/config.h"
#include "vtv/weights.h"

namespace vtv {

enum class Mode { OneShot, ZeroShot };
// IoU and MSE score the decoded image's output cell (docs/method.md#metrics). TokenCE and TokenAccuracy score the
// logits of the 49 output-quadrant positions against target VQGAN tokens (Engine::encode_tokens of the
// target canvas), so they never run the VQGAN decoder: token-space search, the paper's future work.
enum class Loss { None, IoU, MSE, TokenCE, TokenAccuracy };
inline bool is_token_loss(Loss l) { return l == Loss::TokenCE || l == Loss::TokenAccuracy; }

// The output quadrant in tokens: rows 7..13, columns 7..13 of the 14x14 grid, 49 positions in raster
// order. Target tokens for the token losses are given in this order.
constexpr int kQuadrantTokens = kHalf * kHalf;
inline int quadrant_patch_id(int i) { return (kHalf + i / kHalf) * kGrid + kHalf + i % kHalf; }

// Sequence lengths of one mode.
inline int enc_tokens(Mode m) { return m == Mode::OneShot ? kOneShotEncTokens : kZeroShotEncTokens; }
inline int dec_tokens(Mode m) { return m == Mode::OneShot ? kOneShotDecTokens : kZeroShotDecTokens; }

// Patch-mask layout: bit i of a sample's mask (byte i>>3, bit i&7) is (layer, head, position) with
//   encoder: i = (l * enc_heads + h) * enc_tokens(mode) + p              for l in [0, enc_depth)
//   decoder: i = E + (l * dec_heads + h) * dec_tokens(mode) + p          for l in [0, dec_depth)
// where E = enc_depth * enc_heads * enc_tokens(mode); positions are the mode's own sequence positions.
// Bits past the last variable must be zero.
inline int64_t patch_bits(const ModelConfig& c, Mode m) {
  return int64_t(c.enc_depth) * c.enc_heads * enc_tokens(m) + int64_t(c.dec_depth) * c.dec_heads * dec_tokens(m);
}
inline int64_t patch_bytes(const ModelConfig& c, Mode m) { return (patch_bits(c, m) + 7) / 8; }

// Task-mean (and capture) table layout, always in one-shot positions:
//   enc: [enc_depth][148][enc_heads][enc_head_dim], dec: [dec_depth][197][dec_heads][dec_head_dim]
// holding pre-projection head outputs O (docs/method.md#patching: replacing O by its mean before W_proj is the
// paper's replacement of the head's post-projection contribution). In zero-shot mode reduced
// position p >= 1 reads one-shot row p + 98.
inline int64_t means_enc_floats(const ModelConfig& c) {
  return int64_t(c.enc_depth) * kOneShotEncTokens * c.enc_dim;
}
inline int64_t means_dec_floats(const ModelConfig& c) {
  return int64_t(c.dec_depth) * kOneShotDecTokens * c.dec_dim;
}

// Task-mean tables bound to one engine by Engine::bind_task_means: checked once (every value finite)
// and placed where the engine's backend reads them (a host copy on the cpu, device memory on cuda), so a
// search passes them with every step's forward without their being scanned or uploaded again. Opaque;
// usable only with the engine that bound them, and only while that engine lives.
class BoundTaskMeans {
 public:
  virtual ~BoundTaskMeans() = default;

 protected:
  BoundTaskMeans() = default;
};

struct ForwardRequest {
  Mode mode = Mode::ZeroShot;
  // Distinct canvases, ImageNet-normalised, [num_canvases][3][224][224].
  const float* canvases = nullptr;
  int num_canvases = 0;
  // Batch: sample b runs canvas canvas_index[b] (nullptr: sample b runs canvas b, batch = num_canvases).
  const int32_t* canvas_index = nullptr;
  int batch = 0;
  // Patching (optional): batch * patch_bytes() mask bytes and the task means, either bound once
  // (task_means, from Engine::bind_task_means: what a search passes every step) or as raw tables for this
  // call only (means_enc and means_dec, layout as above, checked on every call).
  const uint8_t* patch_mask = nullptr;
  const BoundTaskMeans* task_means = nullptr;
  const float* means_enc = nullptr;
  const float* means_dec = nullptr;
  // Capture (optional, one-shot or zero-shot): sums over the batch of O, in the mode's own positions:
  // [enc_depth][enc_tokens][enc_dim] and [dec_depth][dec_tokens][dec_dim]; accumulated (+=) into.
  float* capture_enc = nullptr;
  float* capture_dec = nullptr;
  // Losses (optional): per-sample loss against the target quadrant. Targets default to the canvas's own
  // bottom-right cell; `targets` ([num_canvases][3][111][111] uint8, 0..255) overrides them.
  Loss loss = Loss::None;
  const uint8_t* targets = nullptr;
  // Token losses: the target tokens of each canvas's output quadrant, [num_canvases][49] (raster order
  // over rows 7..13, columns 7..13), each in [0, vocab). Required by TokenCE/TokenAccuracy, else unused.
  const int32_t* target_tokens = nullptr;
  // Work sharing: samples with the same (canvas, mask) run once, identical token grids decode once.
  bool dedupe = true;
};

struct ForwardResult {
  // Each output is written when its pointer is non-null. Shapes for batch B:
  float* encoder_out = nullptr;  // [B][enc_tokens][enc_dim], after `norm`
  float* decoder_out = nullptr;  // [B][dec_tokens][dec_dim], after `decoder_norm` (CLS included)
  float* logits = nullptr;       // [B][P][vocab], P = 196 one-shot, 98 zero-shot (CLS dropped)
  int32_t* tokens = nullptr;     // [B][196]; zero-shot: the 98 predictions duplicated into the top half
  float* pixels = nullptr;       // [B][3][224][224], clamp(x,-1,1) -> (x+1)/2, before x255
  uint8_t* images = nullptr;     // [B][3][224][224], trunc(clip(pixels*255, 0, 255))
  // [B]: -IoU (IoU), MSE in normalised space (MSE), the mean over the 49 output-quadrant positions of
  // -log softmax(logits)[target] (TokenCE), or -token accuracy (TokenAccuracy).
  float* losses = nullptr;
  // [B]: IoU, MSE, or the fraction of the 49 output-quadrant argmax tokens equal to the target (both
  // token losses).
  float* metrics = nullptr;
  // Filled by the engine: how much work sharing saved in this call.
  int unique_forwards = 0;
  int unique_decodes = 0;
};

// Where the engine runs. Auto takes the cpu unless a verified GPU backend is usable (Engine::backend_reason
// says which and why).
enum class BackendKind { Auto, Cpu, Cuda };
// fp32: every backend (the parity mode). bf16: the cuda backend only (tensor cores, fp32 accumulation).
enum class Precision { F32, BF16 };
const char* backend_name(BackendKind kind);   // "auto", "cpu", "cuda": for messages and the addon
const char* precision_name(Precision precision);  // "fp32", "bf16"

struct BackendInfo {
  BackendKind kind = BackendKind::Cpu;  // Cpu or Cuda
  bool compiled = false;   // built into this binary
  bool usable = false;     // can run here now
  std::string detail;      // why (device name, or why not)
};
std::vector<BackendInfo> backends();

struct EngineOptions {
  BackendKind backend = BackendKind::Auto;
  Precision precision = Precision::F32;  // BF16 needs the cuda backend
  int threads = 0;                 // 0: every core
  bool need_vqgan = true;          // false: MAE only (no decode, no pixel losses)
  bool need_vqgan_encoder = false; // true: bind the VQGAN encoder (encoder.*, quant_conv.*) for encode_tokens
};

class EngineImpl;

class Engine {
 public:
  Engine(const ModelConfig& config, std::shared_ptr<Weights> weights, const EngineOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates the request (sizes, NaNs, mask bits, pointers) before any work; throws vtv::Error.
  void forward(const ForwardRequest& request, ForwardResult& result);

  // Checks task-mean tables (layout as above: means_enc_floats and means_dec_floats floats, every value
  // finite; throws vtv::Error naming the first bad index) and copies them to where the backend reads
  // them. The caller's arrays may change or go afterwards; the handle keeps its own copy.
  std::shared_ptr<const BoundTaskMeans> bind_task_means(const float* means_enc, const float* means_dec);

  // The VQGAN encoder's nearest-code tokens of n ImageNet-normalised canvases [n][3][224][224]:
  // tokens [n][196], raster order. Needs an engine built with need_vqgan_encoder; throws vtv::Error.
  void encode_tokens(const float* canvases, int n, int32_t* tokens);

  const ModelConfig& config() const;
  BackendKind backend() const;         // the backend actually used: Cpu or Cuda
  Precision precision() const;
  std::string backend_reason() const;  // why that one
  int threads() const;

 private:
  std::unique_ptr<EngineImpl> impl_;
};

}  // namespace vtv
