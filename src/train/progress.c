#include "src/train/progress.h"

#include <time.h>
#include <unistd.h>

double tpsc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *tpsc_format_duration(double s, char *buf, size_t len) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, len, "?");
    } else if (s >= 3600) {
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    } else if (s >= 60) {
        snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)s % 60);
    } else {
        snprintf(buf, len, "%.0fs", s);
    }
    return buf;
}

void tpsc_progress_init(tpsc_progress *p, FILE *out, int every, int64_t start_step, int64_t total_steps) {
    p->out = out;
    p->tty = out && isatty(fileno(out));
    p->ranks = 1;
    p->every = every > 0 ? every : 50;
    p->t_start = tpsc_now();
    p->step_start = start_step;
    p->total_steps = total_steps;
    p->last_print = 0;
}

void tpsc_progress_step(tpsc_progress *p, int epoch, int epochs, int64_t step_in_epoch, int64_t steps_per_epoch,
                        int64_t global_step, const char *parts, double lr, double images_per_s) {
    if (!p->out) return;
    double now = tpsc_now();
    bool last = step_in_epoch == steps_per_epoch;
    if (p->tty) {
        if (now - p->last_print < 0.1 && !last) return; /* a terminal needs no more than 10 updates/s */
    } else if (step_in_epoch % p->every != 0 && !last) {
        return;
    }
    p->last_print = now;
    double done = (double)(global_step - p->step_start);
    double eta = done > 0 ? (now - p->t_start) / done * (double)(p->total_steps - global_step) : -1;
    char eta_s[32], ranks_s[32] = "";
    if (p->ranks > 1) snprintf(ranks_s, sizeof ranks_s, " on %d ranks", p->ranks);
    fprintf(p->out, "%sepoch %d/%d  step %lld/%lld  %s  lr %.3g  %.0f img/s%s  ETA %s%s", p->tty ? "\r\033[K" : "",
            epoch + 1, epochs, (long long)step_in_epoch, (long long)steps_per_epoch, parts, lr, images_per_s, ranks_s,
            tpsc_format_duration(eta, eta_s, sizeof eta_s), p->tty ? "" : "\n");
    fflush(p->out);
}

void tpsc_progress_break(tpsc_progress *p) {
    if (p->out && p->tty) {
        fputc('\n', p->out);
        fflush(p->out);
    }
}
