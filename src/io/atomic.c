#include "src/io/atomic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/util/alloc.h"

static tpsc_atomic_hook before_rename_hook;
static void *before_rename_user;

void tpsc_atomic_set_before_rename_hook(tpsc_atomic_hook hook, void *user) {
    before_rename_hook = hook;
    before_rename_user = user;
}

/* Splits "a/b/c.h5" into directory "a/b" and base "c.h5" ("." for a bare name). */
static void split_path(const char *path, char *dir, size_t dlen, const char **base) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, dlen, ".");
        *base = path;
    } else if (slash == path) {
        snprintf(dir, dlen, "/");
        *base = slash + 1;
    } else {
        snprintf(dir, dlen, "%.*s", (int)(slash - path), path);
        *base = slash + 1;
    }
}

/* Removes "<base>.tmp-<pid>" files whose writer no longer runs. A live pid is left alone: another
 * process may be writing right now. Best effort: failures here never fail the write. */
static void remove_stale_temporaries(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    if (!d) return;
    size_t blen = strlen(base);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, ".tmp-", 5) != 0) continue;
        char *end;
        long pid = strtol(e->d_name + blen + 5, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        if (pid != (long)getpid() && !(kill((pid_t)pid, 0) != 0 && errno == ESRCH)) continue;
        char full[4096];
        if (snprintf(full, sizeof full, "%s/%s", dir, e->d_name) < (int)sizeof full) unlink(full);
    }
    closedir(d);
}

static tpsc_status fsync_path(const char *path, int flags, const char *shown) {
    int fd = open(path, flags);
    if (fd < 0) return tpsc_fail(TPSC_ERR_IO, "%s: cannot open %s to sync it: %s", shown, path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    /* Some filesystems cannot fsync a directory (EINVAL); the rename is still atomic there. */
    if (rc != 0 && !(err == EINVAL && (flags & O_DIRECTORY)))
        return tpsc_fail(TPSC_ERR_IO, "%s: fsync of %s failed: %s", shown, path, strerror(err));
    return TPSC_OK;
}

tpsc_status tpsc_check_writable_dir(const char *dir) {
    char probe[4200];
    if (snprintf(probe, sizeof probe, "%s/.tpsc-write-probe-%ld", dir, (long)getpid()) >= (int)sizeof probe)
        return tpsc_fail(TPSC_ERR_ARG, "%s: path too long", dir);
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return tpsc_fail(TPSC_ERR_IO, "%s: the checkpoint folder is not writable: %s", dir, strerror(errno));
    int err = write(fd, "x", 1) == 1 ? 0 : errno ? errno : EIO;
    if (close(fd) != 0 && !err) err = errno;
    unlink(probe);
    if (err) return tpsc_fail(TPSC_ERR_IO, "%s: cannot write into the checkpoint folder: %s", dir, strerror(err));
    return TPSC_OK;
}

tpsc_status tpsc_atomic_write(const char *path, tpsc_atomic_writer write, void *user) {
    char dir[4096], tmp[4200];
    const char *base;
    if (!path || !*path || path[strlen(path) - 1] == '/')
        return tpsc_fail(TPSC_ERR_ARG, "atomic write: bad path '%s'", path ? path : "(null)");
    split_path(path, dir, sizeof dir, &base);
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return tpsc_fail(TPSC_ERR_ARG, "%s: path too long", path);
    remove_stale_temporaries(dir, base);

    tpsc_status st = write(tmp, path, user);
    if (st == TPSC_OK) st = fsync_path(tmp, O_RDONLY, path);
    if (st == TPSC_OK && before_rename_hook) before_rename_hook(tmp, before_rename_user);
    if (st == TPSC_OK && rename(tmp, path) != 0)
        st = tpsc_fail(TPSC_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (st != TPSC_OK) {
        unlink(tmp);
        return st;
    }
    return fsync_path(dir, O_RDONLY | O_DIRECTORY, path);
}
