/* The team pass's barrier: spin for a while, then sleep.
 *
 * A batch-1 pass crosses about 60 barriers. libgomp's barrier under OMP_WAIT_POLICY=passive
 * (the setting this project recommends on a shared machine) puts a waiting member to sleep at
 * once, so every barrier costs a futex wake-up of a sleeping thread (on a VM, of an idle
 * virtual CPU). On an idle machine the members arrive close together (their shares of each
 * step are equal), so this barrier first spins (checks with a pause between), then sleeps on
 * a futex (elsewhere than Linux: sched_yield). The spin bound adapts per thread: it doubles
 * after a short sleep (the partner was a little behind: spinning longer would have caught it)
 * and halves after a long one (the partner was preempted: a loaded machine, where spinning
 * only takes the core from it), so a loaded machine gets libgomp's passive barrier back. Its
 * ceiling is TI_BARRIER_SPIN, or the environment's TPSINFER_SPIN (0: always sleep at once).
 *
 * Sense by generation: a member reads the generation, arrives (count); the last one resets
 * the count and bumps the generation; the others wait for the bump. All read-modify-writes
 * and the generation's store and loads are sequentially consistent, so (Dekker) a member that
 * is about to sleep either is seen by the waker (sleepers > 0) or sees the new generation. */
#include <stdatomic.h>
#include <time.h>

#include "src/infer/internal.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
static void futex_wait(atomic_uint *addr, unsigned val) {
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void futex_wake_all(atomic_uint *addr) {
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}
#else
#include <sched.h>
static void futex_wait(atomic_uint *addr, unsigned val) {
    (void)addr, (void)val;
    sched_yield();
}
static void futex_wake_all(atomic_uint *addr) { (void)addr; }
#endif

/* A wait after which spinning longer would have helped: a few spin bounds. */
#define SHORT_WAIT_NS 100000.0

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

void ti_barrier_init(ti_barrier *b, unsigned members, unsigned spin) {
    atomic_init(&b->count, 0u);
    atomic_init(&b->gen, 0u);
    atomic_init(&b->sleepers, 0u);
    b->members = members;
    b->spin = spin;
}

/* This thread's spin bound, adapted to how long its waits turn out (see below). */
static _Thread_local unsigned spin_now = 64;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e9 * (double)t.tv_sec + (double)t.tv_nsec;
}

void ti_barrier_wait(ti_barrier *b) {
    if (b->members <= 1) return;
    const unsigned gen = atomic_load(&b->gen);
    if (atomic_fetch_add(&b->count, 1u) == b->members - 1) {
        atomic_store(&b->count, 0u);
        atomic_store(&b->gen, gen + 1u);
        if (atomic_load(&b->sleepers) > 0) futex_wake_all(&b->gen);
        return;
    }
    unsigned bound = spin_now < b->spin ? spin_now : b->spin;
    for (unsigned i = 0; i < bound; i++) {
        if (atomic_load_explicit(&b->gen, memory_order_acquire) != gen) return;
        CPU_RELAX();
    }
    const double t0 = now_ns();
    atomic_fetch_add(&b->sleepers, 1u);
    while (atomic_load(&b->gen) == gen) futex_wait(&b->gen, gen);
    atomic_fetch_sub(&b->sleepers, 1u);
    /* Slept, so spinning did not pay. If the wait after the spin was short (the partner was
     * running, a little behind), spin longer next time, up to b->spin; if it was long (the
     * partner was preempted: a loaded machine), spin less, so that waits we cannot shorten
     * do not burn the core the partner needs. */
    const double waited = now_ns() - t0;
    if (waited < SHORT_WAIT_NS)
        spin_now = bound < 8 ? 16 : 2 * bound;
    else
        spin_now = bound / 2;
}
