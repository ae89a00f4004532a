/* What every harness shares: a private temporary folder (the parsers under test read files,
 * so each input is written to one), quiet logging, and a way to split one input in parts. */
#ifndef TPSC_FUZZ_COMMON_H
#define TPSC_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/util/log.h"
#include "src/util/status.h"

static char fuzz_dir[256];

static inline void fuzz_remove_dir(void) {
    if (!fuzz_dir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: cannot remove %s\n", fuzz_dir);
}

/* The folder, created on first use and removed at exit. */
static inline const char *fuzz_tmpdir(void) {
    if (fuzz_dir[0]) return fuzz_dir;
    const char *base = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/tpsc-fuzz-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(fuzz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_remove_dir);
    tpsc_log_set_level(TPSC_LOG_QUIET); /* the parsers' warnings would flood the output */
    return fuzz_dir;
}

/* Writes data to <tmpdir>/<name> and returns the path (a static buffer per call site's name). */
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t size, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", fuzz_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* Splits the input at the first occurrence of sep: [data, at) and [at + len(sep), end).
 * Without sep the second part is empty. */
static inline void fuzz_split(const uint8_t *data, size_t size, const char *sep, size_t *first_len, const uint8_t **rest,
                       size_t *rest_len) {
    size_t k = strlen(sep);
    for (size_t i = 0; i + k <= size; i++)
        if (memcmp(data + i, sep, k) == 0) {
            *first_len = i;
            *rest = data + i + k;
            *rest_len = size - i - k;
            return;
        }
    *first_len = size;
    *rest = data + size;
    *rest_len = 0;
}

/* A NUL-terminated copy (free it). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
