// Pieces shared by the VQGAN encoder and decoder forwards (docs/method.md#vqgan): the conv shape of a bound ConvW,
// and a ring of four equal feature-map buffers on which the ResnetBlock and AttnBlock run in place of
// the "current" map. Both networks are a chain of these blocks between a few convolutions, so each one
// only decides which buffer a conv writes next.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/conv.h"
#include "model/weights_view.h"
#include "vtv/config.h"

namespace vtv::model {

// Resizes v to at least n floats (never shrinks: buffers are reused across calls).
void grow(std::vector<float>& v, int64_t n);

// A stride-1 conv of w over an H x W input: 3x3 convs pad 1, 1x1 convs pad 0; `upsample2x` reads the
// input as its nearest x2 upsampling.
cpu::Conv2dShape conv_shape(int64_t n, const ConvW& w, int64_t H, int64_t W, bool upsample2x = false);

// The taming Downsample conv: pad (0, 1, 0, 1) (right and bottom only), then 3x3 stride 2, no padding.
cpu::Conv2dShape downsample_shape(int64_t n, const ConvW& w, int64_t H, int64_t W);

// Activation bytes per sample of a network whose largest feature map has `max_elems` floats and
// whose largest attention block map has `max_attn_elems`: four ring buffers plus q, k, v and o.
int64_t ring_bytes_per_sample(int64_t max_elems, int64_t max_attn_elems);

// Four feature-map buffers used as a ring; `current` is the running map, the next three are scratch.
class FeatureRing {
 public:
  // Makes every ring buffer hold at least `floats` floats (the attention scratch grows on use).
  void reserve(int64_t floats);

  float* buf(int i) { return bufs_[static_cast<size_t>(i % 4)].data(); }
  // The network's transformed convolution weights, kept across runs (conv2d's cache).
  cpu::ConvWeightCache* conv_cache() { return &conv_cache_; }
  int current() const { return cur_; }
  float* current_map() { return buf(cur_); }
  // The buffer `ahead` steps after the current one (1..3), free scratch.
  int next(int ahead = 1) const { return (cur_ + ahead) % 4; }
  void set_current(int i) { cur_ = i % 4; }

  // ResnetBlock (docs/method.md#vqgan): shortcut(x) + conv2(swish(GN2(conv1(swish(GN1(x)))))). The result becomes
  // the current map (in place when in == out, else in the shortcut's buffer).
  void resnet(ThreadPool& pool, const VqganConfig& q, const ResnetBlockW& w, int64_t n, int64_t H, int64_t W);
  // AttnBlock (docs/method.md#vqgan): x + proj_out(attention(q, k, v of GN(x))), in place on the current map.
  void attention(ThreadPool& pool, const VqganConfig& q, const AttnBlockW& w, int64_t n, int64_t H, int64_t W);

 private:
  std::vector<float> bufs_[4];
  int cur_ = 0;
  std::vector<float> q_, k_, v_, o_;
  cpu::ConvWeightCache conv_cache_;
};

}  // namespace vtv::model
