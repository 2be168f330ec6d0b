#include "model/activation_budget.h"

#include <algorithm>
#include <atomic>

namespace vtv::model {

namespace {
std::atomic<int64_t> budget{kDefaultActivationBudget};
}

int64_t activation_budget_bytes() { return budget.load(std::memory_order_relaxed); }

void set_activation_budget_bytes(int64_t bytes) {
  budget.store(bytes > 0 ? bytes : kDefaultActivationBudget, std::memory_order_relaxed);
}

int64_t chunk_samples(int64_t bytes_per_sample, int64_t cap) {
  const int64_t n = activation_budget_bytes() / std::max<int64_t>(1, bytes_per_sample);
  return std::max<int64_t>(1, std::min(n, cap));
}

}  // namespace vtv::model
