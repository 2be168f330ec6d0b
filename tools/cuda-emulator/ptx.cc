// The asynchronous and collective PTX primitives on the CPU CUDA emulator: cp.async (per-thread queues
// that land at the wait that retires them), ldmatrix (a warp collective) and wgmma (a warpgroup
// collective on shared-memory matrix descriptors). The fragment and descriptor layouts are written
// here from the PTX ISA, independently of any kernel's use of them, so a kernel that addresses its
// fragments wrongly gets wrong values, as on a GPU:
//   - "Data Movement and Conversion Instructions: cp.async" and "cp.async.wait_group";
//   - "Warp-level matrix load instruction: ldmatrix" (the m8n8 .b16 fragment table);
//   - "Asynchronous Warpgroup Level Matrix Multiply-Accumulate" (wgmma): the register fragments of A
//     and D for .m64nNk16, and "Matrix Descriptor Format" with the K-major shared-memory layouts
//     without swizzling and with the 128-byte swizzle.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "emulator.h"

namespace vtv_emu {

namespace {

std::string ptr_text(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// A write of [dst, dst + bytes) into shared memory that a wgmma in flight reads is a race (WgmmaReads).
void check_no_wgmma_reads(const char* dst, unsigned bytes, const char* when) {
  const char* base = dynamic_shared_base();
  if (!base || dst < base || dst + bytes > base + dynamic_shared_bytes()) return;  // static shared memory
  const WgmmaReads& R = wgmma_reads();
  const size_t off = size_t(dst - base);
  for (size_t c = off / 16; c <= (off + bytes - 1) / 16; ++c)
    if (c < R.count.size() && R.count[c])
      fail_thread(std::string("cp.async ") + when + " into shared offset " + std::to_string(off) +
                  ", which a wgmma in flight reads (its group not yet retired by wgmma.wait_group): a "
                  "write-after-read race");
}

void land(const std::vector<AsyncCopy>& group) {
  for (const AsyncCopy& c : group) {
    check_no_wgmma_reads(c.dst, c.bytes, "lands");
    std::memcpy(c.dst, c.data, c.bytes);
  }
}

float bf16_to_float(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

// ---- cp.async ---------------------------------------------------------------------------------------

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  if (bytes != 4 && bytes != 8 && bytes != 16) fail_thread("cp.async of " + std::to_string(bytes) + " bytes (4, 8 or 16)");
  if (src_bytes < 0 || src_bytes > bytes)
    fail_thread("cp.async with src-size " + std::to_string(src_bytes) + " for a copy of " + std::to_string(bytes) + " bytes");
  const std::string what = "cp.async of " + std::to_string(bytes) + " bytes";
  if (addr(dst) % unsigned(bytes))
    fail_thread(what + ": the shared destination " + ptr_text(dst) + " is not " + std::to_string(bytes) + "-byte aligned");
  if (!is_shared_range(dst, size_t(bytes)))
    fail_thread(what + ": the destination " + ptr_text(dst) + " is not shared memory of this block (" +
                describe_device_address(dst) + ")");
  if (src_bytes > 0) {
    if (addr(src) % unsigned(bytes))
      fail_thread(what + ": the global source " + ptr_text(src) + " is not " + std::to_string(bytes) + "-byte aligned");
    if (!is_device_range(src, size_t(src_bytes)))
      fail_thread(what + ": the source range of " + std::to_string(src_bytes) + " bytes at " + ptr_text(src) +
                  " is not inside one device allocation (" + describe_device_address(src) + ")");
  }
  check_no_wgmma_reads(static_cast<const char*>(dst), unsigned(bytes), "issues");
  AsyncCopy c{static_cast<char*>(dst), unsigned(bytes), {}};
  if (src_bytes > 0) std::memcpy(c.data, src, size_t(src_bytes));  // global memory is read as the copy issues
  std::memset(c.data + src_bytes, 0, size_t(bytes - src_bytes));
  thread_async().uncommitted.push_back(c);
}

void cp_async_commit() {
  ThreadAsync& a = thread_async();
  a.groups.push_back(std::move(a.uncommitted));  // an empty group is allowed, as in PTX
  a.uncommitted.clear();
}

void cp_async_wait(int n) {
  if (n < 0) fail_thread("cp.async.wait_group " + std::to_string(n));
  ThreadAsync& a = thread_async();
  while (a.groups.size() > size_t(n)) {
    land(a.groups.front());
    a.groups.pop_front();
  }
}

// ---- ldmatrix ---------------------------------------------------------------------------------------

void ldmatrix(uint32_t* r, int count, bool trans, const void* row_addr) {
  if (count != 1 && count != 2 && count != 4) fail_thread("ldmatrix .x" + std::to_string(count) + " (x1, x2 or x4)");
  struct Slot {
    const char* addr;
    int count;
    int trans;
  };
  struct Result {
    int ready;
    uint32_t r[32][4];
  };
  void* exchange = warp_exchange(static_cast<int>(sizeof(Slot)));
  auto slot = [&](unsigned l) -> Slot& { return *reinterpret_cast<Slot*>(static_cast<char*>(exchange) + 64 * l); };
  auto* result = static_cast<Result*>(warp_scratch(exchange));
  const unsigned lane = lane_id();
  slot(lane) = Slot{static_cast<const char*>(row_addr), count, trans ? 1 : 0};
  result->ready = 0;
  warp_barrier();

  if (!result->ready) {  // the first lane to resume assembles the whole warp's fragments
    for (unsigned l = 0; l < 32; ++l) {
      if (slot(l).count != count || slot(l).trans != int(trans))
        fail_thread("ldmatrix: lane " + std::to_string(l) + " executes a different shape (.x" + std::to_string(slot(l).count) +
                    (slot(l).trans ? ".trans" : "") + ") than lane " + std::to_string(lane));
    }
    // Matrix m's 8 rows (8 b16 each, 16 bytes) come from the addresses of lanes 8m .. 8m+7 (PTX ISA:
    // .x1 uses threads 0-7, .x2 threads 0-15, .x4 threads 0-31); other lanes' addresses are ignored.
    uint16_t M[4][8][8];
    for (int m = 0; m < count; ++m)
      for (int row = 0; row < 8; ++row) {
        const unsigned from = unsigned(8 * m + row);
        const char* p = slot(from).addr;
        if (addr(p) % 16)
          fail_thread("ldmatrix: lane " + std::to_string(from) + "'s row address " + ptr_text(p) + " (row " +
                      std::to_string(row) + " of matrix " + std::to_string(m) + ") is not 16-byte aligned");
        if (!is_shared_range(p, 16))
          fail_thread("ldmatrix: lane " + std::to_string(from) + "'s row address " + ptr_text(p) +
                      " is not shared memory of this block (" + describe_device_address(p) + ")");
        std::memcpy(M[m][row], p, 16);
      }
    // Each lane (g, t) = (lane / 4, lane % 4) receives, per matrix, the pair at row g, columns 2t and
    // 2t+1 (the lower column in the lower half); with .trans, the pair of the transposed matrix: rows 2t
    // and 2t+1 of column g.
    for (unsigned l = 0; l < 32; ++l) {
      const int g = static_cast<int>(l / 4), t = static_cast<int>(l % 4);
      for (int m = 0; m < count; ++m) {
        const uint16_t lo = trans ? M[m][2 * t][g] : M[m][g][2 * t];
        const uint16_t hi = trans ? M[m][2 * t + 1][g] : M[m][g][2 * t + 1];
        result->r[l][m] = uint32_t(lo) | (uint32_t(hi) << 16);
      }
    }
    result->ready = 1;
  }
  for (int m = 0; m < count; ++m) r[m] = result->r[lane][m];
}

// ---- wgmma --------------------------------------------------------------------------------------------

uint32_t shared_address(const void* p) {
  const char* c = static_cast<const char*>(p);
  const char* base = dynamic_shared_base();
  if (!dynamic_shared_bytes() || c < base || c > base + dynamic_shared_bytes())
    fail_thread("shared address of " + ptr_text(p) +
                ": the emulator's shared window (for wgmma descriptors) is the block's dynamic shared memory only");
  return static_cast<uint32_t>(c - base);
}

namespace {

// A shared-memory matrix descriptor (PTX ISA "Matrix Descriptor Format"): bits 0-13 the start address,
// 16-29 the leading dimension byte offset, 32-45 the stride dimension byte offset (each >> 4), 49-51
// the base offset, 62-63 the swizzle mode (0 none, 1 128-byte, 2 64-byte, 3 32-byte).
struct Descriptor {
  uint32_t start, lbo, sbo;
  int base_offset, swizzle;
};

Descriptor decode(uint64_t d) {
  return Descriptor{uint32_t(d & 0x3FFF) << 4, uint32_t((d >> 16) & 0x3FFF) << 4, uint32_t((d >> 32) & 0x3FFF) << 4,
                    int((d >> 49) & 7), int(d >> 62)};
}

// Reads rows x 16 bf16 of a K-major operand (element (row, k) with k contiguous within a row of a core
// matrix) as floats. Without swizzling, a core matrix is 8 rows of 16 contiguous bytes (128 bytes);
// core matrices adjacent in K are LBO bytes apart, adjacent in M/N (8 rows further) SBO bytes apart.
// With the 128-byte swizzle, an atom is 8 rows of 128 bytes (64 elements of K), rows 128 bytes apart,
// atoms SBO bytes apart in M/N, and the 16-byte chunk index (address bits 4-6) is XORed with the row
// within the atom (address bits 7-9); LBO is unused for K-major operands.
void read_operand(const char* which, uint64_t desc, int rows, float (*out)[16], std::vector<uint32_t>& chunks) {
  const Descriptor d = decode(desc);
  if (d.swizzle == 2 || d.swizzle == 3)
    fail_thread(std::string("wgmma: the ") + which + " descriptor's " + (d.swizzle == 2 ? "64" : "32") +
                "-byte swizzle is not emulated (none and 128-byte are)");
  if (d.base_offset != 0) fail_thread(std::string("wgmma: the ") + which + " descriptor's base offset is not emulated");
  const char* base = dynamic_shared_base();
  const size_t limit = dynamic_shared_bytes();
  for (int row = 0; row < rows; ++row)
    for (int k = 0; k < 16; ++k) {
      uint32_t off;
      if (d.swizzle == 0) {
        off = d.start + uint32_t(row / 8) * d.sbo + uint32_t(k / 8) * d.lbo + uint32_t(row % 8) * 16 + uint32_t(k % 8) * 2;
      } else {
        off = d.start + uint32_t(row / 8) * d.sbo + uint32_t(row % 8) * 128 + uint32_t(k / 8) * 16 + uint32_t(k % 8) * 2;
        off ^= ((off >> 7) & 7u) << 4;
      }
      if (size_t(off) + 2 > limit)
        fail_thread(std::string("wgmma: the ") + which + " descriptor reads shared offset " + std::to_string(off) +
                    " (row " + std::to_string(row) + ", k " + std::to_string(k) + "), past the block's " +
                    std::to_string(limit) + " bytes of dynamic shared memory");
      uint16_t h;
      std::memcpy(&h, base + off, 2);
      out[row][k] = bf16_to_float(h);
      chunks.push_back(off / 16);
    }
}

}  // namespace

void wgmma_fence() { thread_async().mma_fenced = true; }

void wgmma_bf16(float* d, int n, const uint32_t* a_regs, uint64_t desc_a, uint64_t desc_b, int scale_d) {
  if (n < 8 || n > 256 || n % 8) fail_thread("wgmma .m64n" + std::to_string(n) + "k16 (N is 8 .. 256 in steps of 8)");
  ThreadAsync& st = thread_async();
  if (!st.mma_fenced)
    fail_thread("wgmma.mma_async without a wgmma.fence since the accumulators were last touched (the kernel's first "
                "wgmma, or one after a wgmma.wait_group)");
  struct Slot {
    uint64_t desc_a, desc_b;
    uint32_t a[4];
    int n, a_in_regs;
  };
  struct Scratch {
    int ready;
    float p[64 * 256];
  };
  void* exchange = warpgroup_exchange(static_cast<int>(sizeof(Slot)));
  auto slot = [&](unsigned q) -> Slot& { return *reinterpret_cast<Slot*>(static_cast<char*>(exchange) + 64 * q); };
  auto* scratch = static_cast<Scratch*>(warpgroup_scratch(exchange));
  const unsigned rank = warpgroup_rank();
  Slot mine{desc_a, desc_b, {0, 0, 0, 0}, n, a_regs ? 1 : 0};
  if (a_regs) std::memcpy(mine.a, a_regs, sizeof mine.a);
  slot(rank) = mine;
  scratch->ready = 0;
  warpgroup_barrier();

  if (!scratch->ready) {  // the first thread to resume computes the warpgroup's product
    for (unsigned q = 0; q < 128; ++q) {
      const Slot& s = slot(q);
      if (s.n != n || s.a_in_regs != mine.a_in_regs || s.desc_b != desc_b || (!s.a_in_regs && s.desc_a != desc_a))
        fail_thread("wgmma: thread " + std::to_string(q) + " of the warpgroup executes a different shape or descriptor " +
                    "than thread " + std::to_string(rank) + " (they must agree across the warpgroup)");
    }
    static thread_local float A[64][16], B[256][16];
    if (mine.a_in_regs) {
      // A (64 x 16) from registers: warp w of the warpgroup holds rows 16w .. 16w+15 in the layout of
      // mma.m16n8k16's A; lane (g, t): a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, ..], a2 = A[g][2t+8, ..],
      // a3 = A[g+8][2t+8, ..], the lower k in the lower half.
      for (unsigned q = 0; q < 128; ++q) {
        const int w = int(q / 32), g = int(q % 32) / 4, t = int(q % 4);
        for (int r = 0; r < 4; ++r) {
          const int row = 16 * w + g + ((r & 1) ? 8 : 0), k = 2 * t + ((r & 2) ? 8 : 0);
          A[row][k] = bf16_to_float(uint16_t(slot(q).a[r] & 0xFFFF));
          A[row][k + 1] = bf16_to_float(uint16_t(slot(q).a[r] >> 16));
        }
      }
    }
    std::vector<uint32_t> chunks;  // what this wgmma reads: in flight until its group retires
    if (!mine.a_in_regs) read_operand("A", desc_a, 64, A, chunks);
    read_operand("B", desc_b, n, B, chunks);  // B is N x K, K-major
    std::sort(chunks.begin(), chunks.end());
    chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
    WgmmaReads& R = wgmma_reads();
    for (uint32_t c : chunks) {
      ++R.count[c];
      R.open[warpgroup_index()].push_back(c);
    }
    for (int row = 0; row < 64; ++row)
      for (int col = 0; col < n; ++col) {
        float acc = 0.0f;
        for (int k = 0; k < 16; ++k) acc += A[row][k] * B[col][k];
        scratch->p[row * 256 + col] = acc;
      }
    scratch->ready = 1;
  }

  // D (64 x N): thread (w, g, t) of the warpgroup holds, for each 8-column block j, d[4j + 0, 1] =
  // D[16w + g][8j + 2t, 8j + 2t + 1] and d[4j + 2, 3] = D[16w + g + 8][8j + 2t, 8j + 2t + 1].
  const int w = int(rank / 32), g = int(rank % 32) / 4, t = int(rank % 4);
  PendingMma* prev = nullptr;  // the latest result still in flight for these registers: the input
  for (auto it = st.mmas.rbegin(); it != st.mmas.rend(); ++it)
    if (it->d == d) {
      if (it->n != n / 2) fail_thread("wgmma: accumulators in flight with a different N");
      prev = &*it;
      break;
    }
  PendingMma next{d, n / 2, {}, -1};
  for (int i = 0; i < n / 2; ++i) {
    const int j = i / 4, e = i % 4;
    const int row = 16 * w + g + (e >= 2 ? 8 : 0), col = 8 * j + 2 * t + (e & 1);
    const float in = scale_d ? (prev ? prev->value[i] : d[i]) : 0.0f;
    next.value[i] = in + scratch->p[row * 256 + col];
  }
  if (prev && prev->group == -1) {
    std::memcpy(prev->value, next.value, sizeof next.value);
  } else {
    st.mmas.push_back(next);
  }
}

void wgmma_commit() {
  ThreadAsync& st = thread_async();
  if (warpgroup_rank() == 0) {  // the warpgroup's reads since its last commit become this group's
    WgmmaReads& R = wgmma_reads();
    const unsigned wg = warpgroup_index();
    R.committed[wg].push_back(WgmmaReads::Group{st.mma_groups_committed, std::move(R.open[wg])});
    R.open[wg].clear();
  }
  for (PendingMma& m : st.mmas)
    if (m.group == -1) m.group = st.mma_groups_committed;
  ++st.mma_groups_committed;
}

void wgmma_wait(int n) {
  if (n < 0 || n > 7) fail_thread("wgmma.wait_group " + std::to_string(n) + " (0 .. 7)");
  ThreadAsync& st = thread_async();
  while (st.mma_groups_committed - st.mma_groups_retired > n) {
    const long g = st.mma_groups_retired++;
    // The first thread of the warpgroup to retire group g releases what it read.
    auto& groups = wgmma_reads().committed[warpgroup_index()];
    for (auto it = groups.begin(); it != groups.end(); ++it)
      if (it->seq == g) {
        for (uint32_t c : it->chunks) --wgmma_reads().count[c];
        groups.erase(it);
        break;
      }
    for (size_t i = 0; i < st.mmas.size();) {
      if (st.mmas[i].group == g) {
        std::memcpy(st.mmas[i].d, st.mmas[i].value, sizeof(float) * size_t(st.mmas[i].n));
        st.mmas.erase(st.mmas.begin() + long(i));
      } else {
        ++i;
      }
    }
  }
  st.mma_fenced = false;
}

std::string unfinished_async(const ThreadAsync& a) {
  std::string s;
  size_t copies = a.uncommitted.size();
  for (const auto& g : a.groups) copies += g.size();
  if (copies)
    s = std::to_string(copies) + " cp.async cop" + (copies == 1 ? "y" : "ies") +
        " never waited for (cp.async.wait_group)";
  if (!a.mmas.empty()) {
    if (!s.empty()) s += " and ";
    s += std::to_string(a.mmas.size()) + " wgmma result(s) never waited for (wgmma.wait_group)";
  }
  return s;
}

}  // namespace vtv_emu
