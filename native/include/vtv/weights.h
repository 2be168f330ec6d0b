// Weights from one or more safetensors files, read into memory (mapped beyond 4 GiB); every
// floating-point tensor is checked for NaN/Inf once, at open. Key names are those of the released
// checkpoints (docs/method.md#model): the MAE state-dict names as they are, and the VQGAN under "vae." (as in the
// MAE .pth that kept its vae submodule) or without the prefix (as in the VQGAN last.ckpt); lookups try
// both. fp32 tensors are served straight from the mapping when aligned; bf16/fp16 are widened once.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace vtv {

enum class DType { F32, F16, BF16, I32, I64, U8 };
const char* dtype_name(DType d);

struct TensorInfo {
  std::string key;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data;  // into the mapping
  size_t nbytes;
  int file;             // index into Weights::files()
};

class MappedFile;

class Weights {
 public:
  // Opens and validates every file (header JSON, offsets inside the file, shapes x dtype = byte span,
  // finite values).
  // Errors name the file and the key or byte offset at fault.
  static std::shared_ptr<Weights> open(const std::vector<std::string>& paths);
  ~Weights();

  bool has(const std::string& key) const;
  const TensorInfo& info(const std::string& key) const;  // throws naming the key (and the files searched)
  // fp32 view of `key`, checked against `shape` (throws "key K: expected shape [..], file has [..]").
  const float* f32(const std::string& key, const std::vector<int64_t>& shape);
  // Resolves a VQGAN key: "vae.<key>" if present, else "<key>".
  std::string vq_key(const std::string& key) const;
  std::vector<std::string> keys() const;
  // The keys f32() has returned so far, sorted: what a model bound from these weights reads.
  std::vector<std::string> bound_keys() const { return {bound_.begin(), bound_.end()}; }
  // The "__metadata__" string map of the first file that has one key, or "" when absent.
  std::string metadata(const std::string& name) const;
  const std::vector<std::string>& files() const { return paths_; }
  size_t total_bytes() const;

 private:
  Weights() = default;
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::vector<float>> widened_;  // converted or realigned copies
  std::set<std::string> bound_;
};

}  // namespace vtv
