/* libhdf5's first read of an untrusted file, in a child process (h5_probe.h). */
#include "src/common/h5_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

enum {
    SMALL_READ = 64 << 10, /* a dataset this small (in memory) is read whole: HDF5's compact limit */
    ATTR_READ = 16 << 20,  /* an attribute value larger than this is not read */
    MAX_DEPTH = 64,        /* groups inside groups */
    MAX_FAILS = 64,        /* failed link or attribute reads tried past, per object */
    DEFAULT_SECONDS = 30,  /* TPSC_HDF5_PROBE_SECONDS unset */
    MAX_SECONDS = 3600,
};

/* What the child writes to the parent once it has walked the file. */
#define FINISHED 'K'
#define FINISHED_NOMEM 'M'
/* The child's exit status when a sanitizer found a memory error in it (its report is not the
 * caller's finding, and libFuzzer must not save the input as one). */
#define SANITIZER_EXIT 86

/* ---- the environment ------------------------------------------------------------------ */

bool h5_probe_enabled(void) {
    const char *v = getenv("TPSC_HDF5_PROBE");
    return !(v && (!strcmp(v, "off") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false")));
}

/* The bound in seconds: TPSC_HDF5_PROBE_SECONDS, a whole number from 1 to 3600, or 30 when
 * unset. Any other value (empty, signed, fractional, trailing junk, zero, too large) is false,
 * with the variable and its value written into problem: a mistyped bound is the user's error,
 * never a silent 30 s. */
static bool probe_seconds(unsigned *seconds, char *problem, size_t cap) {
    const char *v = getenv("TPSC_HDF5_PROBE_SECONDS");
    *seconds = DEFAULT_SECONDS;
    if (!v) return true;
    unsigned long s = 0;
    size_t n = 0;
    for (; v[n] >= '0' && v[n] <= '9'; n++)
        if (s <= MAX_SECONDS) s = 10 * s + (unsigned long)(v[n] - '0');
    if (n > 0 && v[n] == '\0' && s >= 1 && s <= MAX_SECONDS) {
        *seconds = (unsigned)s;
        return true;
    }
    snprintf(problem, cap, "TPSC_HDF5_PROBE_SECONDS is '%.40s%s': expected a whole number of seconds from 1 to %d",
             v, strlen(v) > 40 ? "..." : "", MAX_SECONDS);
    return false;
}

/* ---- the child: everything libhdf5 parses for the loaders, bulk data aside -------------- */

/* Object addresses already walked (open addressing, address + 1 so that 0 marks a free slot):
 * a group linked twice, or a link cycle, is walked once. */
typedef struct {
    haddr_t *slot;
    size_t cap, n;
} addr_set;

/* True when a was not in the set (and now is). A failed allocation counts as seen: the walk
 * stops there rather than looping. */
static bool addr_set_add(addr_set *s, haddr_t a) {
    if (a == HADDR_UNDEF) return false;
    if (2 * (s->n + 1) > s->cap) {
        const size_t cap = s->cap ? 2 * s->cap : 1024;
        haddr_t *slot = calloc(cap, sizeof *slot);
        if (!slot) return false;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) {
                size_t j = (size_t)(s->slot[i] * 0x9e3779b97f4a7c15ull) & (cap - 1);
                while (slot[j]) j = (j + 1) & (cap - 1);
                slot[j] = s->slot[i];
            }
        free(s->slot);
        s->slot = slot, s->cap = cap;
    }
    size_t j = (size_t)((a + 1) * 0x9e3779b97f4a7c15ull) & (s->cap - 1);
    for (; s->slot[j]; j = (j + 1) & (s->cap - 1))
        if (s->slot[j] == a + 1) return false;
    s->slot[j] = a + 1;
    s->n++;
    return true;
}

typedef struct {
    addr_set seen;
    int depth;
    bool nomem; /* an HDF5 call failed for lack of memory */
} walker;

static herr_t note_error(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    if (e->min_num == H5E_NOSPACE || e->min_num == H5E_CANTALLOC) ((walker *)data)->nomem = true;
    return 0;
}

/* HDF5's report of a failed call: printed nowhere, looked at for an allocation failure. */
static herr_t on_error(hid_t stack, void *data) {
    H5Ewalk2(stack, H5E_WALK_DOWNWARD, note_error, data);
    return 0;
}

/* Frees what a read of a variable-length type allocated. */
static void reclaim(hid_t mem, hid_t space, void *buf) {
    const bool vlen = H5Tdetect_class(mem, H5T_VLEN) > 0 || (H5Tget_class(mem) == H5T_STRING && H5Tis_variable_str(mem) > 0);
    if (vlen) H5Dvlen_reclaim(mem, space, H5P_DEFAULT, buf);
}

/* An attribute's value, converted to its native form as the loaders' reads convert it. */
static void read_attribute(hid_t a) {
    const hid_t type = H5Aget_type(a), space = H5Aget_space(a);
    const hid_t mem = type >= 0 ? H5Tget_native_type(type, H5T_DIR_DEFAULT) : H5I_INVALID_HID;
    const hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    const size_t size = mem >= 0 ? H5Tget_size(mem) : 0;
    if (n > 0 && size > 0 && (uint64_t)n <= ATTR_READ / size) {
        void *buf = calloc((size_t)n, size);
        if (buf && H5Aread(a, mem, buf) >= 0) reclaim(mem, space, buf);
        free(buf);
    }
    if (mem >= 0) H5Tclose(mem);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
}

static herr_t on_attribute(hid_t o, const char *name, const H5A_info_t *info, void *data) {
    (void)info, (void)data;
    if (H5Aexists(o, name) > 0) { /* by name, as the loaders look it up */
        const hid_t a = H5Aopen(o, name, H5P_DEFAULT);
        if (a >= 0) {
            read_attribute(a);
            H5Aclose(a);
        }
    }
    return 0;
}

/* Every attribute of o and its value; first a lookup of a name that is absent, which compares
 * every attribute's name. Past an attribute that fails, the iteration resumes. */
static void walk_attributes(hid_t o) {
    H5Aexists(o, "tpsc probe: an absent name");
    hsize_t idx = 0;
    for (int fails = 0; fails < MAX_FAILS; fails++) {
        const hsize_t from = idx;
        if (H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, on_attribute, NULL) >= 0) break;
        idx = idx > from ? idx + 1 : from + 1;
    }
}

/* A dataset's type, space and creation properties, and its first and last elements (all of
 * it when small): the layout, the chunk index and the filters without the bulk data. */
static void walk_dataset(hid_t d) {
    const hid_t type = H5Dget_type(d), space = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    if (dcpl >= 0) {
        H5Pget_layout(dcpl);
        H5Pclose(dcpl);
    }
    const hid_t mem = type >= 0 ? H5Tget_native_type(type, H5T_DIR_DEFAULT) : H5I_INVALID_HID;
    const int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    const hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    const size_t size = mem >= 0 ? H5Tget_size(mem) : 0;
    hsize_t dims[H5S_MAX_RANK];
    if (n > 0 && size > 0 && rank >= 0 && rank <= H5S_MAX_RANK && H5Sget_simple_extent_dims(space, dims, NULL) == rank) {
        if ((uint64_t)n <= SMALL_READ / size) {
            void *buf = calloc((size_t)n, size);
            if (buf && H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) reclaim(mem, space, buf);
            free(buf);
        } else {
            hsize_t at[2 * H5S_MAX_RANK], two = 2;
            for (int k = 0; k < rank; k++) at[k] = 0, at[rank + k] = dims[k] - 1;
            const hid_t pick = H5Scopy(space), two_space = H5Screate_simple(1, &two, NULL);
            void *buf = calloc(2, size);
            if (buf && pick >= 0 && two_space >= 0 && H5Sselect_elements(pick, H5S_SELECT_SET, 2, at) >= 0 &&
                H5Dread(d, mem, two_space, pick, H5P_DEFAULT, buf) >= 0)
                reclaim(mem, two_space, buf);
            free(buf);
            if (pick >= 0) H5Sclose(pick);
            if (two_space >= 0) H5Sclose(two_space);
        }
    }
    if (mem >= 0) H5Tclose(mem);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
}

static void walk_object(walker *w, hid_t o, H5I_type_t kind);

static herr_t on_link(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    if (info->type == H5L_TYPE_HARD) {
        const hid_t o = H5Oopen(group, name, H5P_DEFAULT); /* by name, as the loaders look it up */
        if (o >= 0) {
            walk_object(data, o, H5Iget_type(o));
            H5Oclose(o);
        }
    }
    return 0; /* soft and external links lead nowhere the hard ones do not (or out of the file) */
}

/* Every link of a group, in its name index; past a link that fails, the iteration resumes. */
static void walk_group(walker *w, hid_t g) {
    H5G_info_t gi;
    if (H5Gget_info(g, &gi) < 0) gi.nlinks = 0;
    H5Lexists(g, "tpsc probe: an absent name", H5P_DEFAULT); /* a lookup that searches the index */
    if (w->depth >= MAX_DEPTH) return;
    w->depth++;
    hsize_t idx = 0;
    for (int fails = 0; fails < MAX_FAILS; fails++) {
        const hsize_t from = idx;
        if (H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, on_link, w) >= 0) break;
        idx = idx > from ? idx + 1 : from + 1;
        if (idx >= gi.nlinks) break;
    }
    w->depth--;
}

/* o is a group (or the file, for its root group), a dataset or a named datatype. An object
 * whose header libhdf5 cannot classify is walked all the same: the loaders reach its
 * attributes and links by path without asking. */
static void walk_object(walker *w, hid_t o, H5I_type_t kind) {
    H5O_info_t info;
    if (H5Oget_info2(o, &info, H5O_INFO_BASIC) >= 0 && !addr_set_add(&w->seen, info.addr)) return;
    walk_attributes(o);
    if (kind == H5I_GROUP || kind == H5I_FILE) walk_group(w, o);
    else if (kind == H5I_DATASET) walk_dataset(o);
}

/* A sanitizer's memory error in the child ends the child, quietly. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));
static void sanitizer_died(void) { _exit(SANITIZER_EXIT); }

/* The child's setting: a fault ends it with the signal (no handler of the host's, no
 * sanitizer report, no core of the host's), Ctrl-C and SIGTERM are the parent's to handle, it
 * ends when the parent does or at the bound, it prints nothing, and its address space may grow
 * by what the file can justify (a deflated chunk expands at most 1032 times) plus 1 GB. */
static void child_setting(unsigned seconds, uint64_t bytes) {
    static const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS, SIGTRAP, SIGALRM, SIGXCPU};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) signal(faults[i], SIG_DFL);
    signal(SIGINT, SIG_IGN), signal(SIGTERM, SIG_IGN), signal(SIGHUP, SIG_IGN), signal(SIGQUIT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(sanitizer_died);
    const struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    alarm(seconds + 2);
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, STDOUT_FILENO), dup2(null, STDERR_FILENO);
    /* the address space now (VmSize, the first field of /proc/self/statm, in pages) */
    char statm[64] = {0};
    const int fd = open("/proc/self/statm", O_RDONLY);
    const ssize_t got = fd >= 0 ? read(fd, statm, sizeof statm - 1) : -1;
    if (fd >= 0) close(fd);
    const unsigned long long pages = got > 0 ? strtoull(statm, NULL, 10) : 0;
    if (pages > 0) {
        const unsigned long long grow = (bytes < (1ull << 36) / 1032 ? bytes * 1032 : 1ull << 36) + (1ull << 30);
        const unsigned long long cap = pages * (unsigned long long)sysconf(_SC_PAGESIZE) + grow;
        const struct rlimit as = {(rlim_t)cap, (rlim_t)cap};
        setrlimit(RLIMIT_AS, &as);
    }
}

static _Noreturn void child(const char *path, const void *image, uint64_t bytes, int out, unsigned seconds) {
    child_setting(seconds, bytes);
    walker w = {0};
    H5Eset_auto2(H5E_DEFAULT, on_error, &w);
    hid_t f = H5I_INVALID_HID;
    if (path) f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    else {
        const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0 && H5Pset_file_image(fapl, (void *)image, (size_t)bytes) >= 0)
            f = H5Fopen("tpsc-h5-probe-image", H5F_ACC_RDONLY, fapl);
    }
    if (f >= 0) walk_object(&w, f, H5I_FILE); /* the root group, through the file as the loaders use it */
    /* nothing is closed: _exit leaves the host's HDF5 files, inherited open, untouched */
    const char verdict = w.nomem ? FINISHED_NOMEM : FINISHED;
    if (write(out, &verdict, 1) != 1) _exit(1);
    _exit(0);
}

/* ---- the parent ----------------------------------------------------------------------- */

static const char *signal_name(int s) {
    switch (s) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGKILL: return "SIGKILL, maybe out of memory";
    case SIGALRM: return "SIGALRM";
    case SIGSYS: return "SIGSYS";
    case SIGTRAP: return "SIGTRAP";
    default: return NULL;
    }
}

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static pid_t wait_child(pid_t pid, int *status, int flags) {
    pid_t r;
    do r = waitpid(pid, status, flags);
    while (r < 0 && errno == EINTR);
    return r;
}

static h5_probe_verdict run_child(const char *path, const void *image, uint64_t bytes, unsigned seconds, char *problem,
                                  size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) return H5_PROBE_SKIPPED;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC), fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    const pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return H5_PROBE_SKIPPED;
    }
    if (pid == 0) {
        close(fds[0]);
        child(path, image, bytes, fds[1], seconds);
    }
    close(fds[1]);
    /* Wait for the child's byte or its end (the pipe closes); in slices, since a thread of
     * the host that forked meanwhile holds the pipe open too. */
    const int64_t deadline = now_ms() + 1000 * (int64_t)seconds;
    char said = 0;
    int status = 0;
    bool reaped = false, ended = false;
    for (int64_t left; !ended && !reaped && (left = deadline - now_ms()) > 0;) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, left < 200 ? (int)left : 200) > 0) {
            const ssize_t n = read(fds[0], &said, 1);
            ended = n >= 0 || (errno != EINTR && errno != EAGAIN);
        }
        if (!ended) reaped = wait_child(pid, &status, WNOHANG) == pid;
    }
    const bool hung = !ended && !reaped;
    if (hung) kill(pid, SIGKILL);
    if (reaped && !said) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 0) > 0 && read(fds[0], &said, 1) != 1) said = 0;
    }
    /* ECHILD (the host ignores SIGCHLD, or reaped the child itself): the byte alone decides */
    if (!reaped && wait_child(pid, &status, 0) != pid) status = -1;
    close(fds[0]);
    if (!hung && said == FINISHED) return H5_PROBE_CLEAN;
    const char *tail = "the file is damaged or not written by HDF5";
    if (hung) {
        snprintf(problem, cap, "corrupt HDF5 metadata: libhdf5 did not finish reading it in %u s; %s", seconds, tail);
        return H5_PROBE_HUNG;
    }
    if (said == FINISHED_NOMEM) {
        snprintf(problem, cap, "corrupt HDF5 metadata: libhdf5 asked for more memory than the file can justify; %s", tail);
        return H5_PROBE_NOMEM;
    }
    char how[48] = "";
    if (status != -1 && WIFSIGNALED(status)) {
        const char *name = signal_name(WTERMSIG(status));
        if (name) snprintf(how, sizeof how, " (%s)", name);
        else snprintf(how, sizeof how, " (signal %d)", WTERMSIG(status));
    } else if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == SANITIZER_EXIT) {
        snprintf(how, sizeof how, " (a memory error)");
    } else if (status != -1 && WIFEXITED(status)) {
        snprintf(how, sizeof how, " (exit status %d)", WEXITSTATUS(status));
    }
    snprintf(problem, cap, "corrupt HDF5 metadata: libhdf5 crashed reading it%s; %s", how, tail);
    return H5_PROBE_CRASHED;
}

/* ---- files that passed ---------------------------------------------------------------- */

/* A file is the same file while its device, inode, size and times are and, when it is at most
 * 1 MB (fuzz inputs, small models), its bytes hash the same. A larger file changed less than
 * 100 ms before the probe started is not remembered: the file system's clock (a tick of the
 * kernel's coarse clock) may not have moved between that change and a next one. */
enum { HASHED_BYTES = 1 << 20, RECENT_NS = 100 * 1000 * 1000 };

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    uint64_t hash; /* FNV-1a of the bytes of a file of at most HASHED_BYTES, else 0 */
} file_key;

static file_key passed[16];
static unsigned passed_n, passed_next;
static pthread_mutex_t passed_lock = PTHREAD_MUTEX_INITIALIZER;

static bool key_of(const char *path, file_key *k) {
    struct stat sb;
    if (stat(path, &sb) != 0) return false;
    *k = (file_key){sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim, sb.st_ctim, 0};
    if (sb.st_size > HASHED_BYTES) return true;
    const int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    uint64_t h = 0xcbf29ce484222325ull;
    unsigned char buf[1 << 14];
    ssize_t n;
    off_t total = 0;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) h = (h ^ buf[i]) * 0x100000001b3ull;
        total += n;
    }
    close(fd);
    k->hash = h;
    return n == 0 && total == sb.st_size;
}

static bool same_key(const file_key *a, const file_key *b) {
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec && a->ctime.tv_sec == b->ctime.tv_sec &&
           a->ctime.tv_nsec == b->ctime.tv_nsec && a->hash == b->hash;
}

static int64_t ns_of(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

static bool has_passed(const file_key *k) {
    bool found = false;
    pthread_mutex_lock(&passed_lock);
    for (unsigned i = 0; i < passed_n && !found; i++) found = same_key(&passed[i], k);
    pthread_mutex_unlock(&passed_lock);
    return found;
}

static void remember(const file_key *k, struct timespec probed_at) {
    const int64_t settled = ns_of(probed_at) - RECENT_NS;
    if (k->size > HASHED_BYTES && (ns_of(k->mtime) > settled || ns_of(k->ctime) > settled)) return;
    pthread_mutex_lock(&passed_lock);
    passed[passed_next] = *k;
    passed_next = (passed_next + 1) % (sizeof passed / sizeof passed[0]);
    if (passed_n < sizeof passed / sizeof passed[0]) passed_n++;
    pthread_mutex_unlock(&passed_lock);
}

void h5_probe_forget(void) {
    pthread_mutex_lock(&passed_lock);
    passed_n = passed_next = 0;
    pthread_mutex_unlock(&passed_lock);
}

h5_probe_verdict h5_probe(const char *path, const void *image, uint64_t bytes, char *problem, size_t cap) {
    if (cap) problem[0] = '\0';
    unsigned seconds;
    if (!probe_seconds(&seconds, problem, cap)) return H5_PROBE_BAD_SETTING;
    if (!path) return run_child(NULL, image, bytes, seconds, problem, cap);
    file_key before, after;
    const bool keyed = key_of(path, &before);
    if (keyed && has_passed(&before)) return H5_PROBE_CLEAN;
    struct timespec probed_at;
    clock_gettime(CLOCK_REALTIME, &probed_at);
    const h5_probe_verdict v = run_child(path, NULL, bytes, seconds, problem, cap);
    if (v == H5_PROBE_CLEAN && keyed && key_of(path, &after) && same_key(&before, &after)) remember(&before, probed_at);
    return v;
}

h5_file_check h5_file_vet(const char *path, bool probe, h5_file_facts *facts) {
    const h5_file_check c = h5_file_precheck(path, facts);
    if (c != H5_FILE_OK || !probe || !h5_probe_enabled()) return c;
    const h5_probe_verdict v = h5_probe(path, NULL, facts->bytes, facts->problem, sizeof facts->problem);
    return v == H5_PROBE_CLEAN || v == H5_PROBE_SKIPPED ? H5_FILE_OK
           : v == H5_PROBE_BAD_SETTING                  ? H5_FILE_BAD_SETTING
                                                        : H5_FILE_BAD_METADATA;
}
