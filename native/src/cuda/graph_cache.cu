#include "cuda/graph_cache.h"

#include "cuda/check.cuh"
#include "vtv/error.h"

namespace vtv::cuda {

void GraphCache::run(const std::vector<int64_t>& key, cudaStream_t stream, const std::function<void()>& launches) {
  if (enabled_) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      cudaGraphExec_t exec = capture(stream, launches);
      if (exec) it = graphs_.emplace(key, exec).first;
    }
    if (it != graphs_.end()) {
      VTV_CUDA_CHECK(cudaGraphLaunch(it->second, stream));
      return;
    }
  }
  launches();
}

void GraphCache::clear() {
  for (auto& g : graphs_) cudaGraphExecDestroy(g.second);
  graphs_.clear();
}

// Captures `launches`; on any failure turns graphs off and returns null.
cudaGraphExec_t GraphCache::capture(cudaStream_t stream, const std::function<void()>& launches) {
  auto fail = [&]() -> cudaGraphExec_t {
    cudaGetLastError();  // clear a sticky launch error from the failed capture
    enabled_ = false;
    return nullptr;
  };
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return fail();
  cudaGraph_t graph = nullptr;
  try {
    launches();
  } catch (const Error&) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    return fail();
  }
  if (cudaStreamEndCapture(stream, &graph) != cudaSuccess || graph == nullptr) {
    if (graph) cudaGraphDestroy(graph);
    return fail();
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (err != cudaSuccess) return fail();
  return exec;
}

}  // namespace vtv::cuda
