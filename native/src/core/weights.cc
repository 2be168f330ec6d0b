// The safetensors reader: layout is an 8-byte little-endian header length n, n bytes of JSON
// {key: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data
// section, which the offsets index (relative to its start).
#include "vtv/weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/json.h"
#include "vtv/error.h"

namespace vtv {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
  }
  return "?";
}

namespace {

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}

bool parse_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> table[] = {{"F32", DType::F32}, {"F16", DType::F16},
                                                        {"BF16", DType::BF16}, {"I32", DType::I32},
                                                        {"I64", DType::I64}, {"U8", DType::U8}};
  for (const auto& e : table) {
    if (s == e.first) {
      *out = e.second;
      return true;
    }
  }
  return false;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < shape.size(); ++i) o << (i ? "," : "") << shape[i];
  o << ']';
  return o.str();
}

std::string base_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3FF) << 13;
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | man << 13;  // inf / nan
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t b) {
  uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

// The bytes of a whole weights file. Files up to kCopyLimit are read into a private, 64-byte aligned
// heap buffer: a file replaced or truncated in place while the engine runs (cp over it, a second
// convert) then cannot take the process down with SIGBUS, which a shared page of a mapping would.
// Larger files are mapped read-only (a copy would double their memory) and their size is checked
// again after the header is parsed, which catches truncation during load but not after it.
class MappedFile {
 public:
  static constexpr size_t kCopyLimit = size_t(4) << 30;

  explicit MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(path + ": cannot open weights file: " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      throw Error(path + ": cannot stat weights file: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(path + ": not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0 && size_ <= kCopyLimit) {
      void* p = nullptr;
      if (::posix_memalign(&p, 64, size_) != 0) {
        ::close(fd);
        throw Error(path + ": cannot allocate " + std::to_string(size_) + " bytes to read the weights file");
      }
      copy_ = static_cast<uint8_t*>(p);
      size_t done = 0;
      while (done < size_) {
        ssize_t n = ::pread(fd, copy_ + done, size_ - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          int err = n < 0 ? errno : 0;
          ::close(fd);
          std::free(copy_);
          copy_ = nullptr;
          throw Error(path + ": read " + std::to_string(done) + " of " + std::to_string(size_) + " bytes" +
                      (err ? std::string(": ") + std::strerror(err) : std::string(" (the file shrank while being read)")));
        }
        done += static_cast<size_t>(n);
      }
      data_ = copy_;
    } else if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int err = errno;
        ::close(fd);
        throw Error(path + ": cannot mmap weights file (" + std::to_string(size_) + " bytes): " + std::strerror(err));
      }
      data_ = static_cast<const uint8_t*>(p);
      mapped_ = true;
    }
    ::close(fd);  // the mapping (or the copy) keeps the bytes
  }
  ~MappedFile() {
    if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
    std::free(copy_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // A mapped file must still be as long as when it was mapped before its pages are read.
  void check_unchanged() const {
    if (!mapped_) return;
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0 || static_cast<size_t>(st.st_size) < size_) {
      throw Error(path_ + ": the weights file changed while it was being loaded (it was " + std::to_string(size_) +
                  " bytes); load it again once it is complete");
    }
  }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint8_t* copy_ = nullptr;
  bool mapped_ = false;
  size_t size_ = 0;
};

namespace {

// Counts the non-finite elements (Inf or NaN: all exponent bits set) of a floating-point tensor and
// the index of the first. One branch-free pass over the raw bits, which the compiler vectorises.
template <typename U, U kExp>
size_t count_non_finite(const uint8_t* p, size_t n, size_t* first) {
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    U u;
    std::memcpy(&u, p + i * sizeof(U), sizeof(U));
    bad += (u & kExp) == kExp;
  }
  if (bad) {
    for (size_t i = 0; i < n; ++i) {
      U u;
      std::memcpy(&u, p + i * sizeof(U), sizeof(U));
      if ((u & kExp) == kExp) {
        *first = i;
        break;
      }
    }
  }
  return bad;
}

void check_finite(const TensorInfo& t, const std::string& file) {
  size_t first = 0, bad = 0, n = 0;
  switch (t.dtype) {
    case DType::F32:
      n = t.nbytes / 4;
      bad = count_non_finite<uint32_t, 0x7F800000u>(t.data, n, &first);
      break;
    case DType::F16:
      n = t.nbytes / 2;
      bad = count_non_finite<uint16_t, 0x7C00u>(t.data, n, &first);
      break;
    case DType::BF16:
      n = t.nbytes / 2;
      bad = count_non_finite<uint16_t, 0x7F80u>(t.data, n, &first);
      break;
    default:
      return;
  }
  if (bad) {
    throw Error(file + ": tensor '" + t.key + "' has " + std::to_string(bad) + " non-finite value(s) (NaN or Inf) of " +
                std::to_string(n) + ", the first at element " + std::to_string(first) +
                ": the weights are corrupt (or were saved from a diverged model)");
  }
}

}  // namespace

Weights::~Weights() = default;

std::shared_ptr<Weights> Weights::open(const std::vector<std::string>& paths) {
  check(!paths.empty(), "weights: no files given");
  std::shared_ptr<Weights> w(new Weights());
  for (size_t fi = 0; fi < paths.size(); ++fi) {
    const std::string& path = paths[fi];
    const std::string name = base_name(path);
    auto map = std::make_unique<MappedFile>(path);
    const size_t size = map->size();
    if (size < 8) {
      throw Error(name + ": file is " + std::to_string(size) +
                  " bytes, shorter than the 8-byte safetensors header length — not a safetensors file, or truncated");
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | map->data()[i];
    if (hlen > size - 8) {
      throw Error(name + ": header length " + std::to_string(hlen) + " (bytes 0..7) runs past end of file (size " +
                  std::to_string(size) + ") — not a safetensors file, or truncated?");
    }
    const size_t data_start = 8 + static_cast<size_t>(hlen);
    const size_t data_size = size - data_start;
    std::string header(reinterpret_cast<const char*>(map->data()) + 8, static_cast<size_t>(hlen));
    // The format pads the header with trailing spaces to align the data section; the JSON parser
    // accepts surrounding whitespace, so nothing to strip.
    json::Value root = json::parse(header, name + " (safetensors header, byte offsets relative to byte 8)");
    if (!root.is_object()) {
      throw Error(name + ": safetensors header is a JSON " + json::Value::kind_name(root.kind()) + ", expected an object");
    }
    for (const auto& member : root.members()) {
      const std::string& key = member.first;
      const json::Value& v = member.second;
      if (key == "__metadata__") {
        if (!v.is_object()) throw Error(name + ": \"__metadata__\" must be an object of strings");
        for (const auto& m : v.members()) {
          if (!m.second.is_string()) {
            throw Error(name + ": \"__metadata__\" entry '" + m.first + "' is a " +
                        json::Value::kind_name(m.second.kind()) + ", expected a string");
          }
          w->metadata_.emplace(m.first, m.second.as_string());  // first file wins
        }
        continue;
      }
      const std::string where = name + ": tensor '" + key + "'";
      if (!v.is_object()) throw Error(where + ": entry is a " + json::Value::kind_name(v.kind()) + ", expected an object");
      const json::Value* jd = v.find("dtype");
      const json::Value* js = v.find("shape");
      const json::Value* jo = v.find("data_offsets");
      if (!jd || !jd->is_string()) throw Error(where + ": missing or non-string \"dtype\"");
      if (!js || !js->is_array()) throw Error(where + ": missing or non-array \"shape\"");
      if (!jo || !jo->is_array() || jo->items().size() != 2) {
        throw Error(where + ": \"data_offsets\" must be an array [begin, end]");
      }
      TensorInfo t;
      t.key = key;
      t.file = static_cast<int>(fi);
      if (!parse_dtype(jd->as_string(), &t.dtype)) {
        throw Error(where + ": unsupported dtype '" + jd->as_string() + "' (supported: F32, F16, BF16, I32, I64, U8)");
      }
      uint64_t elements = 1;
      bool overflow = false;
      for (const auto& d : js->items()) {
        if (!d.is_int() || d.as_int() < 0) throw Error(where + ": shape entries must be non-negative integers");
        uint64_t n = static_cast<uint64_t>(d.as_int());
        if (n != 0 && elements > UINT64_MAX / n) overflow = true;
        elements *= n;
        t.shape.push_back(d.as_int());
      }
      for (const auto& o : jo->items()) {
        if (!o.is_int() || o.as_int() < 0) throw Error(where + ": data_offsets must be non-negative integers");
      }
      const uint64_t begin = static_cast<uint64_t>(jo->items()[0].as_int());
      const uint64_t end = static_cast<uint64_t>(jo->items()[1].as_int());
      if (end < begin) {
        throw Error(where + ": data_offsets [" + std::to_string(begin) + "," + std::to_string(end) + ") end before begin");
      }
      if (end > data_size) {
        throw Error(where + " data [" + std::to_string(data_start + begin) + "," + std::to_string(data_start + end) +
                    ") runs past end of file (size " + std::to_string(size) + ") — truncated?");
      }
      const uint64_t expect = elements * dtype_size(t.dtype);
      if (overflow || elements > UINT64_MAX / dtype_size(t.dtype) || end - begin != expect) {
        throw Error(where + ": data_offsets span " + std::to_string(end - begin) + " bytes but shape " +
                    shape_str(t.shape) + " x " + dtype_name(t.dtype) + " needs " +
                    (overflow ? std::string("more than 2^64") : std::to_string(expect)));
      }
      t.data = map->data() + data_start + begin;
      t.nbytes = static_cast<size_t>(end - begin);
      check_finite(t, name);
      auto found = w->tensors_.find(key);
      if (found != w->tensors_.end()) {
        const std::string& other = base_name(paths[static_cast<size_t>(found->second.file)]);
        throw Error(where + ": duplicate key (already in " + other + ")");
      }
      w->tensors_.emplace(key, std::move(t));
    }
    map->check_unchanged();
    w->paths_.push_back(path);
    w->maps_.push_back(std::move(map));
  }
  return w;
}

bool Weights::has(const std::string& key) const { return tensors_.count(key) != 0; }

const TensorInfo& Weights::info(const std::string& key) const {
  auto it = tensors_.find(key);
  if (it == tensors_.end()) {
    std::string files;
    for (size_t i = 0; i < paths_.size(); ++i) files += (i ? ", " : "") + base_name(paths_[i]);
    throw Error("weights: no tensor '" + key + "' in " + files);
  }
  return it->second;
}

const float* Weights::f32(const std::string& key, const std::vector<int64_t>& shape) {
  const TensorInfo& t = info(key);
  if (t.shape != shape) {
    throw Error("key " + key + ": expected shape " + shape_str(shape) + ", file has " + shape_str(t.shape) + " (in " +
                base_name(paths_[static_cast<size_t>(t.file)]) + ")");
  }
  bound_.insert(key);
  if (t.dtype == DType::F32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) {
    return reinterpret_cast<const float*>(t.data);
  }
  auto cached = widened_.find(key);
  if (cached != widened_.end()) return cached->second.data();
  std::vector<float> out;
  switch (t.dtype) {
    case DType::F32:  // misaligned in the file: copy out
      out.resize(t.nbytes / 4);
      std::memcpy(out.data(), t.data, t.nbytes);
      break;
    case DType::F16:
    case DType::BF16: {
      out.resize(t.nbytes / 2);
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);  // little-endian file, little-endian host
        out[i] = t.dtype == DType::F16 ? half_to_float(h) : bf16_to_float(h);
      }
      break;
    }
    default:
      throw Error("key " + key + ": dtype " + dtype_name(t.dtype) + " cannot be read as floating point (in " +
                  base_name(paths_[static_cast<size_t>(t.file)]) + ")");
  }
  auto& slot = widened_[key];
  slot = std::move(out);
  return slot.data();
}

std::string Weights::vq_key(const std::string& key) const {
  std::string prefixed = "vae." + key;
  return has(prefixed) ? prefixed : key;
}

std::vector<std::string> Weights::keys() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

std::string Weights::metadata(const std::string& name) const {
  auto it = metadata_.find(name);
  return it == metadata_.end() ? std::string() : it->second;
}

size_t Weights::total_bytes() const {
  // Mapped file bytes plus the widened copies: what this object keeps addressable.
  size_t n = 0;
  for (const auto& m : maps_) n += m->size();
  for (const auto& kv : widened_) n += kv.second.size() * sizeof(float);
  return n;
}

}  // namespace vtv
