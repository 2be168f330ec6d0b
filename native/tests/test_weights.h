// Test helpers: a small safetensors writer and a random-weight MAE-VQGAN checkpoint written with the
// exact key names of the released checkpoints (docs/method.md#model) (listed here independently of the engine's binder, so a misspelt key on
// either side fails a test).
#pragma once
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "vtv/config.h"

namespace vtv::test {

inline uint16_t float_to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

inline uint16_t float_to_f16(float f) {  // exact for the normal/subnormal values the tests use
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  int exp = int((u >> 23) & 0xFF) - 127 + 15;
  uint32_t man = u & 0x7FFFFF;
  if (((u >> 23) & 0xFF) == 0) return sign;
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7C00);
  if (exp <= 0) {  // subnormal half
    man |= 0x800000;
    int shift = 14 - exp;
    return static_cast<uint16_t>(sign | (man >> shift));
  }
  return static_cast<uint16_t>(sign | (exp << 10) | (man >> 13));
}

class SafetensorsWriter {
 public:
  void add_raw(const std::string& key, const std::string& dtype, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
    entries_.push_back({key, dtype, std::move(shape), std::move(bytes)});
  }
  void add_f32(const std::string& key, std::vector<int64_t> shape, const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    add_raw(key, "F32", std::move(shape), std::move(b));
  }
  void add_bf16(const std::string& key, std::vector<int64_t> shape, const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h = float_to_bf16(v[i]);
      std::memcpy(b.data() + 2 * i, &h, 2);
    }
    add_raw(key, "BF16", std::move(shape), std::move(b));
  }
  void add_f16(const std::string& key, std::vector<int64_t> shape, const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h = float_to_f16(v[i]);
      std::memcpy(b.data() + 2 * i, &h, 2);
    }
    add_raw(key, "F16", std::move(shape), std::move(b));
  }
  void set_metadata(const std::string& k, const std::string& v) { metadata_.emplace_back(k, v); }
  // Pads the header so the data section starts at (8 + header) % 8 == misalign (0 = aligned).
  void set_data_misalignment(int misalign) { misalign_ = misalign; }

  std::vector<uint8_t> bytes() const {
    std::string h = "{";
    bool first = true;
    if (!metadata_.empty()) {
      h += "\"__metadata__\":{";
      for (size_t i = 0; i < metadata_.size(); ++i) {
        h += (i ? "," : "") + std::string("\"") + metadata_[i].first + "\":\"" + metadata_[i].second + "\"";
      }
      h += "}";
      first = false;
    }
    size_t offset = 0;
    for (const auto& e : entries_) {
      h += first ? "" : ",";
      first = false;
      h += "\"" + e.key + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":[";
      for (size_t i = 0; i < e.shape.size(); ++i) h += (i ? "," : "") + std::to_string(e.shape[i]);
      h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.bytes.size()) + "]}";
      offset += e.bytes.size();
    }
    h += "}";
    while ((8 + h.size()) % 8 != static_cast<size_t>(misalign_)) h += ' ';
    std::vector<uint8_t> out(8);
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
    out.insert(out.end(), h.begin(), h.end());
    for (const auto& e : entries_) out.insert(out.end(), e.bytes.begin(), e.bytes.end());
    return out;
  }

  void write(const std::string& path) const { write_bytes(path, bytes()); }

  static void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!f) throw std::runtime_error("cannot write " + path);
  }

 private:
  struct Entry {
    std::string key, dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  int misalign_ = 0;
};

// A fresh path under the system temp directory, removed by the destructor.
class TempFile {
 public:
  explicit TempFile(const std::string& stem) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/vtv_" + stem + "_" + std::to_string(::getpid()) + "_" +
            std::to_string(counter()++) + ".safetensors";
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string path_;
};

struct RandomModelOptions {
  uint32_t seed = 1;
  bool mae = true;
  bool vqgan = true;
  bool vqgan_encoder = false;      // also the VQGAN encoder and quant_conv (optional in real files)
  std::string vq_prefix = "vae.";  // "vae." as in the MAE .pth, "" as in the VQGAN last.ckpt
  bool bf16 = false;               // store every tensor as BF16 (the engine widens)
};

// Writes every MAE and VQGAN-decoder tensor of `c` with random values of a sensible scale
// (weights ~ N(0, 1/fan_in), norms near 1), so activations stay O(1) through the whole forward.
inline void add_random_model(SafetensorsWriter& w, const ModelConfig& c, const RandomModelOptions& o) {
  std::mt19937 rng(o.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto add = [&](const std::string& key, std::vector<int64_t> shape, float scale, float offset = 0.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = offset + scale * normal(rng);
    if (o.bf16) w.add_bf16(key, std::move(shape), v);
    else w.add_f32(key, std::move(shape), v);
  };
  auto linear = [&](const std::string& p, int64_t out, int64_t in) {
    add(p + ".weight", {out, in}, 1.0f / std::sqrt(float(in)));
    add(p + ".bias", {out}, 0.05f);
  };
  auto norm = [&](const std::string& p, int64_t ch) {
    add(p + ".weight", {ch}, 0.1f, 1.0f);
    add(p + ".bias", {ch}, 0.1f);
  };
  auto conv = [&](const std::string& p, int64_t out, int64_t in, int64_t k) {
    add(p + ".weight", {out, in, k, k}, 1.0f / std::sqrt(float(in * k * k)));
    add(p + ".bias", {out}, 0.05f);
  };
  auto block = [&](const std::string& p, int64_t d) {
    norm(p + ".norm1", d);
    linear(p + ".attn.qkv", 3 * d, d);
    linear(p + ".attn.proj", d, d);
    norm(p + ".norm2", d);
    linear(p + ".mlp.fc1", d * c.mlp_ratio, d);
    linear(p + ".mlp.fc2", d, d * c.mlp_ratio);
  };
  if (o.mae) {
    const int64_t E = c.enc_dim, D = c.dec_dim;
    add("cls_token", {1, 1, E}, 0.5f);
    add("pos_embed", {1, 197, E}, 0.5f);
    add("patch_embed.proj.weight", {E, 3, 16, 16}, 1.0f / std::sqrt(768.0f));
    add("patch_embed.proj.bias", {E}, 0.05f);
    for (int l = 0; l < c.enc_depth; ++l) block("blocks." + std::to_string(l), E);
    norm("norm", E);
    linear("decoder_embed", D, E);
    add("mask_token", {1, 1, D}, 0.5f);
    add("decoder_pos_embed", {1, 197, D}, 0.5f);
    for (int l = 0; l < c.dec_depth; ++l) block("decoder_blocks." + std::to_string(l), D);
    norm("decoder_norm", D);
    // Larger logits scale so argmax is decisive and tokens vary across positions.
    add("decoder_pred.weight", {c.vocab(), D}, 2.0f / std::sqrt(float(D)));
    add("decoder_pred.bias", {c.vocab()}, 0.05f);
  }
  if (o.vqgan) {
    const VqganConfig& q = c.vq;
    const std::string v = o.vq_prefix;
    add(v + "quantize.embedding.weight", {q.n_embed, q.embed_dim}, 1.0f);
    conv(v + "post_quant_conv", q.z_channels, q.embed_dim, 1);
    auto resnet = [&](const std::string& p, int64_t in, int64_t out) {
      norm(p + ".norm1", in);
      conv(p + ".conv1", out, in, 3);
      norm(p + ".norm2", out);
      conv(p + ".conv2", out, out, 3);
      if (in != out) conv(p + ".nin_shortcut", out, in, 1);
    };
    auto attn = [&](const std::string& p, int64_t ch) {
      norm(p + ".norm", ch);
      conv(p + ".q", ch, ch, 1);
      conv(p + ".k", ch, ch, 1);
      conv(p + ".v", ch, ch, 1);
      conv(p + ".proj_out", ch, ch, 1);
    };
    int64_t ch = q.ch * q.ch_mult[4];
    conv(v + "decoder.conv_in", ch, q.z_channels, 3);
    resnet(v + "decoder.mid.block_1", ch, ch);
    attn(v + "decoder.mid.attn_1", ch);
    resnet(v + "decoder.mid.block_2", ch, ch);
    for (int i = 4; i >= 0; --i) {
      const int64_t out = q.ch * q.ch_mult[static_cast<size_t>(i)];
      for (int j = 0; j <= q.num_res_blocks; ++j) {
        resnet(v + "decoder.up." + std::to_string(i) + ".block." + std::to_string(j), ch, out);
        ch = out;
        if (i == 4) attn(v + "decoder.up.4.attn." + std::to_string(j), ch);
      }
      if (i != 0) conv(v + "decoder.up." + std::to_string(i) + ".upsample.conv", ch, ch, 3);
    }
    norm(v + "decoder.norm_out", ch);
    conv(v + "decoder.conv_out", 3, ch, 3);
    if (o.vqgan_encoder) {
      // taming Encoder: in_ch_mult = (1,) + ch_mult, num_res_blocks blocks per level, attention at level 4.
      ch = q.ch;
      conv(v + "encoder.conv_in", ch, 3, 3);
      for (int i = 0; i <= 4; ++i) {
        const int64_t out = q.ch * q.ch_mult[static_cast<size_t>(i)];
        for (int j = 0; j < q.num_res_blocks; ++j) {
          resnet(v + "encoder.down." + std::to_string(i) + ".block." + std::to_string(j), ch, out);
          ch = out;
          if (i == 4) attn(v + "encoder.down.4.attn." + std::to_string(j), ch);
        }
        if (i != 4) conv(v + "encoder.down." + std::to_string(i) + ".downsample.conv", ch, ch, 3);
      }
      resnet(v + "encoder.mid.block_1", ch, ch);
      attn(v + "encoder.mid.attn_1", ch);
      resnet(v + "encoder.mid.block_2", ch, ch);
      norm(v + "encoder.norm_out", ch);
      conv(v + "encoder.conv_out", q.z_channels, ch, 3);
      conv(v + "quant_conv", q.embed_dim, q.z_channels, 1);
    }
  }
}

inline void write_random_model(const std::string& path, const ModelConfig& c, const RandomModelOptions& o = {}) {
  SafetensorsWriter w;
  add_random_model(w, c, o);
  w.write(path);
}

}  // namespace vtv::test
