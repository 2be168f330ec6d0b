// The CPU CUDA emulator's scheduler: a block's CUDA threads are fibers run cooperatively on one OS
// thread. Each runs until it reaches a barrier (__syncthreads, a warp collective: __syncwarp, a
// shuffle, mma.sync, ldmatrix; or a warpgroup collective: wgmma) or exits; a barrier opens when every
// live thread it covers has reached it. Threads
// waiting at different barriers is a deadlock on a GPU, and an error here. Blocks of a launch are shared
// among worker threads. A fault (an access to a device allocation's guard page, a fiber stack overflow)
// ends the launch with an error naming the kernel, block and thread.
#include <dlfcn.h>
#include <link.h>
#include <setjmp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emulator.h"
#include "fiber.h"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace vtv_emu {

namespace {

constexpr size_t kFiberStackBytes = 128 << 10;
constexpr int kMaxThreads = 1024;
constexpr int kSlotBytes = 64;  // a lane's slot in a warp exchange buffer
// A warp exchange buffer: 32 slots, then scratch for a result the warp computes once (warp_scratch).
constexpr size_t kExchangeBytes = 32 * kSlotBytes + 1024;
// A warpgroup exchange buffer: 128 slots, then scratch for the group's 64 x 256 fp32 product.
constexpr size_t kGroupExchangeBytes = 128 * kSlotBytes + 64 * 256 * 4 + 64;
constexpr size_t kSmemAlign = 1024;  // the dynamic shared memory's alignment (wgmma's 128-byte swizzle atoms)

enum class State : unsigned char { Runnable, AtBlockBarrier, AtWarpBarrier, AtGroupBarrier, Done };

struct Fiber {
  std::unique_ptr<FiberStack> stack;
  FiberContext ctx;
  State state = State::Done;
  uint3 tid{0, 0, 0};
  unsigned linear = 0;
  unsigned exchange_parity = 0;
  unsigned group_exchange_parity = 0;
  ThreadAsync async;  // cp.async and wgmma in flight
};

// One per OS thread that runs blocks.
struct Worker {
  std::vector<Fiber> fibers;
  FiberContext scheduler;
  int current = -1;
  int threads = 0;
  int sweep_step = 1;  // +1: threads run in index order between barriers; -1: in reverse
  const LaunchSpec* launch = nullptr;
  bool in_block = false;
  std::string failure;        // set by a fiber or the fault handler; ends the block
  sigjmp_buf fault_jump;
  std::vector<char> dynamic_smem_storage;
  char* dynamic_smem = nullptr;  // in dynamic_smem_storage, kSmemAlign-aligned
  std::vector<char> exchange;        // per warp: two buffers of 32 slots
  std::vector<char> group_exchange;  // per warpgroup: two buffers of 128 slots (allocated at first use)
  const char* tls_lo = nullptr;      // this OS thread's static TLS block of the emulator's module
  const char* tls_hi = nullptr;
  std::vector<int> block_slots;
  std::vector<char> alt_stack;
  WgmmaReads wgmma_reads;  // the block's shared memory read by wgmma in flight (ptx.cc)

  Worker() {
    fibers.resize(kMaxThreads);
    exchange.resize(size_t(kMaxThreads / 32) * 2 * kExchangeBytes);
    block_slots.resize(kMaxThreads);
    alt_stack.resize(1 << 16);
    stack_t ss{};
    ss.ss_sp = alt_stack.data();
    ss.ss_size = alt_stack.size();
    sigaltstack(&ss, nullptr);
  }
};

thread_local Worker* tw = nullptr;

Worker& worker() {
  if (!tw) tw = new Worker();  // lives as long as its thread (the pool's threads never end)
  return *tw;
}

Fiber& current_fiber() { return tw->fibers[static_cast<size_t>(tw->current)]; }

std::string idx3(uint3 v) {
  return "(" + std::to_string(v.x) + ", " + std::to_string(v.y) + ", " + std::to_string(v.z) + ")";
}

std::string where() {
  Worker& w = *tw;
  std::string s = "kernel " + w.launch->name + ", block " + idx3(blockIdx);
  if (w.current >= 0) s += ", thread " + idx3(current_fiber().tid);
  return s;
}

// Called on a fiber: records the failure and leaves the block for good.
[[noreturn]] void fail_in_fiber(const std::string& what) {
  Worker& w = *tw;
  if (w.failure.empty()) w.failure = where() + ": " + what;
  Fiber& f = current_fiber();
  fiber_switch(f.ctx, w.scheduler);
  std::abort();  // never resumed
}

// Switches from the running fiber to the next runnable one of this sweep (a fiber that yields hands over
// directly, so a sweep costs one switch per thread), or back to the scheduler when the sweep is over.
void yield_to_next() {
  Worker& w = *tw;
  Fiber& from = current_fiber();
  const int n = w.threads;
  for (int j = w.current + w.sweep_step; j >= 0 && j < n; j += w.sweep_step) {
    Fiber& f = w.fibers[static_cast<size_t>(j)];
    if (f.state != State::Runnable) continue;
    w.current = j;
    threadIdx = f.tid;
    fiber_switch(from.ctx, f.ctx);
    return;
  }
  fiber_switch(from.ctx, w.scheduler);
}

void fiber_entry() {
  Worker& w = *tw;
  w.launch->body();
  const std::string left = unfinished_async(current_fiber().async);
  if (!left.empty()) fail_in_fiber("exited with " + left);
  current_fiber().state = State::Done;
  yield_to_next();
  std::abort();  // a finished fiber is never resumed
}

void wait_at(State s) {
  current_fiber().state = s;
  yield_to_next();
}

// ---- faults -----------------------------------------------------------------------------------------
void on_fault(int sig, siginfo_t* info, void*) {
  Worker* w = tw;
  if (!w || !w->in_block) {  // not ours: default action
    signal(sig, SIG_DFL);
    return;
  }
  const void* addr = info->si_addr;
  std::string what;
  if (w->current >= 0 && current_fiber().stack && current_fiber().stack->guards(addr)) {
    what = "stack overflow (more than " + std::to_string(kFiberStackBytes >> 10) + " KiB of local memory)";
  } else {
    char at[32];
    std::snprintf(at, sizeof at, "%p", addr);
    what = std::string("invalid memory access at ") + at + ": " + describe_device_address(addr);
  }
  if (w->failure.empty()) w->failure = where() + ": " + what;
  siglongjmp(w->fault_jump, 1);
}

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
  });
}

// ---- one block --------------------------------------------------------------------------------------
void run_block(Worker& w, const LaunchSpec& L, uint3 b, bool reverse) {
  const int bx = static_cast<int>(L.block.x), by = static_cast<int>(L.block.y);
  const int n = w.threads;
  blockIdx = b;
  blockDim = L.block;
  gridDim = L.grid;
  if (L.dynamic_smem) std::fill(w.dynamic_smem, w.dynamic_smem + L.dynamic_smem, char(0xFF));
  w.wgmma_reads.reset(L.dynamic_smem, (n + 127) / 128);
  for (int i = 0; i < n; ++i) {
    Fiber& f = w.fibers[static_cast<size_t>(i)];
    if (!f.stack) f.stack = std::make_unique<FiberStack>(kFiberStackBytes);
    f.tid = uint3{unsigned(i % bx), unsigned((i / bx) % by), unsigned(i / (bx * by))};
    f.linear = static_cast<unsigned>(i);
    f.state = State::Runnable;
    f.exchange_parity = 0;
    f.group_exchange_parity = 0;
    f.async.clear();
    fiber_start(f.ctx, *f.stack, fiber_entry);
  }
  w.in_block = true;
  w.current = -1;
  w.sweep_step = reverse ? -1 : 1;
  if (sigsetjmp(w.fault_jump, 1) != 0) {  // a fault on one of the fibers: abandon the block
    w.in_block = false;
    w.current = -1;
    return;
  }
  const int warps = (n + 31) / 32;
  for (;;) {
    // One sweep: the first runnable thread runs, and each hands over to the next as it yields.
    for (int k = 0; k < n; ++k) {
      const int i = reverse ? n - 1 - k : k;
      Fiber& f = w.fibers[static_cast<size_t>(i)];
      if (f.state != State::Runnable) continue;
      w.current = i;
      threadIdx = f.tid;
      fiber_switch(w.scheduler, f.ctx);
      break;
    }
    w.current = -1;
    if (!w.failure.empty()) break;
    // Every live thread now waits at a barrier. Warp barriers open first (a warp may shuffle before it
    // reaches the block's barrier); a warp split between the two kinds is a deadlock.
    bool opened = false, all_done = true, all_at_block = true;
    for (int wp = 0; wp < warps; ++wp) {
      int at_warp = 0, at_block = 0, at_group = 0, done = 0;
      const int lo = wp * 32, hi = std::min(n, lo + 32);
      for (int i = lo; i < hi; ++i) {
        const State s = w.fibers[static_cast<size_t>(i)].state;
        at_warp += s == State::AtWarpBarrier;
        at_block += s == State::AtBlockBarrier;
        at_group += s == State::AtGroupBarrier;
        done += s == State::Done;
      }
      if (done != hi - lo) all_done = false;
      if (at_warp || at_group) all_at_block = false;
      if ((at_warp != 0) + (at_block != 0) + (at_group != 0) > 1) {
        w.failure = "kernel " + L.name + ", block " + idx3(b) + ": deadlock: in warp " + std::to_string(wp) + ", " +
                    std::to_string(at_warp) + " lanes wait at a warp collective, " + std::to_string(at_group) +
                    " at a warpgroup collective (wgmma) and " + std::to_string(at_block) + " at __syncthreads";
        break;
      }
      if (at_group && done) {
        w.failure = "kernel " + L.name + ", block " + idx3(b) + ": a warpgroup collective (wgmma) in warp " +
                    std::to_string(wp) + " after " + std::to_string(done) + " of its lanes exited";
        break;
      }
      if (at_warp && done) {
        w.failure = "kernel " + L.name + ", block " + idx3(b) + ": a warp collective (shuffle, __syncwarp or mma) in warp " +
                    std::to_string(wp) + " after " + std::to_string(done) +
                    " of its lanes exited (undefined behaviour on a GPU)";
        break;
      }
      if (at_warp) {
        for (int i = lo; i < hi; ++i) w.fibers[static_cast<size_t>(i)].state = State::Runnable;
        opened = true;
      }
    }
    if (!w.failure.empty() || all_done) break;
    if (opened) continue;
    // Warpgroup collectives open when all 128 threads of the warpgroup wait at one.
    for (int lo = 0; lo < n; lo += 128) {
      const int hi = std::min(n, lo + 128);
      int at_group = 0;
      for (int i = lo; i < hi; ++i) at_group += w.fibers[static_cast<size_t>(i)].state == State::AtGroupBarrier;
      if (at_group == 128) {
        for (int i = lo; i < hi; ++i) w.fibers[static_cast<size_t>(i)].state = State::Runnable;
        opened = true;
      }
    }
    if (opened) continue;
    if (all_at_block) {  // exited threads count as arrived, as on sm_70 and newer
      for (int i = 0; i < n; ++i) {
        Fiber& f = w.fibers[static_cast<size_t>(i)];
        if (f.state == State::AtBlockBarrier) f.state = State::Runnable;
      }
      continue;
    }
    w.failure = "kernel " + L.name + ", block " + idx3(b) + ": deadlock";
    break;
  }
  w.in_block = false;
}

void run_blocks(const LaunchSpec& L, std::atomic<int64_t>& next, int64_t total, std::string& first_failure,
                std::mutex& failure_mutex) {
  Worker& w = worker();
  w.launch = &L;
  w.threads = static_cast<int>(L.block.x * L.block.y * L.block.z);
  if (!w.dynamic_smem || w.dynamic_smem_storage.size() < L.dynamic_smem + kSmemAlign) {
    w.dynamic_smem_storage.resize(std::max<size_t>(L.dynamic_smem, 4096) + kSmemAlign);
    const auto a = reinterpret_cast<uintptr_t>(w.dynamic_smem_storage.data());
    w.dynamic_smem = w.dynamic_smem_storage.data() + ((kSmemAlign - a % kSmemAlign) % kSmemAlign);
  }
  w.failure.clear();
  const int64_t gx = L.grid.x, gy = L.grid.y;
  for (;;) {
    const int64_t i = next.fetch_add(1);
    if (i >= total) break;
    const uint3 b{unsigned(i % gx), unsigned((i / gx) % gy), unsigned(i / (gx * gy))};
    run_block(w, L, b, (i & 1) != 0);
    if (!w.failure.empty()) {
      next.store(total);  // stop the other workers too
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (first_failure.empty()) first_failure = w.failure;
      break;
    }
  }
  w.launch = nullptr;
}

// Worker threads, started once; the launching thread works too.
class Pool {
 public:
  Pool() {
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* e = std::getenv("VTV_EMU_THREADS")) n = std::atoi(e);
    n = std::clamp(n, 1, 16);
    for (int i = 1; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  int size() const { return static_cast<int>(threads_.size()) + 1; }

  std::string run(const LaunchSpec& L, int64_t total) {
    std::atomic<int64_t> next{0};
    std::string failure;
    std::mutex failure_mutex;
    {
      std::lock_guard<std::mutex> lock(m_);
      job_ = [&] { run_blocks(L, next, total, failure, failure_mutex); };
      pending_ = static_cast<int>(threads_.size());
      ++generation_;
    }
    cv_.notify_all();
    run_blocks(L, next, total, failure, failure_mutex);
    std::unique_lock<std::mutex> lock(m_);
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
    return failure;
  }

 private:
  void loop() {
    install_fault_handler();
    uint64_t seen = 0;
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      job();
      std::lock_guard<std::mutex> lock(m_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::function<void()> job_;
  int pending_ = 0;
  uint64_t generation_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: its threads wait forever, and exit with the process
  return *p;
}

}  // namespace

std::string execute(const LaunchSpec& L) {
  install_fault_handler();
  const int64_t total = int64_t(L.grid.x) * L.grid.y * L.grid.z;
  if (total == 1 || pool().size() == 1) {
    std::atomic<int64_t> next{0};
    std::string failure;
    std::mutex m;
    run_blocks(L, next, total, failure, m);
    return failure;
  }
  return pool().run(L, total);
}

// ---- device built-ins -------------------------------------------------------------------------------
void block_barrier() { wait_at(State::AtBlockBarrier); }
void warp_barrier() { wait_at(State::AtWarpBarrier); }
unsigned lane_id() { return current_fiber().linear & 31u; }

void* warp_exchange(int slot_bytes) {
  if (slot_bytes > kSlotBytes) fail_in_fiber("warp exchange of more than 64 bytes per lane");
  Fiber& f = current_fiber();
  const size_t warp = f.linear / 32, parity = f.exchange_parity;
  f.exchange_parity ^= 1u;
  return tw->exchange.data() + (warp * 2 + parity) * kExchangeBytes;
}

void* warp_scratch(void* exchange) { return static_cast<char*>(exchange) + 32 * kSlotBytes; }

int block_reduce_or(int v) {
  Worker& w = *tw;
  w.block_slots[current_fiber().linear] = v != 0;
  block_barrier();
  int r = 0;
  for (int i = 0; i < w.threads; ++i) r |= w.block_slots[static_cast<size_t>(i)];
  block_barrier();  // every thread has read the slots before any can write them again
  return r;
}

void* dynamic_shared() {
  if (tw->launch->dynamic_smem == 0) fail_in_fiber("extern __shared__ memory used by a launch that reserved none");
  return tw->dynamic_smem;
}

void fail_thread(const std::string& what) { fail_in_fiber(what); }

ThreadAsync& thread_async() { return current_fiber().async; }

char* dynamic_shared_base() { return tw->dynamic_smem; }
size_t dynamic_shared_bytes() { return tw->launch->dynamic_smem; }

namespace {

int find_tls(dl_phdr_info* info, size_t, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  const auto self = reinterpret_cast<uintptr_t>(&find_tls);
  bool mine = false;
  size_t tls_bytes = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && self >= info->dlpi_addr + ph.p_vaddr && self < info->dlpi_addr + ph.p_vaddr + ph.p_memsz)
      mine = true;
    if (ph.p_type == PT_TLS) tls_bytes = ph.p_memsz;
  }
  if (!mine) return 0;
  if (info->dlpi_tls_data) {
    w->tls_lo = static_cast<const char*>(info->dlpi_tls_data);
    w->tls_hi = w->tls_lo + tls_bytes;
  }
  return 1;
}

}  // namespace

bool is_shared_range(const void* p, size_t bytes) {
  Worker& w = *tw;
  const char* c = static_cast<const char*>(p);
  if (w.launch->dynamic_smem && c >= w.dynamic_smem && c + bytes <= w.dynamic_smem + w.launch->dynamic_smem) return true;
  if (!w.tls_lo) dl_iterate_phdr(find_tls, &w);  // static __shared__ arrays are thread_local variables of this module
  return w.tls_lo && c >= w.tls_lo && c + bytes <= w.tls_hi;
}

void* warpgroup_exchange(int slot_bytes) {
  Worker& w = *tw;
  if (slot_bytes > kSlotBytes) fail_in_fiber("warpgroup exchange of more than 64 bytes per thread");
  if (w.threads % 128 != 0)
    fail_in_fiber("a warpgroup collective (wgmma) in a block of " + std::to_string(w.threads) +
                  " threads (warpgroups are 128 threads, 4 whole warps)");
  if (w.group_exchange.empty()) w.group_exchange.resize(size_t(kMaxThreads / 128) * 2 * kGroupExchangeBytes);
  Fiber& f = current_fiber();
  const size_t group = f.linear / 128, parity = f.group_exchange_parity;
  f.group_exchange_parity ^= 1u;
  return w.group_exchange.data() + (group * 2 + parity) * kGroupExchangeBytes;
}

void* warpgroup_scratch(void* exchange) { return static_cast<char*>(exchange) + 128 * kSlotBytes; }
void warpgroup_barrier() { wait_at(State::AtGroupBarrier); }
unsigned warpgroup_rank() { return current_fiber().linear & 127u; }
unsigned warpgroup_index() { return current_fiber().linear / 128u; }
WgmmaReads& wgmma_reads() { return tw->wgmma_reads; }

}  // namespace vtv_emu
