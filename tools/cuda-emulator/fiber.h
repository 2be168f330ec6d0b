// Fibers for the CPU CUDA emulator: one per CUDA thread of a block, each on its own stack (with a guard
// page below it), switched cooperatively by a few instructions of assembly on x86-64 (ucontext
// elsewhere). Only the emulator's scheduler uses them.
#pragma once
#include <cstddef>

namespace vtv_emu {

class FiberStack {
 public:
  explicit FiberStack(size_t bytes);  // plus one PROT_NONE guard page below
  ~FiberStack();
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;
  char* top() const { return top_; }
  char* bottom() const { return bottom_; }  // lowest usable byte, just above the guard page
  bool guards(const void* addr) const;  // addr lies in this stack's guard page

 private:
  char* base_ = nullptr;  // the guard page
  size_t mapped_ = 0;
  char* bottom_ = nullptr;
  char* top_ = nullptr;
};

// A saved execution context. start() prepares `ctx` to run entry() on `stack` at its first switch_to;
// entry must never return (it switches away for the last time instead).
struct FiberContext {
  void* sp = nullptr;    // x86-64: the saved stack pointer
  void* impl = nullptr;  // elsewhere: a ucontext_t
  ~FiberContext();
};
void fiber_start(FiberContext& ctx, FiberStack& stack, void (*entry)());
// Saves the running context into `from` and resumes `to`.
void fiber_switch(FiberContext& from, FiberContext& to);

}  // namespace vtv_emu
