// CUDA graphs for a sequence of launches that repeats with the same shape (MaeCuda's pass, VqganCuda's
// decode pass): the first run of a key captures the sequence on the stream and instantiates it, later
// runs replay it. A capture that fails turns graphs off for the cache's owner, which then launches
// directly (the same kernels, one by one). Keys must name everything the launches bake in: the shape
// and every device pointer they use. Not thread-safe; only .cu files include it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

namespace vtv::cuda {

class GraphCache {
 public:
  explicit GraphCache(bool enabled = true) : enabled_(enabled) {}
  ~GraphCache() { clear(); }
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  // Enqueues `launches` on `stream` through the graph of `key` (captured on first use), or directly.
  void run(const std::vector<int64_t>& key, cudaStream_t stream, const std::function<void()>& launches);
  void clear();  // destroys every graph (their buffers are about to move)

  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  int size() const { return static_cast<int>(graphs_.size()); }

 private:
  cudaGraphExec_t capture(cudaStream_t stream, const std::function<void()>& launches);

  bool enabled_;
  std::map<std::vector<int64_t>, cudaGraphExec_t> graphs_;
};

}  // namespace vtv::cuda
