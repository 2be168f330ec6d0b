#include "model/work_sharing.h"

#include <cstring>
#include <unordered_map>

namespace vtv::model {

namespace {

uint64_t hash_key(const KeyView& k) {
  // FNV-1a over the tag and the bytes: collisions only cost a memcmp.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= 1099511628211ull;
    }
  };
  mix(reinterpret_cast<const uint8_t*>(&k.tag), sizeof(k.tag));
  mix(static_cast<const uint8_t*>(k.bytes), k.size);
  return h;
}

bool equal_keys(const KeyView& a, const KeyView& b) {
  return a.tag == b.tag && a.size == b.size && (a.size == 0 || std::memcmp(a.bytes, b.bytes, a.size) == 0);
}

}  // namespace

Groups group_identical(int n, const std::function<KeyView(int)>& key, bool share) {
  Groups g;
  g.group_of.resize(static_cast<size_t>(n));
  if (!share) {
    for (int i = 0; i < n; ++i) {
      g.group_of[static_cast<size_t>(i)] = i;
      g.first.push_back(i);
    }
    return g;
  }
  std::unordered_multimap<uint64_t, int> seen;  // hash -> group
  seen.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const KeyView k = key(i);
    const uint64_t h = hash_key(k);
    int group = -1;
    auto range = seen.equal_range(h);
    for (auto it = range.first; it != range.second; ++it) {
      if (equal_keys(key(g.first[static_cast<size_t>(it->second)]), k)) {
        group = it->second;
        break;
      }
    }
    if (group < 0) {
      group = g.count();
      g.first.push_back(i);
      seen.emplace(h, group);
    }
    g.group_of[static_cast<size_t>(i)] = group;
  }
  return g;
}

}  // namespace vtv::model
