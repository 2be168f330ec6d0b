#include "cuda/graph_cache.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda/check.cuh"
#include "vtv/error.h"

namespace vtv::cuda {

OnCaptureFailure capture_failure_policy_from_env() {
  const char* v = std::getenv("VTV_GRAPH_CAPTURE");
  if (!v || !*v || std::strcmp(v, "fallback") == 0) return OnCaptureFailure::FallBack;
  if (std::strcmp(v, "strict") == 0) return OnCaptureFailure::Throw;
  throw Error(std::string("VTV_GRAPH_CAPTURE must be 'strict' or 'fallback', got '") + v + "'");
}

void GraphCache::run(const std::vector<int64_t>& key, cudaStream_t stream, const std::function<void()>& launches) {
  if (enabled_) {
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      cudaGraphExec_t exec = capture(key, stream, launches);
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

namespace {

std::string key_text(const std::vector<int64_t>& key) {
  std::string s = "[";
  for (size_t i = 0; i < key.size(); ++i) s += (i ? ", " : "") + std::to_string(key[i]);
  return s + "]";
}

std::string cuda_text(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

}  // namespace

// Captures `launches`; on a failure records it, then throws or turns graphs off and returns null.
cudaGraphExec_t GraphCache::capture(const std::vector<int64_t>& key, cudaStream_t stream,
                                    const std::function<void()>& launches) {
  auto fail = [&](const std::string& what) -> cudaGraphExec_t {
    cudaGetLastError();  // clear a sticky launch error from the failed capture
    const std::string message = "CUDA graph capture of key " + key_text(key) + " failed: " + what;
    ++capture_failures_;
    if (capture_error_.empty()) {
      capture_error_ = message;
      std::fprintf(stderr, "vtv: %s%s\n", message.c_str(),
                   on_failure_ == OnCaptureFailure::Throw ? "" : "; launching directly from now on (graphs off)");
    }
    if (on_failure_ == OnCaptureFailure::Throw) throw Error(message);
    enabled_ = false;
    return nullptr;
  };
  if (const cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal); e != cudaSuccess)
    return fail("cudaStreamBeginCapture: " + cuda_text(e));
  cudaGraph_t graph = nullptr;
  try {
    launches();
  } catch (const Error& e) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    return fail(std::string("a launch inside the capture: ") + e.what());
  }
  if (const cudaError_t e = cudaStreamEndCapture(stream, &graph); e != cudaSuccess || graph == nullptr) {
    if (graph) cudaGraphDestroy(graph);
    return fail("cudaStreamEndCapture: " + cuda_text(e == cudaSuccess ? cudaErrorStreamCaptureInvalidated : e));
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (err != cudaSuccess) return fail("cudaGraphInstantiate: " + cuda_text(err));
  return exec;
}

}  // namespace vtv::cuda
