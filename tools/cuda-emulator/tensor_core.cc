// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 on the CPU CUDA emulator: the 32 lanes of a warp
// deposit their fragments, one lane assembles the whole warp's A (16x16) and B (16x8) and computes
// their product once, and each lane adds its four elements to its accumulators, using the fragment layouts of the PTX ISA ("Matrix Fragments for
// mma.m16n8k16 with floating point type"). The layouts are written here independently of the kernels'
// use of them, so a kernel that packs its fragments wrongly gets wrong products, as on a GPU.
// Products of bf16 values are exact in fp32; the 16 products are summed in k order in fp32 and then
// added to the accumulator, which may differ from the hardware's accumulation in the last bits.
#include <cstdint>
#include <cstring>

#include "emulator.h"

namespace vtv_emu {

namespace {

struct Fragments {
  uint32_t a[4];
  uint32_t b[2];
};

float bf16_lo(uint32_t r) {  // the lower-addressed element of a packed pair
  const uint32_t u = r << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float bf16_hi(uint32_t r) {
  const uint32_t u = r & 0xFFFF0000u;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  void* exchange = warp_exchange(static_cast<int>(sizeof(Fragments)));
  struct Product {
    int ready;
    float p[16][8];
  };
  auto* product = static_cast<Product*>(warp_scratch(exchange));
  const unsigned lane = lane_id();
  // Slots are 64 bytes apart (warp_exchange's stride).
  auto slot = [&](unsigned l) -> Fragments& { return *reinterpret_cast<Fragments*>(static_cast<char*>(exchange) + 64 * l); };
  std::memcpy(slot(lane).a, a, sizeof a);
  std::memcpy(slot(lane).b, b, sizeof b);
  product->ready = 0;
  warp_barrier();

  if (!product->ready) {  // the first lane to resume computes A x B for the whole warp
    // A (16 x 16, row-major), lane (g, t) = (lane / 4, lane % 4):
    //   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9].
    // B (16 x 8, "col"): b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g].
    float A[16][16], B[16][8];
    for (unsigned l = 0; l < 32; ++l) {
      const Fragments& f = slot(l);
      const int g = static_cast<int>(l / 4), t = static_cast<int>(l % 4);
      for (int r = 0; r < 4; ++r) {
        const int row = g + ((r & 1) ? 8 : 0), k = 2 * t + ((r & 2) ? 8 : 0);
        A[row][k] = bf16_lo(f.a[r]);
        A[row][k + 1] = bf16_hi(f.a[r]);
      }
      for (int r = 0; r < 2; ++r) {
        const int k = 2 * t + (r ? 8 : 0);
        B[k][g] = bf16_lo(f.b[r]);
        B[k + 1][g] = bf16_hi(f.b[r]);
      }
    }
    for (int row = 0; row < 16; ++row)
      for (int col = 0; col < 8; ++col) {
        float acc = 0.0f;
        for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
        product->p[row][col] = acc;
      }
    product->ready = 1;
  }
  // C / D (16 x 8): d[0], d[1] = D[g][2t, 2t+1], d[2], d[3] = D[g+8][2t, 2t+1].
  const int g = static_cast<int>(lane / 4), t = static_cast<int>(lane % 4);
  for (int i = 0; i < 4; ++i) d[i] += product->p[g + (i >= 2 ? 8 : 0)][2 * t + (i & 1)];
  // Double-buffered slots: the next collective writes the other buffer, so no second barrier is needed.
}

}  // namespace vtv_emu
