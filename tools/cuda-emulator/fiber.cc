// Fiber stacks and context switches (fiber.h). On x86-64 a switch saves the callee-saved registers and
// the stack pointer, and loads another's (the SSE and x87 control words are left alone: nothing in a
// kernel changes the rounding mode): a few nanoseconds, against
// about a microsecond for swapcontext (which makes a signal-mask system call each time). The emulator
// switches at every barrier and warp collective, so this is most of its speed.
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace vtv_emu {

namespace {
size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}
}  // namespace

FiberStack::FiberStack(size_t bytes) {
  const size_t page = page_size();
  const size_t usable = (bytes + page - 1) / page * page;
  mapped_ = usable + page;
  void* p = mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    std::fprintf(stderr, "vtv cuda emulator: cannot map a %zu-byte fiber stack\n", mapped_);
    std::abort();
  }
  base_ = static_cast<char*>(p);
  mprotect(base_, page, PROT_NONE);
  bottom_ = base_ + page;
  top_ = base_ + mapped_;
}

FiberStack::~FiberStack() {
  if (base_) munmap(base_, mapped_);
}

bool FiberStack::guards(const void* addr) const {
  const char* a = static_cast<const char*>(addr);
  return a >= base_ && a < base_ + page_size();
}

#if defined(__x86_64__)

// vtv_emu_switch(void** save_sp, void* load_sp): System V x86-64.
asm(R"(
  .pushsection .text
  .globl vtv_emu_switch
  .type vtv_emu_switch, @function
vtv_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size vtv_emu_switch, .-vtv_emu_switch
  .popsection
)");
extern "C" void vtv_emu_switch(void** save_sp, void* load_sp);

FiberContext::~FiberContext() = default;

void fiber_start(FiberContext& ctx, FiberStack& stack, void (*entry)()) {
  // The frame vtv_emu_switch pops: r15..rbp, then `ret` into entry with the stack as after a call
  // (rsp = 8 mod 16), above which sits a null return address entry never uses.
  auto* top = reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(stack.top()) & ~uintptr_t(15));
  uint64_t* sp = top - 1;
  *sp = 0;  // entry's (unused) return address
  *--sp = reinterpret_cast<uint64_t>(entry);
  for (int i = 0; i < 6; ++i) *--sp = 0;  // rbp, rbx, r12..r15
  ctx.sp = sp;
}

void fiber_switch(FiberContext& from, FiberContext& to) { vtv_emu_switch(&from.sp, to.sp); }

#else

FiberContext::~FiberContext() { delete static_cast<ucontext_t*>(impl); }

static ucontext_t* uc(FiberContext& c) {
  if (!c.impl) c.impl = new ucontext_t();
  return static_cast<ucontext_t*>(c.impl);
}

void fiber_start(FiberContext& ctx, FiberStack& stack, void (*entry)()) {
  ucontext_t* u = uc(ctx);
  getcontext(u);
  u->uc_stack.ss_sp = stack.bottom();
  u->uc_stack.ss_size = static_cast<size_t>(stack.top() - stack.bottom());
  u->uc_link = nullptr;
  makecontext(u, entry, 0);
}

void fiber_switch(FiberContext& from, FiberContext& to) { swapcontext(uc(from), uc(to)); }

#endif

}  // namespace vtv_emu
