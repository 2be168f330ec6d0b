// Exact work sharing: group items whose keys are byte-for-byte equal (hash, then memcmp), so identical
// (canvas, patch mask) samples run one MAE forward and identical token grids run one VQGAN decode.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace vtv::model {

struct Groups {
  std::vector<int> group_of;  // item -> group
  std::vector<int> first;     // group -> its first item (the representative that is computed)
  int count() const { return static_cast<int>(first.size()); }
};

// An item's key: an integer tag plus a byte string (either may be empty/zero).
struct KeyView {
  int64_t tag = 0;
  const void* bytes = nullptr;
  size_t size = 0;
};

// Groups items 0..n-1 by equal keys; with `share` false every item is its own group.
Groups group_identical(int n, const std::function<KeyView(int)>& key, bool share);

}  // namespace vtv::model
