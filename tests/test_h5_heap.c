/* The global-heap check both engines run before libhdf5 opens a file (src/common/h5_heap.h):
 * valid files written by tpsc pass; a collection whose object overruns it, or whose free space
 * is empty (what makes libhdf5 1.10 copy out of bounds or loop forever), is found; and the
 * inputs the fuzzer found are refused with a message by both readers. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/common/h5_file.h"
#include "src/common/h5_heap.h"
#include "src/infer/tps_infer.h"
#include "src/io/h5util.h"
#include "support/files.h"

#define MODEL TPSC_SOURCE_DIR "/tests/fuzz/corpus/infer_model/dtps_infer.h5"
#define CORPUS TPSC_SOURCE_DIR "/tests/fuzz/corpus/"

/* h5_heap_find_corrupt on bytes, through a temporary file. */
static int check_bytes(const unsigned char *b, size_t n, uint64_t *where) {
    char path[] = "/tmp/tpsc_h5_heap_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, b, n), (ssize_t)n);
    int r = h5_heap_find_corrupt(fd, n, where);
    close(fd);
    unlink(path);
    return r;
}

static size_t find_gcol(const unsigned char *b, size_t n) {
    for (size_t i = 0; i + 8 <= n; i++)
        if (!memcmp(b + i, "GCOL\1\0\0\0", 8)) return i;
    cr_assert_fail("the model file has no global heap collection (no variable-length strings?)");
    return 0;
}

Test(h5_heap, files_written_by_tpsc_pass) {
    size_t n;
    unsigned char *b = (unsigned char *)tfile_read(MODEL, &n);
    uint64_t where = 0;
    cr_assert_eq(check_bytes(b, n, &where), 0, "a valid file flagged at byte %llu", (unsigned long long)where);
    free(b);
}

Test(h5_heap, an_object_overrunning_its_collection_is_found) {
    size_t n;
    unsigned char *b = (unsigned char *)tfile_read(MODEL, &n);
    size_t g = find_gcol(b, n);
    /* the first object's size (8 bytes at +8 of its header, which follows the 16-byte
     * collection header): past the collection */
    for (int i = 0; i < 8; i++) b[g + 16 + 8 + i] = i == 3 ? 0x10 : 0;
    uint64_t where = 0;
    cr_assert_eq(check_bytes(b, n, &where), 1);
    cr_assert_eq(where, g);
    free(b);
}

Test(h5_heap, an_empty_free_space_object_is_found) {
    size_t n;
    unsigned char *b = (unsigned char *)tfile_read(MODEL, &n);
    size_t g = find_gcol(b, n);
    /* the first object becomes the free-space object (index 0) of size 0: libhdf5 loops */
    memset(b + g + 16, 0, 2);
    memset(b + g + 16 + 8, 0, 8);
    uint64_t where = 0;
    cr_assert_eq(check_bytes(b, n, &where), 1);
    free(b);
}

Test(h5_heap, fuzzed_files_are_refused_by_both_engines) {
    const char *names[] = {"infer_model/regress-libhdf5-hang-H5HG__protect-vlen-attribute",
                           "infer_model/regress-libhdf5-negative-size-H5HG_read-vlen-attribute",
                           "h5_dataset/regress-libhdf5-overlap-H5HG_read-vlen-class-names"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s%s", CORPUS, names[i]);
        tps_model *m = NULL;
        cr_assert_eq(tps_model_open(path, &m), TPS_ERR_FORMAT, "%s", path);
        cr_assert(strstr(tps_last_error(), "string heap") && strstr(tps_last_error(), names[i]), "%s", tps_last_error());
        tpsc_h5 f;
        cr_assert_eq(tpsc_h5_open_read(&f, path), TPSC_ERR_FORMAT, "%s", path);
        cr_assert(strstr(tpsc_last_error(), "string heap"), "%s", tpsc_last_error());
    }
}

/* Writes n bytes of b after `pad` zero bytes (a user block when pad is 512) to a new file. */
static void write_padded(const char *path, const unsigned char *b, size_t n, size_t pad) {
    FILE *fp = fopen(path, "wb");
    cr_assert(fp);
    for (size_t i = 0; i < pad; i++) cr_assert_eq(fputc(0, fp), 0);
    cr_assert_eq(fwrite(b, 1, n, fp), n);
    cr_assert_eq(fclose(fp), 0);
}

/* h5_file_precheck's verdicts on one file each; the folder and the missing file are I/O
 * errors, the others format errors. */
Test(h5_file, every_verdict_of_the_precheck) {
    size_t n;
    unsigned char *b = (unsigned char *)tfile_read(MODEL, &n);
    char dir[] = "/tmp/tpsc_h5_file_XXXXXX", path[64];
    cr_assert(mkdtemp(dir));
    h5_file_facts facts;

    snprintf(path, sizeof path, "%s/model.h5", dir);
    write_padded(path, b, n, 0);
    cr_assert_eq(h5_file_precheck(path, &facts), H5_FILE_OK, "%s", facts.problem);
    cr_assert_eq(facts.bytes, n);
    write_padded(path, b, n, 512); /* the signature after a 512-byte user block still counts */
    cr_assert_eq(h5_file_precheck(path, &facts), H5_FILE_OK, "%s", facts.problem);
    write_padded(path, b, n, 100); /* but not at an offset HDF5 never looks at */
    cr_assert_eq(h5_file_precheck(path, &facts), H5_FILE_NOT_HDF5);
    cr_assert_str_eq(facts.problem, "not an HDF5 file");
    cr_assert(h5_file_check_is_format(H5_FILE_NOT_HDF5));

    cr_assert_eq(h5_file_precheck(dir, &facts), H5_FILE_IS_FOLDER);
    cr_assert(!h5_file_check_is_format(H5_FILE_IS_FOLDER));
    snprintf(path, sizeof path, "%s/missing.h5", dir);
    cr_assert_eq(h5_file_precheck(path, &facts), H5_FILE_MISSING);
    cr_assert(strstr(facts.problem, "cannot open: No such file"), "%s", facts.problem);

    unsigned char *bad = malloc(n);
    cr_assert(bad);
    memcpy(bad, b, n);
    size_t at = find_gcol(bad, n);
    for (int i = 0; i < 8; i++) bad[at + 16 + 8 + i] = i == 3 ? 0x10 : 0; /* as above: past the collection */
    snprintf(path, sizeof path, "%s/bad.h5", dir);
    write_padded(path, bad, n, 0);
    cr_assert_eq(h5_file_precheck(path, &facts), H5_FILE_BAD_HEAP);
    cr_assert(strstr(facts.problem, "string heap at byte"), "%s", facts.problem);

    /* Both engines refuse it with the shared message. */
    tps_model *m = NULL;
    cr_assert_eq(tps_model_open(path, &m), TPS_ERR_FORMAT);
    cr_assert(strstr(tps_last_error(), facts.problem), "%s", tps_last_error());
    tpsc_h5 f;
    cr_assert_eq(tpsc_h5_open_read(&f, path), TPSC_ERR_FORMAT);
    cr_assert(strstr(tpsc_last_error(), facts.problem), "%s", tpsc_last_error());

    unlink(path);
    snprintf(path, sizeof path, "%s/model.h5", dir);
    unlink(path);
    rmdir(dir);
    free(bad);
    free(b);
}
