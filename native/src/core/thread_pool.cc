#include "core/thread_pool.h"

#include <algorithm>
#include <string>
#include <system_error>

#include "vtv/error.h"

namespace vtv {

namespace {
thread_local bool in_parallel_region = false;
}

ThreadPool::ThreadPool(int threads) {
  int n = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  n = std::max(1, n);
  // A thread that cannot be created (a limit on threads or memory) stops the ones already started and
  // reports the failure, instead of leaving joinable threads behind for std::terminate or a hang.
  try {
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (const std::system_error& e) {
    const size_t started = workers_.size() + 1;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    start_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    throw Error("engine: could start only " + std::to_string(started) + " of " + std::to_string(n) +
                " threads (" + e.what() + "): ask for fewer with --threads");
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int) {
  uint64_t seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lock(mutex_);
    start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    // Claim chunks until none are left.
    for (;;) {
      if (next_chunk_ >= job_chunks_) break;
      int64_t c = next_chunk_++;
      const auto* fn = job_;
      int64_t b = c * job_chunk_, e = std::min(job_n_, b + job_chunk_);
      lock.unlock();
      in_parallel_region = true;
      try {
        (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> g(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      in_parallel_region = false;
      lock.lock();
    }
    if (--pending_ == 0) done_cv_.notify_all();
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t max_chunks = std::min<int64_t>(size(), (n + grain - 1) / grain);
  if (max_chunks <= 1 || in_parallel_region || workers_.empty()) {
    fn(0, n);
    return;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = (n + max_chunks - 1) / max_chunks;
  job_chunks_ = (n + job_chunk_ - 1) / job_chunk_;
  next_chunk_ = 0;
  pending_ = static_cast<int>(workers_.size());
  error_ = nullptr;
  ++generation_;
  start_cv_.notify_all();
  // The caller takes chunks too.
  for (;;) {
    if (next_chunk_ >= job_chunks_) break;
    int64_t c = next_chunk_++;
    int64_t b = c * job_chunk_, e = std::min(n, b + job_chunk_);
    lock.unlock();
    in_parallel_region = true;
    try {
      fn(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> g(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    in_parallel_region = false;
    lock.lock();
  }
  done_cv_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace vtv
