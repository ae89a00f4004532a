#include "src/cli/cli_signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "src/train/stop.h"

static void on_stop_signal(int signo) {
    if (tpsc_train_request_stop(signo) != 0) _exit(128 + signo); /* the second one: no waiting */
    static const char msg[] = "\ntpsc: stopping after this step, writing last.h5 (signal again to quit at once)\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
}

void cli_stop_on_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* reads and writes in progress go on; the flag is looked at later */
    sigaction(SIGTERM, &sa, NULL);
    /* A SIGINT ignored on entry (a background job of a script, nohup) stays ignored. */
    struct sigaction old;
    if (sigaction(SIGINT, NULL, &old) == 0 && old.sa_handler != SIG_IGN) sigaction(SIGINT, &sa, NULL);
}

int cli_interrupted_exit_code(void) {
    int sig = tpsc_train_stop_signal();
    return sig > 0 ? 128 + sig : 1;
}
