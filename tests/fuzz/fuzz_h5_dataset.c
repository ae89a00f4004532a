/* The HDF5 data set reader (images + labels [+ class_names]) on the bytes written to a file. */
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_h5.h"
#include "tests/fuzz/fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write("data.h5", data, size, path, sizeof path);
    tpsc_dataset *ds = NULL;
    tpsc_status st = tpsc_dataset_open_h5(&ds, path);
    fuzz_h5_no_nomem(st == TPSC_ERR_NOMEM, "tpsc_dataset_open_h5", tpsc_last_error());
    if (st == TPSC_OK) {
        fuzz_transform_samples(ds, 4);
        tpsc_dataset_close(ds);
    }
    tpsc_clear_error();
    fuzz_h5_check_closed("tpsc_dataset_open_h5");
    return 0;
}
