// The seam between vtv::Engine (engine.cc: validation, work sharing, chunking, fan-out to samples,
// score jobs) and the hardware that runs the model. A backend runs three kinds of pass, each on work the
// engine has already made distinct and cut to the backend's capacity:
//   MAE passes     canvases (+ patch masks, task means, capture) -> token grids, optionally the logits,
//                  encoder/decoder outputs and the token losses, scored where the logits are;
//   decode passes  the step's distinct token grids -> pixels and the IoU/MSE of score jobs;
//   encode passes  canvases -> VQGAN encoder tokens (Engine::encode_tokens).
// A step's token grids stay inside the backend (host memory on the cpu, device memory on cuda) between
// its MAE passes and its decode passes. Nothing here includes a backend's own headers: cpu_backend.cc
// and cuda_backend.cc implement this interface, and the engine reaches them only through make_*_backend.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "vtv/config.h"
#include "vtv/engine.h"
#include "vtv/weights.h"

namespace vtv::engine {

// Task means where a backend reads them: host memory (cpu) or device memory (cuda). `enc` and `dec` hold
// means_enc_floats and means_dec_floats floats, checked finite by the engine before they got here.
// owner() is the instance number of the backend that made them (numbers are never reused, so tables
// of an engine that is gone are not taken for another's).
class BackendMeans : public BoundTaskMeans {
 public:
  explicit BackendMeans(uint64_t owner) : owner_(owner) {}
  uint64_t owner() const { return owner_; }
  const float* enc = nullptr;
  const float* dec = nullptr;

 private:
  uint64_t owner_;
};

// n distinct MAE forwards.
struct MaePass {
  Mode mode = Mode::ZeroShot;
  std::vector<const float*> canvases;     // [n], each [3][224][224] ImageNet-normalised
  const uint8_t* patch_masks = nullptr;   // [n][patch_bytes(config, mode)], contiguous; null: no patching
  const BackendMeans* means = nullptr;    // set with patch_masks
  float* capture_enc = nullptr;           // whole capture tables in the mode's positions, accumulated (+=)
  float* capture_dec = nullptr;
  // The token losses (TokenCE, TokenAccuracy; None: not scored): forward i against target_tokens[i], its
  // canvas's 49 output-quadrant tokens.
  Loss token_loss = Loss::None;
  std::vector<const int32_t*> target_tokens;
};

struct MaePassOutputs {  // host memory, n rows each, written when non-null
  float* encoder_out = nullptr;  // [n][enc_tokens][enc_dim]
  float* decoder_out = nullptr;  // [n][dec_tokens][dec_dim]
  float* logits = nullptr;       // [n][dec_tokens-1][vocab]
  int32_t* tokens = nullptr;     // [n][196]
  float* token_losses = nullptr;   // [n], with MaePass::token_loss
  float* token_metrics = nullptr;  // [n]
};

// Distinct grids [first_grid, first_grid + grids) of the step (numbered by begin_decode) and the score
// jobs on them: job j compares grid first_grid + job_grid[j] with target job_target[j] of the step's
// targets (begin_decode).
struct DecodePass {
  int64_t first_grid = 0;
  int64_t grids = 0;
  Loss loss = Loss::None;  // IoU or MSE; None: no jobs
  std::vector<int32_t> job_grid;
  std::vector<int32_t> job_target;
};

struct DecodePassOutputs {  // host memory, written when non-null
  float* pixels = nullptr;       // [grids][3][224][224] in [0, 1]
  float* job_losses = nullptr;   // [jobs]: -IoU or MSE
  float* job_metrics = nullptr;  // [jobs]: IoU or MSE
};

class Backend {
 public:
  Backend() : instance_(next_instance()) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual BackendKind kind() const = 0;
  uint64_t instance() const { return instance_; }

  // Task means. bind_means keeps its own copy (the caller's tables may change afterwards);
  // means_for_call may read the caller's tables in place and is valid until the next call.
  virtual std::shared_ptr<const BackendMeans> bind_means(const float* enc, const float* dec) = 0;
  virtual const BackendMeans& means_for_call(const float* enc, const float* dec) = 0;

  // MAE. A step calls begin_mae with its number of distinct forwards, then mae_pass for consecutive
  // ranges of them, each at most mae_pass_capacity(mode) forwards; pass forward i is step forward
  // first_forward + i, whose token grid the backend keeps for the decode.
  virtual int64_t mae_pass_capacity(Mode mode) const = 0;
  virtual void begin_mae(int64_t forwards) = 0;
  virtual void mae_pass(const MaePass& pass, int64_t first_forward, const MaePassOutputs& out) = 0;

  // Decode (only when has_decoder()). begin_decode numbers the distinct token grids among the step's
  // forwards in order of first occurrence (with `dedupe`; without, forward u is grid u), writes each
  // forward's grid to grid_of_forward (host, [forwards]) and returns their count. `targets`
  // ([num_targets][3][111][111] bytes) are what the step's score jobs compare against.
  virtual bool has_decoder() const = 0;
  virtual int64_t decode_pass_capacity() const = 0;
  virtual int64_t begin_decode(bool dedupe, const uint8_t* targets, int64_t num_targets, int32_t* grid_of_forward) = 0;
  virtual void decode_pass(const DecodePass& pass, const DecodePassOutputs& out) = 0;

  // Encode (only when has_encoder()): n contiguous canvases [n][3][224][224], n at most
  // encode_pass_capacity(), to tokens [n][196].
  virtual bool has_encoder() const = 0;
  virtual int64_t encode_pass_capacity() const = 0;
  virtual void encode_pass(const float* canvases, int64_t n, int32_t* tokens) = 0;

 private:
  static uint64_t next_instance() {
    static std::atomic<uint64_t> count{0};
    return ++count;
  }
  const uint64_t instance_;
};

// What the engine needs to choose a backend and to build one. The cuda functions come from
// cuda_backend.cc, or from cuda_backend_absent.cc in a build without CUDA (CMake picks the file).
struct CudaAvailability {
  bool compiled = false;
  bool usable = false;
  std::string detail;  // the device, or why it is not usable
};
CudaAvailability cuda_availability();
std::string cpu_backend_detail();

struct BackendParts {  // which models the engine needs
  bool decoder = true;
  bool encoder = false;
};
std::unique_ptr<Backend> make_cpu_backend(const ModelConfig& config, Weights& weights, BackendParts parts,
                                          ThreadPool& pool);
std::unique_ptr<Backend> make_cuda_backend(const ModelConfig& config, Weights& weights, BackendParts parts,
                                           Precision precision);

}  // namespace vtv::engine
