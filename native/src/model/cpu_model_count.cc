#include "model/cpu_model_count.h"

#include <atomic>

namespace vtv::model {

namespace {
std::atomic<int64_t> alive{0};
}

int64_t cpu_models_alive() { return alive.load(); }
CpuModelCount::CpuModelCount() { ++alive; }
CpuModelCount::CpuModelCount(const CpuModelCount&) { ++alive; }
CpuModelCount::~CpuModelCount() { --alive; }

}  // namespace vtv::model
