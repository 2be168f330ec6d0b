// The kernel variant registry over N-API (native/src/cuda/variants.h), for `vtv tune`, `vtv bench
// --kernels` and the tuning table the engine loads at open: the registered variants, the device's
// identity, a tuning run (on a libuv worker thread; a Promise), and the table itself. In a build without
// the CUDA backend every function says so (the variants exist only with it).
#include "kernels.h"

#include <map>
#include <string>
#include <vector>

#include "cuda/probe.h"
#include "vtv/error.h"
#ifdef VTV_WITH_CUDA
#include "cuda/variants.h"
#endif

namespace vtv_addon {

namespace {

#ifdef VTV_WITH_CUDA

Napi::Object device_to_js(Napi::Env env, const vtv::cuda::DeviceId& d) {
  auto o = Napi::Object::New(env);
  o.Set("name", d.name);
  o.Set("computeCapability", "sm_" + std::to_string(d.major) + std::to_string(d.minor));
  o.Set("emulated", d.emulated);
  return o;
}

class TuneWorker : public Napi::AsyncWorker {
 public:
  TuneWorker(Napi::Env env, std::string set, int64_t batch, int reps, bool peak)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), set_(std::move(set)), batch_(batch),
        reps_(reps), peak_(peak) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      device_ = vtv::cuda::current_device();
      rows_ = vtv::cuda::tune_kernels(vtv::cuda::tuning_shapes(set_, batch_), reps_);
      winners_ = vtv::cuda::tuning_winners(rows_);
      if (peak_) peak_tflops_ = vtv::cuda::measured_tensor_peak_tflops();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto env = Env();
    auto out = Napi::Object::New(env);
    out.Set("device", device_to_js(env, device_));
    out.Set("shapes", set_);
    out.Set("batch", static_cast<double>(batch_));
    out.Set("peakTflops", peak_ ? Napi::Value(Napi::Number::New(env, peak_tflops_)) : env.Null());
    auto rows = Napi::Array::New(env, rows_.size());
    for (size_t i = 0; i < rows_.size(); ++i) {
      const auto& r = rows_[i];
      auto o = Napi::Object::New(env);
      o.Set("family", r.family);
      o.Set("shape", r.shape);
      o.Set("variant", r.variant);
      o.Set("ms", r.ms);
      o.Set("tflops", r.tflops);
      o.Set("skipped", r.skipped);
      rows.Set(i, o);
    }
    out.Set("rows", rows);
    auto winners = Napi::Object::New(env);
    for (const auto& [shape, variant] : winners_) winners.Set(shape, variant);
    out.Set("winners", winners);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string set_;
  int64_t batch_;
  int reps_;
  bool peak_;
  vtv::cuda::DeviceId device_;
  std::vector<vtv::cuda::VariantTiming> rows_;
  std::map<std::string, std::string> winners_;
  double peak_tflops_ = 0;
};

#endif

[[noreturn]] void not_compiled() {
  throw vtv::Error("kernel variants: the CUDA backend is " + vtv::cuda::probe().detail);
}

Napi::Value KernelVariants(const Napi::CallbackInfo& info) {
  auto env = info.Env();
#ifdef VTV_WITH_CUDA
  const auto& list = vtv::cuda::kernel_variants();
  auto arr = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("family", vtv::cuda::family_name(list[i].family));
    o.Set("name", list[i].name);
    o.Set("what", list[i].what);
    o.Set("isDefault", list[i].is_default);
    arr.Set(i, o);
  }
  return arr;
#else
  return Napi::Array::New(env, 0);
#endif
}

Napi::Value KernelDevice(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  try {
#ifdef VTV_WITH_CUDA
    return device_to_js(env, vtv::cuda::current_device());
#else
    not_compiled();
#endif
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value TuneKernels(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) throw vtv::Error("tuneKernels: expected an options object");
    auto o = info[0].As<Napi::Object>();
    const std::string set = o.Get("shapes").IsString() ? o.Get("shapes").As<Napi::String>().Utf8Value() : "model";
    const int64_t batch = o.Get("batch").IsNumber() ? o.Get("batch").As<Napi::Number>().Int64Value() : 320;
    const int reps = o.Get("reps").IsNumber() ? o.Get("reps").As<Napi::Number>().Int32Value() : 20;
    const bool peak = o.Get("peak").IsBoolean() ? o.Get("peak").As<Napi::Boolean>().Value() : true;
    if (batch <= 0) throw vtv::Error("tuneKernels: batch must be positive, got " + std::to_string(batch));
    if (reps <= 0) throw vtv::Error("tuneKernels: reps must be positive, got " + std::to_string(reps));
#ifdef VTV_WITH_CUDA
    auto* w = new TuneWorker(env, set, batch, reps, peak);
    auto p = w->promise();
    w->Queue();
    return p;
#else
    not_compiled();
#endif
  } catch (const std::exception& e) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(Napi::Error::New(env, e.what()).Value());
    return deferred.Promise();
  }
}

Napi::Value SetKernelTuning(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) {
      throw vtv::Error("setKernelTuning: expected an object of shape key -> variant name");
    }
    auto o = info[0].As<Napi::Object>();
    std::map<std::string, std::string> table;
    auto keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string k = keys.Get(i).As<Napi::String>().Utf8Value();
      auto v = o.Get(k);
      if (!v.IsString()) throw vtv::Error("setKernelTuning: the variant of '" + k + "' is not a string");
      table[k] = v.As<Napi::String>().Utf8Value();
    }
#ifdef VTV_WITH_CUDA
    vtv::cuda::set_tuning_table(table);
#else
    if (!table.empty()) not_compiled();
#endif
    return env.Undefined();
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value KernelTuning(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto out = Napi::Object::New(env);
#ifdef VTV_WITH_CUDA
  for (const auto& [k, v] : vtv::cuda::tuning_table()) out.Set(k, v);
#endif
  return out;
}

}  // namespace

void register_kernel_functions(Napi::Env env, Napi::Object exports) {
  exports.Set("kernelVariants", Napi::Function::New(env, KernelVariants));
  exports.Set("kernelDevice", Napi::Function::New(env, KernelDevice));
  exports.Set("tuneKernels", Napi::Function::New(env, TuneKernels));
  exports.Set("setKernelTuning", Napi::Function::New(env, SetKernelTuning));
  exports.Set("kernelTuning", Napi::Function::New(env, KernelTuning));
}

}  // namespace vtv_addon
