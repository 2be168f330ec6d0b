// The N-API addon: a thin, asynchronous wrapper over vtv::Engine. Every heavy call (opening weights,
// building the engine, binding task means, a forward) runs on a libuv worker thread and returns a
// Promise; typed arrays are passed to the engine as raw pointers (no copies) and kept alive by
// references until the worker finishes. All input checking that needs only sizes happens here on the JS
// thread, so a bad call is a rejected Promise with a message, never a crash. Backend, precision, mode
// and loss names are strings only here; the engine takes enums.
#include <napi.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cpu/gemm.h"
#include "kernels.h"
#include "model/weights_view.h"
#include "vtv/config.h"
#include "vtv/engine.h"
#include "vtv/error.h"
#include "vtv/weights.h"

namespace {

constexpr int64_t kCanvasFloats = 3LL * vtv::kImage * vtv::kImage;
constexpr int64_t kTargetBytes = 3LL * vtv::kCell * vtv::kCell;

// ---- config <-> JS ----------------------------------------------------------------------------------

Napi::Object config_to_js(Napi::Env env, const vtv::ModelConfig& c) {
  auto o = Napi::Object::New(env);
  o.Set("name", c.name);
  o.Set("encDim", c.enc_dim);
  o.Set("encDepth", c.enc_depth);
  o.Set("encHeads", c.enc_heads);
  o.Set("decDim", c.dec_dim);
  o.Set("decDepth", c.dec_depth);
  o.Set("decHeads", c.dec_heads);
  o.Set("mlpRatio", c.mlp_ratio);
  o.Set("lnEps", c.ln_eps);
  auto vq = Napi::Object::New(env);
  vq.Set("embedDim", c.vq.embed_dim);
  vq.Set("nEmbed", c.vq.n_embed);
  vq.Set("zChannels", c.vq.z_channels);
  vq.Set("ch", c.vq.ch);
  auto mult = Napi::Array::New(env, c.vq.ch_mult.size());
  for (size_t i = 0; i < c.vq.ch_mult.size(); ++i) mult.Set(i, c.vq.ch_mult[i]);
  vq.Set("chMult", mult);
  vq.Set("numResBlocks", c.vq.num_res_blocks);
  vq.Set("groups", c.vq.groups);
  vq.Set("eps", c.vq.eps);
  o.Set("vq", vq);
  return o;
}

int get_int(const Napi::Object& o, const char* key, const std::string& where) {
  auto v = o.Get(key);
  if (!v.IsNumber()) throw vtv::Error(where + "." + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

float get_float(const Napi::Object& o, const char* key, const std::string& where) {
  auto v = o.Get(key);
  if (!v.IsNumber()) throw vtv::Error(where + "." + key + " must be a number");
  return v.As<Napi::Number>().FloatValue();
}

vtv::ModelConfig config_from_js(const Napi::Value& value) {
  if (!value.IsObject()) throw vtv::Error("config must be an object (see src/config.ts)");
  auto o = value.As<Napi::Object>();
  vtv::ModelConfig c;
  auto name = o.Get("name");
  c.name = name.IsString() ? name.As<Napi::String>().Utf8Value() : "custom";
  c.enc_dim = get_int(o, "encDim", "config");
  c.enc_depth = get_int(o, "encDepth", "config");
  c.enc_heads = get_int(o, "encHeads", "config");
  c.dec_dim = get_int(o, "decDim", "config");
  c.dec_depth = get_int(o, "decDepth", "config");
  c.dec_heads = get_int(o, "decHeads", "config");
  c.mlp_ratio = get_int(o, "mlpRatio", "config");
  c.ln_eps = get_float(o, "lnEps", "config");
  auto vqv = o.Get("vq");
  if (!vqv.IsObject()) throw vtv::Error("config.vq must be an object");
  auto vq = vqv.As<Napi::Object>();
  c.vq.embed_dim = get_int(vq, "embedDim", "config.vq");
  c.vq.n_embed = get_int(vq, "nEmbed", "config.vq");
  c.vq.z_channels = get_int(vq, "zChannels", "config.vq");
  c.vq.ch = get_int(vq, "ch", "config.vq");
  auto mult = vq.Get("chMult");
  if (!mult.IsArray()) throw vtv::Error("config.vq.chMult must be an array");
  auto arr = mult.As<Napi::Array>();
  c.vq.ch_mult.clear();
  for (uint32_t i = 0; i < arr.Length(); ++i) c.vq.ch_mult.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
  c.vq.num_res_blocks = get_int(vq, "numResBlocks", "config.vq");
  c.vq.groups = get_int(vq, "groups", "config.vq");
  c.vq.eps = get_float(vq, "eps", "config.vq");
  c.validate();
  return c;
}

// ---- typed-array helpers ----------------------------------------------------------------------------

template <typename T>
struct ArrayTraits;
template <>
struct ArrayTraits<float> {
  static constexpr napi_typedarray_type type = napi_float32_array;
  static constexpr const char* name = "Float32Array";
};
template <>
struct ArrayTraits<int32_t> {
  static constexpr napi_typedarray_type type = napi_int32_array;
  static constexpr const char* name = "Int32Array";
};
template <>
struct ArrayTraits<uint8_t> {
  static constexpr napi_typedarray_type type = napi_uint8_array;
  static constexpr const char* name = "Uint8Array";
};

// Returns the data pointer of request[key] (nullptr when absent), checking its type and element count.
template <typename T>
T* typed(const Napi::Object& req, const char* key, int64_t expected, bool required = false) {
  auto v = req.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw vtv::Error(std::string("forward: request.") + key + " is required");
    return nullptr;
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != ArrayTraits<T>::type) {
    throw vtv::Error(std::string("forward: request.") + key + " must be a " + ArrayTraits<T>::name);
  }
  auto a = v.As<Napi::TypedArrayOf<T>>();
  if (expected >= 0 && static_cast<int64_t>(a.ElementLength()) != expected) {
    throw vtv::Error(std::string("forward: request.") + key + " has " + std::to_string(a.ElementLength()) +
                     " elements, expected " + std::to_string(expected));
  }
  return a.Data();
}

// Builds a worker (its constructor checks the arguments and may throw) and queues it. A throw becomes a
// rejected Promise, so a bad call never throws synchronously into JS and never reaches the engine.
template <typename MakeWorker>
Napi::Value queue_or_reject(Napi::Env env, MakeWorker make_worker) {
  try {
    auto* worker = make_worker();
    auto promise = worker->promise();
    worker->Queue();
    return promise;
  } catch (const std::exception& e) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(Napi::Error::New(env, e.what()).Value());
    return deferred.Promise();
  }
}

// The names the addon accepts for each engine enum, in one table each: parsing, error messages and
// addon.names (which test/shared-tables.test.ts checks against src/config.ts) all read these.
template <typename E>
struct Named {
  const char* name;
  E value;
};
constexpr Named<vtv::BackendKind> kBackends[] = {
    {"auto", vtv::BackendKind::Auto}, {"cpu", vtv::BackendKind::Cpu}, {"cuda", vtv::BackendKind::Cuda}};
constexpr Named<vtv::Precision> kPrecisions[] = {{"fp32", vtv::Precision::F32}, {"bf16", vtv::Precision::BF16}};
constexpr Named<vtv::Mode> kModes[] = {{"one-shot", vtv::Mode::OneShot}, {"zero-shot", vtv::Mode::ZeroShot}};
constexpr Named<vtv::Loss> kLosses[] = {{"none", vtv::Loss::None},
                                        {"iou", vtv::Loss::IoU},
                                        {"mse", vtv::Loss::MSE},
                                        {"token-ce", vtv::Loss::TokenCE},
                                        {"token-accuracy", vtv::Loss::TokenAccuracy}};

template <typename E, size_t N>
std::string name_list(const Named<E> (&table)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) out += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + "'" + table[i].name + "'";
  return out;
}

// table's value named `name`; else an error "<what> must be 'a', 'b' or 'c', got 'x'".
template <typename E, size_t N>
E parse_name(const Named<E> (&table)[N], const std::string& name, const std::string& what) {
  for (const auto& entry : table) {
    if (name == entry.name) return entry.value;
  }
  throw vtv::Error(what + " must be " + name_list(table) + ", got '" + name + "'");
}

template <typename E, size_t N>
Napi::Array names_to_js(Napi::Env env, const Named<E> (&table)[N]) {
  auto arr = Napi::Array::New(env, N);
  for (size_t i = 0; i < N; ++i) arr.Set(static_cast<uint32_t>(i), table[i].name);
  return arr;
}

// ---- the engine object ---------------------------------------------------------------------------

struct EngineHandle {
  std::shared_ptr<vtv::Engine> engine;
  std::mutex mutex;  // one forward at a time per engine (it owns one thread pool and scratch arena)
  bool closing = false;  // set on the JS thread by close(): later calls are refused there
};

// close(): waits on a worker thread for the call in flight (it holds the mutex), then frees the engine,
// so the event loop never blocks on a forward.
class CloseWorker : public Napi::AsyncWorker {
 public:
  CloseWorker(Napi::Env env, std::shared_ptr<EngineHandle> handle)
      : Napi::AsyncWorker(env), handle_(std::move(handle)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    std::shared_ptr<vtv::Engine> engine;
    {
      std::lock_guard<std::mutex> lock(handle_->mutex);
      engine.swap(handle_->engine);
    }
    engine.reset();  // the last reference: frees the weights' mappings, scratch and device memory here
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::shared_ptr<EngineHandle> handle_;
  Napi::Promise::Deferred deferred_;
};

// Task means bound by engine.bindTaskMeans: the engine's handle (checked once, kept where its backend
// reads them). Freed when the JS object is collected; its bytes are reported to the GC meanwhile.
class TaskMeansWrap : public Napi::ObjectWrap<TaskMeansWrap> {
 public:
  static Napi::FunctionReference* constructor;
  static Napi::Function Init(Napi::Env env) { return DefineClass(env, "TaskMeans", {}); }
  explicit TaskMeansWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TaskMeansWrap>(info) {}
  ~TaskMeansWrap() override {
    if (bytes_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -bytes_);
  }
  void adopt(std::shared_ptr<const vtv::BoundTaskMeans> means, int64_t bytes) {
    means_ = std::move(means);
    bytes_ = bytes;
    Napi::MemoryManagement::AdjustExternalMemory(Env(), bytes);
  }
  const std::shared_ptr<const vtv::BoundTaskMeans>& means() const { return means_; }

 private:
  std::shared_ptr<const vtv::BoundTaskMeans> means_;
  int64_t bytes_ = 0;
};
Napi::FunctionReference* TaskMeansWrap::constructor = nullptr;

// bindTaskMeans(enc, dec): checks and copies the tables on a worker, resolves to a TaskMeans object.
class BindTaskMeansWorker : public Napi::AsyncWorker {
 public:
  BindTaskMeansWorker(Napi::Env env, std::shared_ptr<EngineHandle> handle, const Napi::Value& enc, const Napi::Value& dec)
      : Napi::AsyncWorker(env), handle_(std::move(handle)), deferred_(Napi::Promise::Deferred::New(env)) {
    const auto& c = handle_->engine->config();
    enc_ = table(enc, "enc", vtv::means_enc_floats(c));
    dec_ = table(dec, "dec", vtv::means_dec_floats(c));
    bytes_ = (vtv::means_enc_floats(c) + vtv::means_dec_floats(c)) * int64_t(sizeof(float));
    enc_ref_ = Napi::Persistent(enc.As<Napi::Object>());  // alive until OnOK/OnError
    dec_ref_ = Napi::Persistent(dec.As<Napi::Object>());
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(handle_->mutex);
      if (!handle_->engine) throw vtv::Error("bindTaskMeans: the engine was closed");
      means_ = handle_->engine->bind_task_means(enc_, dec_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto obj = TaskMeansWrap::constructor->New({});
    TaskMeansWrap::Unwrap(obj)->adopt(std::move(means_), bytes_);
    deferred_.Resolve(obj);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  static const float* table(const Napi::Value& v, const char* name, int64_t expected) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw vtv::Error(std::string("bindTaskMeans: ") + name + " must be a Float32Array");
    }
    auto a = v.As<Napi::Float32Array>();
    if (static_cast<int64_t>(a.ElementLength()) != expected) {
      throw vtv::Error(std::string("bindTaskMeans: ") + name + " has " + std::to_string(a.ElementLength()) +
                       " elements, expected " + std::to_string(expected));
    }
    return a.Data();
  }

  std::shared_ptr<EngineHandle> handle_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference enc_ref_, dec_ref_;
  const float* enc_ = nullptr;
  const float* dec_ = nullptr;
  int64_t bytes_ = 0;
  std::shared_ptr<const vtv::BoundTaskMeans> means_;
};

class ForwardWorker : public Napi::AsyncWorker {
 public:
  ForwardWorker(Napi::Env env, std::shared_ptr<EngineHandle> handle, Napi::Object request)
      : Napi::AsyncWorker(env), handle_(std::move(handle)), deferred_(Napi::Promise::Deferred::New(env)) {
    request_ref_ = Napi::Persistent(request);  // keeps every typed array alive until OnOK/OnError
    parse(request);
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(handle_->mutex);
      if (!handle_->engine) throw vtv::Error("forward: the engine was closed");
      auto t0 = std::chrono::steady_clock::now();
      handle_->engine->forward(req_, res_);
      seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto env = Env();
    auto stats = Napi::Object::New(env);
    stats.Set("uniqueForwards", res_.unique_forwards);
    stats.Set("uniqueDecodes", res_.unique_decodes);
    stats.Set("batch", req_.batch);
    stats.Set("seconds", seconds_);
    deferred_.Resolve(stats);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  void parse(const Napi::Object& r) {
    const auto& c = handle_->engine->config();
    auto mode = r.Get("mode");
    req_.mode = parse_name(kModes, mode.IsString() ? mode.As<Napi::String>().Utf8Value() : "", "forward: request.mode");
    auto nc = r.Get("numCanvases");
    req_.num_canvases = nc.IsNumber() ? nc.As<Napi::Number>().Int32Value() : 0;
    if (req_.num_canvases <= 0) throw vtv::Error("forward: no canvases (batch of 0)");
    req_.canvases = typed<float>(r, "canvases", req_.num_canvases * kCanvasFloats, true);
    auto idx = r.Get("canvasIndex");
    if (idx.IsTypedArray()) {
      req_.canvas_index = typed<int32_t>(r, "canvasIndex", -1);
      req_.batch = static_cast<int>(idx.As<Napi::TypedArray>().ElementLength());
    } else {
      req_.batch = req_.num_canvases;
    }
    if (req_.batch <= 0) throw vtv::Error("forward: batch of 0 (canvasIndex is empty)");
    const int64_t B = req_.batch;
    const int ne = vtv::enc_tokens(req_.mode), nd = vtv::dec_tokens(req_.mode);
    const int np = req_.mode == vtv::Mode::OneShot ? vtv::kPatches : vtv::kPatches / 2;
    req_.patch_mask = typed<uint8_t>(r, "patchMask", B * vtv::patch_bytes(c, req_.mode));
    req_.means_enc = typed<float>(r, "meansEnc", vtv::means_enc_floats(c));
    req_.means_dec = typed<float>(r, "meansDec", vtv::means_dec_floats(c));
    auto bound = r.Get("taskMeans");
    if (!bound.IsUndefined() && !bound.IsNull()) {
      if (!bound.IsObject() || !bound.As<Napi::Object>().InstanceOf(TaskMeansWrap::constructor->Value())) {
        throw vtv::Error("forward: request.taskMeans must come from bindTaskMeans");
      }
      task_means_ = TaskMeansWrap::Unwrap(bound.As<Napi::Object>())->means();  // alive until the worker is done
      req_.task_means = task_means_.get();
    }
    if (req_.patch_mask && !req_.task_means && !(req_.means_enc && req_.means_dec)) {
      throw vtv::Error("forward: patchMask needs taskMeans (from bindTaskMeans), or both meansEnc and meansDec");
    }
    req_.capture_enc = typed<float>(r, "captureEnc", int64_t(c.enc_depth) * ne * c.enc_dim);
    req_.capture_dec = typed<float>(r, "captureDec", int64_t(c.dec_depth) * nd * c.dec_dim);
    auto loss = r.Get("loss");
    req_.loss = parse_name(kLosses, loss.IsString() ? loss.As<Napi::String>().Utf8Value() : "none", "forward: request.loss");
    req_.targets = typed<uint8_t>(r, "targets", req_.num_canvases * kTargetBytes);
    req_.target_tokens = typed<int32_t>(r, "targetTokens", int64_t(req_.num_canvases) * vtv::kQuadrantTokens);
    auto dedupe = r.Get("dedupe");
    req_.dedupe = dedupe.IsBoolean() ? dedupe.As<Napi::Boolean>().Value() : true;
    res_.encoder_out = typed<float>(r, "encoderOut", B * ne * c.enc_dim);
    res_.decoder_out = typed<float>(r, "decoderOut", B * nd * c.dec_dim);
    res_.logits = typed<float>(r, "logits", B * np * c.vocab());
    res_.tokens = typed<int32_t>(r, "tokens", B * vtv::kPatches);
    res_.pixels = typed<float>(r, "pixels", B * kCanvasFloats);
    res_.images = typed<uint8_t>(r, "images", B * kCanvasFloats);
    res_.losses = typed<float>(r, "losses", B);
    res_.metrics = typed<float>(r, "metrics", B);
  }

  std::shared_ptr<EngineHandle> handle_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference request_ref_;
  std::shared_ptr<const vtv::BoundTaskMeans> task_means_;
  vtv::ForwardRequest req_;
  vtv::ForwardResult res_;
  double seconds_ = 0;
};

// encodeTokens(canvases): the VQGAN encoder's tokens [n][196] of n canvases, in an Int32Array allocated
// here on the JS thread and filled by the worker.
class EncodeTokensWorker : public Napi::AsyncWorker {
 public:
  EncodeTokensWorker(Napi::Env env, std::shared_ptr<EngineHandle> handle, const Napi::Value& canvases)
      : Napi::AsyncWorker(env), handle_(std::move(handle)), deferred_(Napi::Promise::Deferred::New(env)) {
    if (!canvases.IsTypedArray() || canvases.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw vtv::Error("encodeTokens: canvases must be a Float32Array");
    }
    auto a = canvases.As<Napi::Float32Array>();
    const int64_t floats = static_cast<int64_t>(a.ElementLength());
    if (floats == 0 || floats % kCanvasFloats != 0) {
      throw vtv::Error("encodeTokens: canvases has " + std::to_string(floats) +
                       " floats, not a positive multiple of 3x224x224 = " + std::to_string(kCanvasFloats));
    }
    n_ = static_cast<int>(floats / kCanvasFloats);
    canvases_ = a.Data();
    auto tokens = Napi::Int32Array::New(env, static_cast<size_t>(n_) * vtv::kPatches);
    tokens_ = tokens.Data();
    canvases_ref_ = Napi::Persistent(a.As<Napi::Object>());  // alive until OnOK/OnError
    tokens_ref_ = Napi::Persistent(tokens.As<Napi::Object>());
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(handle_->mutex);
      if (!handle_->engine) throw vtv::Error("encodeTokens: the engine was closed");
      handle_->engine->encode_tokens(canvases_, n_, tokens_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(tokens_ref_.Value()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::shared_ptr<EngineHandle> handle_;
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference canvases_ref_, tokens_ref_;
  const float* canvases_ = nullptr;
  int32_t* tokens_ = nullptr;
  int n_ = 0;
};

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::FunctionReference* constructor;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {InstanceMethod("forward", &EngineWrap::Forward),
                        InstanceMethod("bindTaskMeans", &EngineWrap::BindTaskMeans),
                        InstanceMethod("encodeTokens", &EngineWrap::EncodeTokens), InstanceMethod("config", &EngineWrap::Config),
                        InstanceMethod("backend", &EngineWrap::Backend), InstanceMethod("close", &EngineWrap::Close)});
  }
  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    handle_ = std::make_shared<EngineHandle>();
  }
  ~EngineWrap() override {
    if (external_bytes_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -external_bytes_);
  }
  void adopt(std::shared_ptr<vtv::Engine> engine, int64_t bytes) {
    handle_->engine = std::move(engine);
    external_bytes_ = bytes;
    Napi::MemoryManagement::AdjustExternalMemory(Env(), bytes);
  }

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    return queue_or_reject(info.Env(), [&] {
      if (!handle_->engine || handle_->closing) throw vtv::Error("forward: the engine was closed");
      if (info.Length() < 1 || !info[0].IsObject()) throw vtv::Error("forward: expected a request object");
      return new ForwardWorker(info.Env(), handle_, info[0].As<Napi::Object>());
    });
  }
  Napi::Value BindTaskMeans(const Napi::CallbackInfo& info) {
    return queue_or_reject(info.Env(), [&] {
      if (!handle_->engine || handle_->closing) throw vtv::Error("bindTaskMeans: the engine was closed");
      if (info.Length() < 2) throw vtv::Error("bindTaskMeans: expected the enc and dec Float32Arrays");
      return new BindTaskMeansWorker(info.Env(), handle_, info[0], info[1]);
    });
  }
  Napi::Value EncodeTokens(const Napi::CallbackInfo& info) {
    return queue_or_reject(info.Env(), [&] {
      if (!handle_->engine || handle_->closing) throw vtv::Error("encodeTokens: the engine was closed");
      if (info.Length() < 1) throw vtv::Error("encodeTokens: expected a Float32Array of canvases");
      return new EncodeTokensWorker(info.Env(), handle_, info[0]);
    });
  }
  Napi::Value Config(const Napi::CallbackInfo& info) {
    if (!handle_->engine || handle_->closing) throw Napi::Error::New(info.Env(), "the engine was closed");
    return config_to_js(info.Env(), handle_->engine->config());
  }
  Napi::Value Backend(const Napi::CallbackInfo& info) {
    auto env = info.Env();
    if (!handle_->engine || handle_->closing) throw Napi::Error::New(env, "the engine was closed");
    auto o = Napi::Object::New(env);
    o.Set("name", vtv::backend_name(handle_->engine->backend()));
    o.Set("precision", vtv::precision_name(handle_->engine->precision()));
    o.Set("reason", handle_->engine->backend_reason());
    o.Set("threads", handle_->engine->threads());
    return o;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    // Calls made from now on are refused here; those already queued finish first (or find the engine
    // gone); the worker frees it once the call in flight returns. A second close() resolves as well.
    handle_->closing = true;
    return queue_or_reject(info.Env(), [&] { return new CloseWorker(info.Env(), handle_); });
  }

  std::shared_ptr<EngineHandle> handle_;
  int64_t external_bytes_ = 0;
};
Napi::FunctionReference* EngineWrap::constructor = nullptr;

class CreateEngineWorker : public Napi::AsyncWorker {
 public:
  CreateEngineWorker(Napi::Env env, vtv::ModelConfig config, std::vector<std::string> paths, vtv::EngineOptions options)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        config_(std::move(config)),
        paths_(std::move(paths)),
        options_(std::move(options)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      auto weights = vtv::Weights::open(paths_);
      bytes_ = static_cast<int64_t>(weights->total_bytes());
      engine_ = std::make_shared<vtv::Engine>(config_, weights, options_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto obj = EngineWrap::constructor->New({});
    EngineWrap::Unwrap(obj)->adopt(engine_, bytes_);
    deferred_.Resolve(obj);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  vtv::ModelConfig config_;
  std::vector<std::string> paths_;
  vtv::EngineOptions options_;
  std::shared_ptr<vtv::Engine> engine_;
  int64_t bytes_ = 0;
};

std::vector<std::string> string_list(const Napi::Value& v, const char* what) {
  std::vector<std::string> out;
  if (v.IsString()) {
    out.push_back(v.As<Napi::String>().Utf8Value());
  } else if (v.IsArray()) {
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      if (!a.Get(i).IsString()) throw vtv::Error(std::string(what) + " must be a list of file paths");
      out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    }
  }
  if (out.empty()) throw vtv::Error(std::string(what) + ": no weights file given");
  return out;
}

Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  return queue_or_reject(info.Env(), [&] {
    if (info.Length() < 1 || !info[0].IsObject()) throw vtv::Error("createEngine: expected an options object");
    auto o = info[0].As<Napi::Object>();
    auto config = config_from_js(o.Get("config"));
    auto paths = string_list(o.Get("weights"), "createEngine: options.weights");
    vtv::EngineOptions opts;
    if (o.Get("backend").IsString()) opts.backend = parse_name(kBackends, o.Get("backend").As<Napi::String>().Utf8Value(), "engine: backend");
    if (o.Get("precision").IsString()) opts.precision = parse_name(kPrecisions, o.Get("precision").As<Napi::String>().Utf8Value(), "engine: precision");
    if (o.Get("threads").IsNumber()) opts.threads = o.Get("threads").As<Napi::Number>().Int32Value();
    if (o.Get("needVqgan").IsBoolean()) opts.need_vqgan = o.Get("needVqgan").As<Napi::Boolean>().Value();
    if (o.Get("needVqganEncoder").IsBoolean()) {
      opts.need_vqgan_encoder = o.Get("needVqganEncoder").As<Napi::Boolean>().Value();
    }
    return new CreateEngineWorker(info.Env(), std::move(config), std::move(paths), std::move(opts));
  });
}

Napi::Value Backends(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto list = vtv::backends();
  auto arr = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("name", vtv::backend_name(list[i].kind));
    o.Set("compiled", list[i].compiled);
    o.Set("usable", list[i].usable);
    o.Set("detail", list[i].detail);
    arr.Set(i, o);
  }
  return arr;
}

Napi::Value Preset(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsString()) throw vtv::Error("preset: expected a preset name");
    return config_to_js(env, vtv::preset(info[0].As<Napi::String>().Utf8Value()));
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Value PresetNames(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  auto names = vtv::preset_names();
  auto arr = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) arr.Set(i, names[i]);
  return arr;
}

Napi::Value InspectWeights(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  try {
    if (info.Length() < 1) throw vtv::Error("inspectWeights: expected file paths");
    auto weights = vtv::Weights::open(string_list(info[0], "inspectWeights"));
    auto out = Napi::Object::New(env);
    auto keys = weights->keys();
    auto tensors = Napi::Array::New(env, keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      const auto& t = weights->info(keys[i]);
      auto o = Napi::Object::New(env);
      o.Set("key", t.key);
      o.Set("dtype", vtv::dtype_name(t.dtype));
      auto shape = Napi::Array::New(env, t.shape.size());
      for (size_t d = 0; d < t.shape.size(); ++d) shape.Set(d, static_cast<double>(t.shape[d]));
      o.Set("shape", shape);
      tensors.Set(i, o);
    }
    out.Set("tensors", tensors);
    auto meta = Napi::Object::New(env);
    for (const char* name : {"vtv_config", "vtv_format", "source"}) {
      auto v = weights->metadata(name);
      if (!v.empty()) meta.Set(name, v);
    }
    out.Set("metadata", meta);
    return out;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

// boundTensors(config, paths): binds the MAE, the VQGAN decoder and the VQGAN encoder from the files as
// the engine does (a missing or misshapen tensor throws the engine's error) and lists the tensors read.
Napi::Value BoundTensors(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  try {
    if (info.Length() < 2) throw vtv::Error("boundTensors: expected a config and weights file paths");
    auto config = config_from_js(info[0]);
    auto weights = vtv::Weights::open(string_list(info[1], "boundTensors"));
    vtv::model::bind_mae(*weights, config);
    vtv::model::bind_vqgan_decoder(*weights, config);
    vtv::model::bind_vqgan_encoder(*weights, config);
    auto keys = weights->bound_keys();
    auto arr = Napi::Array::New(env, keys.size());
    for (size_t i = 0; i < keys.size(); ++i) arr.Set(static_cast<uint32_t>(i), keys[i]);
    return arr;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  EngineWrap::constructor = new Napi::FunctionReference(Napi::Persistent(EngineWrap::Init(env)));
  TaskMeansWrap::constructor = new Napi::FunctionReference(Napi::Persistent(TaskMeansWrap::Init(env)));
  exports.Set("version", Napi::String::New(env, "0.1.0"));
  exports.Set("gemmImplementation", Napi::String::New(env, vtv::cpu::gemm_implementation()));
  exports.Set("backends", Napi::Function::New(env, Backends));
  exports.Set("preset", Napi::Function::New(env, Preset));
  exports.Set("presetNames", Napi::Function::New(env, PresetNames));
  auto names = Napi::Object::New(env);
  names.Set("backends", names_to_js(env, kBackends));
  names.Set("precisions", names_to_js(env, kPrecisions));
  names.Set("modes", names_to_js(env, kModes));
  names.Set("losses", names_to_js(env, kLosses));
  exports.Set("names", names);
  auto canvas = Napi::Object::New(env);
  canvas.Set("image", vtv::kImage);
  canvas.Set("patch", vtv::kPatch);
  canvas.Set("grid", vtv::kGrid);
  canvas.Set("half", vtv::kHalf);
  canvas.Set("cell", vtv::kCell);
  canvas.Set("cellStart", vtv::kCellStart);
  canvas.Set("oneShotEncTokens", vtv::kOneShotEncTokens);
  canvas.Set("oneShotDecTokens", vtv::kOneShotDecTokens);
  canvas.Set("zeroShotEncTokens", vtv::kZeroShotEncTokens);
  canvas.Set("zeroShotDecTokens", vtv::kZeroShotDecTokens);
  canvas.Set("zeroShotShift", vtv::kZeroShotShift);
  exports.Set("canvas", canvas);
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine));
  exports.Set("inspectWeights", Napi::Function::New(env, InspectWeights));
  vtv_addon::register_kernel_functions(env, exports);
  exports.Set("boundTensors", Napi::Function::New(env, BoundTensors));
  return exports;
}

}  // namespace

NODE_API_MODULE(vtv, Init)
