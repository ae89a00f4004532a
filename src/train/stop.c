#include "src/train/stop.h"

#include <stdatomic.h>

static atomic_int stop_signal;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler may only store to a lock-free atomic");

int tpsc_train_request_stop(int signo) {
    int before = 0;
    atomic_compare_exchange_strong(&stop_signal, &before, signo);
    return before; /* on failure, the value already recorded */
}
int tpsc_train_stop_signal(void) { return atomic_load(&stop_signal); }
