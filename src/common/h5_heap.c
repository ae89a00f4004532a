#include "src/common/h5_heap.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int read_at(int fd, unsigned char *buf, size_t n, uint64_t at) {
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(fd, buf + done, n - done, (off_t)(at + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        done += (size_t)got;
    }
    return 0;
}

enum { OBJ_HEADER = 16, MIN_COLLECTION = 4096 };

/* Whether the collection at `off` (its size field read) is what HDF5's walk can handle: inside
 * the file, at least the smallest collection HDF5 writes, objects (header + data padded to 8)
 * ending inside it, the free-space object (index 0) never empty. */
static int collection_ok(int fd, uint64_t file_bytes, uint64_t off, uint64_t size) {
    if (size < MIN_COLLECTION || size > file_bytes - off) return 0;
    uint64_t p = OBJ_HEADER; /* the collection's own header: signature, version, 3 reserved, size */
    unsigned char h[OBJ_HEADER];
    while (p + OBJ_HEADER <= size) { /* a tail shorter than a header is free space */
        if (read_at(fd, h, sizeof h, off + p) != 0) return -1;
        uint64_t index = le(h, 2), obj = le(h + 8, 8), need;
        if (index == 0) need = obj; /* free space: its size counts its header */
        else if (obj > size) return 0;
        else need = OBJ_HEADER + ((obj + 7) & ~(uint64_t)7);
        if (need == 0 || need > size - p) return 0;
        p += need;
    }
    return 1;
}

int h5_heap_find_corrupt(int fd, uint64_t file_bytes, uint64_t *where) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char sb[16];
    if (file_bytes < sizeof sb) return 0;
    if (read_at(fd, sb, sizeof sb, 0) != 0) return -1;
    if (memcmp(sb, sig, 8) != 0) return 0; /* a user block: not our files; HDF5 decides */
    /* the size of lengths: byte 14 of superblock versions 0 and 1, byte 10 of 2 and 3 */
    int lengths = sb[8] <= 1 ? sb[14] : sb[10];
    if (lengths != 8) return 0;
    enum { CHUNK = 1 << 16, KEEP = 15 };
    unsigned char buf[CHUNK + KEEP];
    size_t carry = 0;
    for (uint64_t pos = 0; pos < file_bytes;) {
        size_t want = file_bytes - pos < CHUNK ? (size_t)(file_bytes - pos) : CHUNK;
        if (read_at(fd, buf + carry, want, pos) != 0) return -1;
        size_t len = carry + want;
        uint64_t base = pos - carry; /* the file offset of buf[0] */
        for (size_t i = 0; i + 16 <= len; i++) {
            const unsigned char *g = memchr(buf + i, 'G', len - 15 - i); /* the scan's hot loop */
            if (!g) break;
            i = (size_t)(g - buf);
            if (memcmp(buf + i, "GCOL\1\0\0\0", 8) != 0) continue;
            int ok = collection_ok(fd, file_bytes, base + i, le(buf + i + 8, 8));
            if (ok < 0) return -1;
            if (!ok) {
                *where = base + i;
                return 1;
            }
        }
        carry = len < KEEP ? len : KEEP;
        memmove(buf, buf + len - carry, carry);
        pos += want;
    }
    return 0;
}
