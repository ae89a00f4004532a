#include "src/sweep/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The pid in a lock file: 0 when the file holds no plain positive decimal pid. */
static long read_holder(const char *path, bool *readable, time_t *mtime) {
    *readable = false;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    struct stat sb;
    char buf[32];
    ssize_t n = fstat(fd, &sb) == 0 ? read(fd, buf, sizeof buf - 1) : -1;
    close(fd);
    if (n < 0) return 0;
    *readable = true;
    *mtime = sb.st_mtime;
    buf[n] = '\0';
    char *end;
    errno = 0;
    long pid = strtol(buf, &end, 10);
    if (end == buf || errno != 0 || pid <= 0 || pid > (long)0x7fffffff || (*end != '\n' && *end != '\0')) return 0;
    return pid;
}

tpsc_status tpsc_sweep_lock(const char *dir, bool *taken) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/lock", dir) >= (int)sizeof path)
        return tpsc_fail(TPSC_ERR_ARG, "%s: path too long for a lock", dir);
    *taken = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd >= 0) {
            char pid[32];
            int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            bool ok = write(fd, pid, (size_t)len) == len;
            if (close(fd) != 0 || !ok) {
                unlink(path);
                return tpsc_fail(TPSC_ERR_IO, "cannot write %s", path);
            }
            *taken = true;
            return TPSC_OK;
        }
        if (errno != EEXIST) return tpsc_fail(TPSC_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        bool readable;
        time_t mtime = 0;
        long holder = read_holder(path, &readable, &mtime);
        if (!readable) {
            if (errno == ENOENT) continue; /* released between our two calls: try again */
            return tpsc_fail(TPSC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        }
        bool live;
        if (holder == 0) /* no pid yet: a writer between open and write, unless it is old */
            live = time(NULL) - mtime < TPSC_SWEEP_LOCK_GRACE_S;
        else
            live = holder != (long)getpid() && (kill((pid_t)holder, 0) == 0 || errno == EPERM);
        if (live) return TPSC_OK;
        unlink(path); /* its process is gone (or it is our own from an earlier failure) */
    }
    return tpsc_fail(TPSC_ERR_IO, "cannot take %s", path);
}

void tpsc_sweep_unlock(const char *dir) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/lock", dir) < (int)sizeof path) unlink(path);
}
