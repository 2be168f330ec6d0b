// Device memory and timing for host code that is compiled without nvcc (the engine, the tests): an
// owning buffer with typed upload/download, and an event timer. Nothing here includes CUDA headers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;  // the same declaration as cuda_runtime.h

namespace vtv::cuda {

void* device_alloc(size_t bytes);  // throws vtv::Error naming the size on failure
void device_free(void* p) noexcept;
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void device_fill_bytes(void* p, int byte, size_t bytes);  // cudaMemset
void device_synchronize();                                 // and rethrow any asynchronous kernel error

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) { resize(count); }
  explicit DeviceBuffer(const std::vector<T>& host) {
    resize(host.size());
    upload(host.data(), host.size());
  }
  ~DeviceBuffer() { device_free(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), count_(std::exchange(o.count_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(count_, o.count_);
    return *this;
  }

  // Reallocates (contents lost) when `count` exceeds the capacity; never shrinks.
  void resize(size_t count) {
    if (count <= count_) return;
    device_free(ptr_);
    ptr_ = nullptr;
    count_ = 0;
    ptr_ = static_cast<T*>(device_alloc(count * sizeof(T)));
    count_ = count;
  }
  void upload(const T* host, size_t count) { copy_to_device(ptr_, host, count * sizeof(T)); }
  void download(T* host, size_t count) const { copy_to_host(host, ptr_, count * sizeof(T)); }
  std::vector<T> to_host(size_t count) const {
    std::vector<T> v(count);
    download(v.data(), count);
    return v;
  }
  // Every byte 0xFF: a float NaN, int32 -1. Tests poison outputs with it so unwritten elements show.
  void poison() { device_fill_bytes(ptr_, 0xFF, count_ * sizeof(T)); }
  void zero() { device_fill_bytes(ptr_, 0, count_ * sizeof(T)); }

  T* get() const { return ptr_; }
  size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_ = 0;
};

// Milliseconds of device time between start() and stop() on the default stream.
class GpuTimer {
 public:
  GpuTimer();
  ~GpuTimer();
  GpuTimer(const GpuTimer&) = delete;
  GpuTimer& operator=(const GpuTimer&) = delete;
  void start();
  float stop_ms();  // waits for the stop event

 private:
  void* start_ = nullptr;
  void* stop_ = nullptr;
};

}  // namespace vtv::cuda
