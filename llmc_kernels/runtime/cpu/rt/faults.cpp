// Faults during a launch: hardware traps, the time limit, Ctrl-C.
//
// Our handlers are installed only for the duration of a launch (on an alternate stack, because a stack
// overflow leaves none) and the previous ones (Python's, faulthandler's) are restored afterwards. A signal
// that is not about the launch (another thread, or after the kernel finished) goes to the previous
// handler. The time limit is a watchdog thread that signals the launching thread at the deadline; an
// endless loop has no scheduling point, so only a signal can stop it.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

#if defined(__linux__)
#define RT_SIGTIMEOUT (SIGRTMAX - 2)
#else
#define RT_SIGTIMEOUT SIGUSR2
#endif

namespace rt {

volatile int g_in_launch;
static pthread_t g_thread;
static const int k_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGINT, 0 /* RT_SIGTIMEOUT */};
static const int k_nsignals = sizeof k_signals / sizeof k_signals[0];
static struct sigaction g_old[k_nsignals];
static stack_t g_old_altstack;
static sigset_t g_old_mask;
static char g_altstack[64 * 1024] __attribute__((aligned(16)));

static int sig_at(int i) { return i == k_nsignals - 1 ? RT_SIGTIMEOUT : k_signals[i]; }

// ---------------------------------------------------------------------------------------- the watchdog
static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv;
static pid_t wd_pid;          // the process that started the thread (a forked child must start its own)
static bool wd_armed;
static struct timespec wd_deadline;
static pthread_t wd_target;

static void wd_now(struct timespec *ts) {
#if defined(__linux__)
  clock_gettime(CLOCK_MONOTONIC, ts);
#else
  clock_gettime(CLOCK_REALTIME, ts);
#endif
}

static bool wd_passed(const struct timespec *now, const struct timespec *when) {
  return now->tv_sec > when->tv_sec || (now->tv_sec == when->tv_sec && now->tv_nsec >= when->tv_nsec);
}

static void *wd_main(void *) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, 0); // never take a process-directed signal (Ctrl-C) from Python
  pthread_mutex_lock(&wd_mu);
  for (;;) {
    while (!wd_armed) pthread_cond_wait(&wd_cv, &wd_mu);
    struct timespec now;
    wd_now(&now);
    if (wd_passed(&now, &wd_deadline)) {
      pthread_kill(wd_target, RT_SIGTIMEOUT);
      wd_armed = false;
      continue;
    }
    pthread_cond_timedwait(&wd_cv, &wd_mu, &wd_deadline);
  }
  return 0;
}

static bool wd_start() {
  if (wd_pid == getpid()) return true;
  // first use, or a forked child: the parent's thread does not exist here; start afresh
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  wd_mu = fresh;
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
#if defined(__linux__)
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
#endif
  pthread_cond_init(&wd_cv, &attr);
  pthread_condattr_destroy(&attr);
  wd_armed = false;
  pthread_t t;
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&ta, 64 * 1024);
  int rc = pthread_create(&t, &ta, wd_main, 0);
  pthread_attr_destroy(&ta);
  if (rc != 0) return false;
  wd_pid = getpid();
  return true;
}

static void wd_arm(double seconds) {
  struct timespec ts;
  wd_now(&ts);
  double whole = (double)(long long)seconds;
  ts.tv_sec += (time_t)whole;
  ts.tv_nsec += (long)((seconds - whole) * 1e9);
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&wd_mu);
  wd_deadline = ts;
  wd_target = pthread_self();
  wd_armed = true;
  pthread_cond_signal(&wd_cv);
  pthread_mutex_unlock(&wd_mu);
}

static void wd_disarm() {
  pthread_mutex_lock(&wd_mu);
  wd_armed = false;
  pthread_cond_signal(&wd_cv);
  pthread_mutex_unlock(&wd_mu);
}

// ---------------------------------------------------------------------------------------- the handler
static void chain(int sig, siginfo_t *info, void *uc) {
  for (int i = 0; i < k_nsignals; i++) {
    if (sig_at(i) != sig) continue;
    const struct sigaction &old = g_old[i];
    if (old.sa_flags & SA_SIGINFO) {
      old.sa_sigaction(sig, info, uc);
    } else if (old.sa_handler == SIG_DFL) {
      sigaction(sig, &old, 0); // the default action: for a fault, the instruction faults again and it applies
      if (sig == SIGINT || sig == RT_SIGTIMEOUT) raise(sig);
    } else if (old.sa_handler != SIG_IGN) {
      old.sa_handler(sig);
    }
    return;
  }
}

static void on_signal(int sig, siginfo_t *info, void *uc) {
  if (!g_in_launch || !pthread_equal(pthread_self(), g_thread)) {
    if (sig == SIGINT && g_in_launch) {
      pthread_kill(g_thread, SIGINT); // Ctrl-C landed on another thread: it is meant for the busy kernel
      return;
    }
    if (sig != RT_SIGTIMEOUT) chain(sig, info, uc); // a late timeout after the launch: nothing to stop
    return;
  }
  g_in_launch = 0; // a second fault while we report the first goes to the previous handler
  const void *addr = info ? info->si_addr : 0;
  switch (sig) {
  case SIGSEGV:
  case SIGBUS:
    if (is_stack_guard(addr))
      escape(LLMC_E_TRAP, LLMC_T_STACK_OVERFLOW, 0,
             "stack overflow: this CUDA thread used more than its %zu KiB stack on the cpu backend (a large local "
             "array, or deep recursion in a __device__ function)", stack_bytes_usable() / 1024);
    g.err->addr = (uint64_t)(uintptr_t)addr;
    escape(LLMC_E_TRAP, LLMC_T_BAD_ADDRESS, 0, "invalid memory access at address %p", addr);
  case SIGFPE:
    if (info && info->si_code == FPE_INTDIV)
      escape(LLMC_E_TRAP, LLMC_T_DIV_ZERO, 0, "integer division by zero (or INT_MIN / -1)");
    if (info && info->si_code == FPE_INTOVF)
      escape(LLMC_E_TRAP, LLMC_T_DIV_OVERFLOW, 0, "integer division overflow (INT_MIN / -1)");
    escape(LLMC_E_TRAP, LLMC_T_ILLEGAL, 0, "arithmetic trap (SIGFPE)");
  case SIGILL:
  case SIGTRAP:
    escape(LLMC_E_TRAP, LLMC_T_ILLEGAL, 0, "the kernel executed a trap instruction (signal %d)", sig);
  case SIGINT:
    escape(LLMC_E_INTERRUPT, 0, 0, "interrupted");
  default:
    escape(LLMC_E_TIMEOUT, 0, 0, "time limit");
  }
}

bool faults_install(double timeout_s) {
  if (!wd_start()) return false;
  g_thread = pthread_self();
  stack_t ss;
  ss.ss_sp = g_altstack;
  ss.ss_size = sizeof g_altstack;
  ss.ss_flags = 0;
  sigaltstack(&ss, &g_old_altstack);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigfillset(&sa.sa_mask); // nothing interrupts the report; siglongjmp restores the launch's mask
  for (int i = 0; i < k_nsignals; i++) sigaction(sig_at(i), &sa, &g_old[i]);
  // the launching thread may have these blocked (Python blocks nothing here, but an embedding might)
  sigset_t s;
  sigemptyset(&s);
  for (int i = 0; i < k_nsignals; i++) sigaddset(&s, sig_at(i));
  pthread_sigmask(SIG_UNBLOCK, &s, &g_old_mask);
  if (timeout_s > 0) wd_arm(timeout_s);
  return true;
}

void faults_restore() {
  g_in_launch = 0;
  wd_disarm();
  // a timeout signal sent just before the disarm may still be pending: take it before the old handler
  // (whose default action would end the process) is back
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, RT_SIGTIMEOUT);
  pthread_sigmask(SIG_BLOCK, &s, 0);
  sigset_t pending;
  sigpending(&pending);
  if (sigismember(&pending, RT_SIGTIMEOUT)) {
    int got;
    sigwait(&s, &got);
  }
  for (int i = 0; i < k_nsignals; i++) sigaction(sig_at(i), &g_old[i], 0);
  pthread_sigmask(SIG_SETMASK, &g_old_mask, 0);
  sigaltstack(&g_old_altstack, 0);
}

} // namespace rt
