// base/tsan_absl_mutex.cc
// Only in ThreadSanitizer builds (-DMOE_SANITIZE=thread links it into every program and test):
// makes absl::Mutex and absl::CondVar visible to TSan. Debian's libabsl_synchronization is not
// built with TSan, so its locks create no happens-before edges TSan knows of, and every access
// guarded by an absl::Mutex would read as a race. These definitions interpose the library's
// (the executable's symbols come first; the library calls its own through the PLT too), call the
// library's own function found with dlsym(RTLD_NEXT), and tell TSan what happened: an acquire
// after each lock, a release before each unlock or wait. A Condition is wrapped so that whichever
// thread evaluates it — the waiter, or the thread unlocking — acquires before and releases after:
// Abseil evaluates conditions with the mutex held, inside the library, where a waiter also
// blocks and wakes without passing through Lock/Unlock. Thread-safe (stateless but for the
// function pointers, resolved once).
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/synchronization/mutex.h"

#define MOE_STRINGIFY_INNER(x) #x
#define MOE_STRINGIFY(x) MOE_STRINGIFY_INNER(x)

namespace {

// The library's own definition of `absl::<inline namespace>::<tail>` (Itanium mangling).
template <typename F>
F Real(const char* tail) {
  const std::string ns = MOE_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = "_ZN4absl" + std::to_string(ns.size()) + ns + tail;
  void* f = dlsym(RTLD_NEXT, name.c_str());
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_mutex: %s not found in Abseil\n", name.c_str());
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

// A condition and its mutex, published to the thread that will evaluate it (Publish before the
// wait); that thread acquires the mutex's state first and releases what it read after.
struct Wrapped {
  Wrapped(const absl::Condition* c, absl::Mutex* m) : condition(c), mu(m) { __tsan_release(this); }
  const absl::Condition* condition;
  absl::Mutex* mu;
};
bool EvalAcquiring(Wrapped* w) {
  __tsan_acquire(w);
  __tsan_acquire(w->mu);
  const bool r = w->condition->Eval();
  __tsan_release(w->mu);
  return r;
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}
void Mutex::ReaderLock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}
bool Mutex::TryLock() {
  static const auto real = Real<bool (*)(Mutex*)>("5Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}
bool Mutex::ReaderTryLock() {
  static const auto real = Real<bool (*)(Mutex*)>("5Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}
void Mutex::Unlock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex6UnlockEv");
  __tsan_release(this);
  real(this);
}
void Mutex::ReaderUnlock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

void Mutex::Await(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex5AwaitERKNS0_9ConditionE");
  Wrapped w(&cond, this);
  __tsan_release(this);
  real(this, Condition(&EvalAcquiring, &w));
  __tsan_acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real =
      Real<bool (*)(Mutex*, const Condition&, Duration)>("5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Wrapped w(&cond, this);
  __tsan_release(this);
  const bool r = real(this, Condition(&EvalAcquiring, &w), timeout);
  __tsan_acquire(this);
  return r;
}
bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real =
      Real<bool (*)(Mutex*, const Condition&, Time)>("5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Wrapped w(&cond, this);
  __tsan_release(this);
  const bool r = real(this, Condition(&EvalAcquiring, &w), deadline);
  __tsan_acquire(this);
  return r;
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex8LockWhenERKNS0_9ConditionE");
  Wrapped w(&cond, this);
  real(this, Condition(&EvalAcquiring, &w));
  __tsan_acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Wrapped w(&cond, this);
  real(this, Condition(&EvalAcquiring, &w));
  __tsan_acquire(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Wrapped w(&cond, this);
  const bool r = real(this, Condition(&EvalAcquiring, &w), timeout);
  __tsan_acquire(this);
  return r;
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real =
      Real<bool (*)(Mutex*, const Condition&, Time)>("5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Wrapped w(&cond, this);
  const bool r = real(this, Condition(&EvalAcquiring, &w), deadline);
  __tsan_acquire(this);
  return r;
}

void CondVar::Wait(Mutex* mu) {
  static const auto real = Real<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  real(this, mu);
  __tsan_acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static const auto real =
      Real<bool (*)(CondVar*, Mutex*, Duration)>("7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  __tsan_release(mu);
  const bool r = real(this, mu, timeout);
  __tsan_acquire(mu);
  return r;
}
bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static const auto real =
      Real<bool (*)(CondVar*, Mutex*, Time)>("7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  __tsan_release(mu);
  const bool r = real(this, mu, deadline);
  __tsan_acquire(mu);
  return r;
}

ABSL_NAMESPACE_END
}  // namespace absl
