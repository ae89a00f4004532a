/* The framework's image path: an ImageFolder tree root/a/x.png holding the input, opened as the
 * loader does (file read, completeness check, stb_image decode), then the eval and train
 * transforms (resize, crops, RandAugment). */
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_data.h"

#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char root[512], path[512];
    snprintf(root, sizeof root, "%s/folder", fuzz_tmpdir());
    mkdir(root, 0755);
    snprintf(path, sizeof path, "%s/folder/a", fuzz_tmpdir());
    mkdir(path, 0755);
    fuzz_write("folder/a/x.png", data, size, path, sizeof path);
    tpsc_dataset *ds = NULL;
    if (tpsc_dataset_open_imagefolder(&ds, root, 3) == TPSC_OK) {
        fuzz_transform_samples(ds, 1);
        tpsc_dataset_close(ds);
    }
    tpsc_clear_error();
    return 0;
}
