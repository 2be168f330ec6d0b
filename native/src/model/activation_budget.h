// How many bytes of activations one forward() may hold at once on the CPU. The engine sizes its MAE and
// VQGAN chunks from it, so a batch of 320 ViT-L samples runs in pieces instead of allocating all 320
// samples' activations together. Process-wide; tests lower it to force chunking on tiny models.
#pragma once
#include <cstdint>

namespace vtv::model {

constexpr int64_t kDefaultActivationBudget = int64_t(512) << 20;

int64_t activation_budget_bytes();
void set_activation_budget_bytes(int64_t bytes);  // <= 0 restores the default

// Samples per chunk for `bytes_per_sample` under the budget: at least 1, at most `cap`.
int64_t chunk_samples(int64_t bytes_per_sample, int64_t cap);

}  // namespace vtv::model
