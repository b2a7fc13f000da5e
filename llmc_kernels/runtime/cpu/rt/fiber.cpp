// Fibers: stack slots and a hand-written context switch.
//
// Slot layout (LLMC_STACK_BYTES, aligned to its size, so kernel code finds its context by masking sp):
//   [0, page)           the Fiber (its llmc_ctx first)
//   [page, 2*page)      guard page (PROT_NONE): a stack overflow faults here; kernels are compiled with
//                       -fstack-clash-protection, so even a huge frame touches it instead of jumping past
//   [2*page, end)       the stack, growing down from `end`
// The switch saves only the callee-saved registers (the compiler saves the rest around the call): about
// ten times cheaper than swapcontext, which also makes a signal-mask system call on every switch.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rt.h"

#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(RT_FORCE_UCONTEXT)
#define RT_ASM_SWITCH 1
#if defined(__APPLE__)
#define RT_SYM(name) "_" #name
#define RT_TYPE(name)
#else
#define RT_SYM(name) #name
#define RT_TYPE(name) ".type " #name ",@function\n.hidden " #name "\n"
#endif
extern "C" void llmc_switch_stack(void **save_sp, void *new_sp);
#else
#include <ucontext.h>
#endif

#if defined(RT_ASM_SWITCH) && defined(__x86_64__)
__asm__(".text\n"
        ".globl " RT_SYM(llmc_switch_stack) "\n"
        RT_TYPE(llmc_switch_stack)
        RT_SYM(llmc_switch_stack) ":\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n");
#elif defined(RT_ASM_SWITCH) && defined(__aarch64__)
__asm__(".text\n"
        ".globl " RT_SYM(llmc_switch_stack) "\n"
        RT_TYPE(llmc_switch_stack)
        ".p2align 2\n"
        RT_SYM(llmc_switch_stack) ":\n"
        "  sub sp, sp, #160\n"
        "  stp x19, x20, [sp, #0]\n  stp x21, x22, [sp, #16]\n  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n  stp x27, x28, [sp, #64]\n  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n"
        "  mov x2, sp\n  str x2, [x0]\n  mov sp, x1\n"
        "  ldp x19, x20, [sp, #0]\n  ldp x21, x22, [sp, #16]\n  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n  ldp x27, x28, [sp, #64]\n  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #160\n"
        "  ret\n");
#endif

namespace rt {

static char *g_pool;          // aligned start of the slots
static char *g_pool_map;      // what mmap returned (for munmap)
static size_t g_pool_map_len;
static unsigned g_nslots;
static size_t g_page;

#ifndef RT_ASM_SWITCH
// The fallback keeps each fiber's ucontext in its slot's first page, after the Fiber.
static ucontext_t g_uc_main;
static inline ucontext_t *uc_of(Fiber *f) { return (ucontext_t *)((char *)f + 512); }
static_assert(512 + sizeof(ucontext_t) <= 4096, "ucontext must fit in the slot's first page");
#endif

bool fibers_reserve(unsigned nslots) {
  if (nslots <= g_nslots) return true;
  if (!g_page) g_page = (size_t)sysconf(_SC_PAGESIZE);
  unsigned want = (nslots + 63) / 64 * 64; // 1024 threads + the runner: 1088 slots, 272 MiB of address space
  size_t S = LLMC_STACK_BYTES;
  if (S < 4 * g_page) return false; // 64 KiB pages would leave no stack; LLMC_STACK_BYTES is 256 KiB
  size_t len = (size_t)want * S + S; // + S to align the start to S
  void *m = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return false;
  char *base = (char *)(((uintptr_t)m + S - 1) & ~(uintptr_t)(S - 1));
  for (unsigned i = 0; i < want; i++) {
    if (mprotect(base + (size_t)i * S + g_page, g_page, PROT_NONE) != 0) {
      munmap(m, len);
      return false;
    }
  }
  if (g_pool_map) munmap(g_pool_map, g_pool_map_len); // only between launches: nothing runs on them
  g_pool_map = (char *)m;
  g_pool_map_len = len;
  g_pool = base;
  g_nslots = want;
  return true;
}

size_t stack_bytes_usable() { return LLMC_STACK_BYTES - 2 * g_page; }

Fiber *fiber_slot(unsigned i) { return (Fiber *)(g_pool + (size_t)i * LLMC_STACK_BYTES); }

bool is_stack_guard(const void *addr) {
  uintptr_t a = (uintptr_t)addr, lo = (uintptr_t)g_pool;
  if (!g_pool || a < lo || a >= lo + (uintptr_t)g_nslots * LLMC_STACK_BYTES) return false;
  uintptr_t off = (a - lo) % LLMC_STACK_BYTES;
  return off >= g_page && off < 2 * g_page;
}

void fiber_prepare(Fiber *f, void (*entry)()) {
  uintptr_t top = (uintptr_t)f + LLMC_STACK_BYTES;
  (void)top;
#if defined(RT_ASM_SWITCH) && defined(__x86_64__)
  uint64_t *sp = (uint64_t *)top;
  *--sp = 0;                  // entry's (never used) return address: keeps the ABI's stack alignment
  *--sp = (uint64_t)entry;    // where llmc_switch_stack's `ret` goes
  for (int i = 0; i < 6; i++) *--sp = 0; // rbp rbx r12..r15
  f->sp = sp;
#elif defined(RT_ASM_SWITCH) && defined(__aarch64__)
  uint64_t *sp = (uint64_t *)(top - 160);
  memset(sp, 0, 160);
  sp[11] = (uint64_t)entry;   // x30, the link register that `ret` jumps to
  f->sp = sp;
#else
  ucontext_t *uc = uc_of(f);
  getcontext(uc);
  uc->uc_stack.ss_sp = (char *)f + 2 * g_page;
  uc->uc_stack.ss_size = LLMC_STACK_BYTES - 2 * g_page;
  uc->uc_link = 0;
  makecontext(uc, entry, 0);
#endif
}

// Switch from the running fiber `from` to `to` (which must have been prepared or switched out).
void fiber_switch(Fiber *from, Fiber *to) {
  g_cur = to;
#ifdef RT_ASM_SWITCH
  llmc_switch_stack(&from->sp, to->sp);
#else
  swapcontext(uc_of(from), uc_of(to));
#endif
}

// From the caller's own (Python's) stack into fiber f; returns once a fiber calls fiber_leave.
#ifdef RT_ASM_SWITCH
static void *g_main_sp;
#endif
void fiber_enter(Fiber *f) {
  g_cur = f;
#ifdef RT_ASM_SWITCH
  llmc_switch_stack(&g_main_sp, f->sp);
#else
  swapcontext(&g_uc_main, uc_of(f));
#endif
}

void fiber_leave(Fiber *from) {
  g_cur = 0;
#ifdef RT_ASM_SWITCH
  llmc_switch_stack(&from->sp, g_main_sp);
#else
  swapcontext(uc_of(from), &g_uc_main);
#endif
}

} // namespace rt
