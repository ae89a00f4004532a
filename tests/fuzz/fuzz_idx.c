/* The IDX reader (MNIST / Fashion-MNIST, plain or gzip). Input: the images file, then
 * "\n--labels\n", then the labels file. */
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t ilen, llen;
    const uint8_t *labels;
    fuzz_split(data, size, "\n--labels\n", &ilen, &labels, &llen);
    char ipath[512], lpath[512];
    fuzz_write("images-idx3-ubyte", data, ilen, ipath, sizeof ipath);
    fuzz_write("labels-idx1-ubyte", labels, llen, lpath, sizeof lpath);
    tpsc_dataset *ds = NULL;
    if (tpsc_dataset_open_idx(&ds, ipath, lpath) == TPSC_OK) {
        fuzz_transform_samples(ds, 4);
        tpsc_dataset_close(ds);
    }
    tpsc_clear_error();
    return 0;
}
