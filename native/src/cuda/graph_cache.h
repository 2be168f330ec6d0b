// CUDA graphs for a sequence of launches that repeats with the same shape (MaeCuda's pass, VqganCuda's
// decode pass): the first run of a key captures the sequence on the stream and instantiates it, later
// runs replay it. Keys must name everything the launches bake in: the shape and every device pointer
// they use. Not thread-safe; only .cu files include it.
//
// A capture that fails is never silent: the cache records why (capture_error(), read by MaeCuda,
// VqganCuda and the tests), prints it once to stderr, and then, by default, turns graphs off and
// launches directly (the same kernels, one by one). Under OnCaptureFailure::Throw, the default when
// the environment sets VTV_GRAPH_CAPTURE=strict (as the test builds do), it throws vtv::Error instead,
// so a capture failure fails the test that caused it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace vtv::cuda {

enum class OnCaptureFailure { FallBack, Throw };

// Throw when VTV_GRAPH_CAPTURE=strict, FallBack otherwise (any other value is an error naming it).
OnCaptureFailure capture_failure_policy_from_env();

class GraphCache {
 public:
  explicit GraphCache(bool enabled = true, OnCaptureFailure on_failure = capture_failure_policy_from_env())
      : enabled_(enabled), on_failure_(on_failure) {}
  ~GraphCache() { clear(); }
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  // Enqueues `launches` on `stream` through the graph of `key` (captured on first use), or directly.
  void run(const std::vector<int64_t>& key, cudaStream_t stream, const std::function<void()>& launches);
  void clear();  // destroys every graph (their buffers are about to move)

  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  int size() const { return static_cast<int>(graphs_.size()); }
  // "" while every capture succeeded; else the first failure: the step, the CUDA error and the key.
  const std::string& capture_error() const { return capture_error_; }
  int capture_failures() const { return capture_failures_; }

 private:
  cudaGraphExec_t capture(const std::vector<int64_t>& key, cudaStream_t stream, const std::function<void()>& launches);

  bool enabled_;
  OnCaptureFailure on_failure_;
  std::map<std::vector<int64_t>, cudaGraphExec_t> graphs_;
  std::string capture_error_;
  int capture_failures_ = 0;
};

}  // namespace vtv::cuda
