/* The checks before libhdf5 opens a file (h5_file.h). */
#include "src/common/h5_file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "src/common/h5_heap.h"

/* The 8-byte signature at offset 0, or at 512, 1024, 2048, ... after a user block. */
static bool has_hdf5_signature(FILE *fp) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char buf[8];
    for (long off = 0; off >= 0 && off < (1L << 30); off = off ? off * 2 : 512) {
        if (fseek(fp, off, SEEK_SET) != 0 || fread(buf, 1, 8, fp) != 8) return false;
        if (memcmp(buf, sig, 8) == 0) return true;
    }
    return false;
}

/* The check's verdict, with the problem written into facts. */
static h5_file_check found(h5_file_check c, int err, uint64_t heap_at, h5_file_facts *facts) {
    char *buf = facts->problem;
    const size_t cap = sizeof facts->problem;
    switch (c) {
    case H5_FILE_OK: buf[0] = '\0'; break;
    case H5_FILE_MISSING:
    case H5_FILE_UNOPENED: snprintf(buf, cap, "cannot open: %s", strerror(err)); break;
    case H5_FILE_IS_FOLDER: snprintf(buf, cap, "is a directory, not a file"); break;
    case H5_FILE_NOT_HDF5: snprintf(buf, cap, "not an HDF5 file"); break;
    case H5_FILE_UNREADABLE: snprintf(buf, cap, "cannot read: %s", strerror(err)); break;
    case H5_FILE_BAD_HEAP:
        snprintf(buf, cap, "damaged HDF5 file: the string heap at byte %llu is corrupt", (unsigned long long)heap_at);
        break;
    case H5_FILE_BAD_METADATA:
    case H5_FILE_BAD_SETTING: break; /* h5_probe writes its own */
    }
    return c;
}

h5_file_check h5_file_precheck(const char *path, h5_file_facts *facts) {
    facts->bytes = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return found(H5_FILE_MISSING, errno, 0, facts);
    if (S_ISDIR(sb.st_mode)) return found(H5_FILE_IS_FOLDER, 0, 0, facts);
    facts->bytes = (uint64_t)sb.st_size;
    FILE *fp = fopen(path, "rb");
    if (!fp) return found(H5_FILE_UNOPENED, errno, 0, facts);
    uint64_t heap_at = 0;
    const bool h5 = has_hdf5_signature(fp);
    const int heap = h5 ? h5_heap_find_corrupt(fileno(fp), facts->bytes, &heap_at) : 0;
    const int err = errno;
    fclose(fp);
    if (!h5) return found(H5_FILE_NOT_HDF5, 0, 0, facts);
    if (heap < 0) return found(H5_FILE_UNREADABLE, err, 0, facts);
    /* libhdf5 would crash or hang on a corrupt heap (h5_heap.h) */
    return found(heap > 0 ? H5_FILE_BAD_HEAP : H5_FILE_OK, 0, heap_at, facts);
}

bool h5_file_check_is_format(h5_file_check c) {
    return c == H5_FILE_NOT_HDF5 || c == H5_FILE_BAD_HEAP || c == H5_FILE_BAD_METADATA;
}
