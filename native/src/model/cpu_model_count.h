// How many CPU model objects (MaeForward, VqganDecoder, VqganEncoder) exist in this process. Each holds
// one CpuModelCount; an engine on the cuda backend must build none of them (its passes run on the
// device), which a test checks through cpu_models_alive().
#pragma once
#include <cstdint>

namespace vtv::model {

int64_t cpu_models_alive();

class CpuModelCount {
 public:
  CpuModelCount();
  CpuModelCount(const CpuModelCount&);
  CpuModelCount& operator=(const CpuModelCount&) = default;
  ~CpuModelCount();
};

}  // namespace vtv::model
