#include "support/files.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

char *tfile_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0, "%s: cannot seek", path);
    const long size = ftell(f);
    cr_assert_geq(size, 0, "%s: cannot tell its size", path);
    rewind(f);
    char *buf = malloc((size_t)size + 1);
    cr_assert_not_null(buf, "%s: %ld bytes", path, size);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size, "%s: short read", path);
    buf[size] = '\0';
    fclose(f);
    if (len) *len = (size_t)size;
    return buf;
}
