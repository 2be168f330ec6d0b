// The kernel variant registry: every hot kernel family (the MAE's bf16 GEMM, the decoder's bf16 3x3
// convolution on fp32 NCHW maps, the bf16 NHWC decoder's convolutions, attention, GroupNorm) has named variants, each saying which shapes it supports; the
// dispatchers (linear_bf16, conv2d_bf16, ...) run, for each call, the variant the tuning table names for
// that (family, shape), or the family's default when the table has no entry or names a variant that
// cannot run it. `vtv tune` times every supporting variant per shape on the device (tune_kernels) and
// stores the winners per device; the engine loads them at open (set_tuning_table). See
// docs/architecture.md, "How to add a kernel variant".
//
// Plain C++ (no CUDA headers): the engine, the addon and the tests include it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace vtv::cuda {

enum class KernelFamily { Gemm, Conv3x3, ConvNhwc, Attention, GroupNorm };
constexpr int kKernelFamilies = 5;
const char* family_name(KernelFamily f);  // "gemm", "conv3x3", "conv_nhwc", "attention", "groupnorm"

// One problem size of a family, as the dispatch and the tuning table see it.
//   gemm       M, N, K; bf16_in (1 when the caller also passes the bf16 copy of x)
//   conv3x3    N, Ci, Co, H, W (stored input), up (1: nearest x2 upsampling folded in)
//   conv_nhwc  the same, and k (3 or 1): conv2d_nhwc's calls, bf16 NHWC maps
//   attention  B, tokens, heads, head_dim
//   groupnorm  N, C, HW, groups
struct KernelShape {
  KernelFamily family = KernelFamily::Gemm;
  int64_t d[7] = {0, 0, 0, 0, 0, 0, 0};
  // The tuning table's key, e.g. "gemm M6400 N3072 K1024" (bf16_in is not part of it: a table entry
  // names the fastest variant, and the dispatch falls back when that one cannot run the call).
  std::string key() const;
  double flops() const;  // 2 x multiply-adds, for TFLOP/s
};
KernelShape gemm_shape(int64_t M, int64_t N, int64_t K, bool bf16_in);
KernelShape conv3x3_shape(int64_t N, int64_t Ci, int64_t Co, int64_t H, int64_t W, bool up);
KernelShape conv_nhwc_shape(int64_t N, int64_t Ci, int64_t Co, int64_t H, int64_t W, bool up, int k);
KernelShape attention_shape(int64_t B, int64_t tokens, int64_t heads, int64_t head_dim);
KernelShape group_norm_shape(int64_t N, int64_t C, int64_t HW, int64_t groups);

struct KernelVariant {
  KernelFamily family;
  const char* name;  // unique within its family; "baseline" is the first kernel each family had
  const char* what;  // one line for `vtv bench --kernels`
  // "" when the variant can run the shape, else why not (also: a library that is not loaded).
  std::string (*unsupported)(const KernelShape& s);
  bool is_default;  // the family's choice when the tuning table says nothing
};

// Every registered variant, families in enum order, each family's default first.
const std::vector<KernelVariant>& kernel_variants();
// The variant of that family and name, or nullptr.
const KernelVariant* find_variant(KernelFamily f, const std::string& name);

// The tuning table: shape key -> variant name, for the device the engine runs on. Replacing it bumps
// tuning_generation(), which cached CUDA graphs include in their keys.
void set_tuning_table(const std::map<std::string, std::string>& winners);
std::map<std::string, std::string> tuning_table();
uint64_t tuning_generation();

// What the dispatch runs for a call of this shape: a variant forced for this thread (ForceVariant), else
// the table's winner when it supports the shape, else the family's default (which supports every shape
// its dispatcher accepts).
const KernelVariant& choose_variant(const KernelShape& s);

// The name of the variant the last call of `family` on this thread ran ("" before any), and how many
// calls on this thread ran variant `name`: the dispatchers record them, so tests can tell a forced
// variant from a fallback.
void note_variant_run(KernelFamily family, const char* name);
std::string last_variant_run(KernelFamily family);
uint64_t variant_runs(KernelFamily family, const std::string& name);

// While alive, calls of `family` on this thread run variant `name` (tuning, tests); throws vtv::Error
// when there is no such variant.
class ForceVariant {
 public:
  ForceVariant(KernelFamily family, const std::string& name);
  ~ForceVariant();
  ForceVariant(const ForceVariant&) = delete;
  ForceVariant& operator=(const ForceVariant&) = delete;

 private:
  KernelFamily family_;
  const KernelVariant* previous_;
};

// What the variants' launches need from the device, set once per device and before any graph capture
// (dynamic shared memory attributes): MaeCuda's and VqganCuda's constructors call it; a variant's first
// launch elsewhere does the same.
constexpr int kMaxVariantDevices = 64;
void prepare_kernel_variants();

// The device the variants run on: its name and compute capability ("sm_90"), which the tuning cache is
// keyed by. Throws vtv::Error when no device is usable.
struct DeviceId {
  std::string name;
  int major = 0, minor = 0;
  bool emulated = false;
};
DeviceId current_device();

// One timing of `vtv tune` / `vtv bench --kernels`.
struct VariantTiming {
  std::string family, shape, variant;
  double ms = 0;         // median over the repetitions
  double tflops = 0;     // shape.flops() / ms
  std::string skipped;   // why the variant was not timed on this shape ("" when it was)
};

// The shapes tune_kernels times: "model" is the MAE-VQGAN search forward at `batch` (the MAE's Linears
// in zero-shot mode, the VQGAN decoder's 3x3 convolutions, attention, GroupNorm); "tiny" is a handful of
// small shapes for the CPU CUDA emulator and the tests.
std::vector<KernelShape> tuning_shapes(const std::string& set, int64_t batch);

// Runs every registered variant on every shape (random inputs) `reps` times after one warm-up, on the
// current device; rows in shape order, variants in registry order.
std::vector<VariantTiming> tune_kernels(const std::vector<KernelShape>& shapes, int reps);

// The winners of a tuning run: the fastest timed variant per shape key.
std::map<std::string, std::string> tuning_winners(const std::vector<VariantTiming>& rows);

// The bf16 tensor-core ceiling measured on this device by a peak micro-kernel (dependent-free
// mma.sync m16n8k16 chains in registers, every SM full), in TFLOP/s.
double measured_tensor_peak_tflops();

}  // namespace vtv::cuda
