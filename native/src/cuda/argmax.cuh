// Argmax as one 64-bit key per row, so that any number of threads can fold candidates in with atomicMax
// and the result does not depend on their order: the high word is the value mapped to an unsigned
// integer that orders as the floats do, the low word is 0xFFFFFFFF - column, so on equal values the
// smaller column (torch.argmax's first maximum) wins. Key 0 is below every finite value: the reset state.
#pragma once
#include <cstdint>

namespace vtv::cuda {

__device__ __forceinline__ unsigned long long argmax_key(float v, int col) {
  unsigned u = __float_as_uint(v);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<unsigned long long>(u) << 32) | static_cast<unsigned>(0xFFFFFFFFu - static_cast<unsigned>(col));
}

__device__ __forceinline__ int32_t argmax_key_column(unsigned long long key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<unsigned>(key & 0xFFFFFFFFull));
}

__device__ __forceinline__ unsigned long long max_key(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

}  // namespace vtv::cuda
