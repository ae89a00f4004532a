/* A sweep's state: the --grid specs (one per line), a point's done.json (after a line
 * "--done") and its lock file (after a line "--lock"). The grid is checked against the default
 * recipe as `tpsc sweep` does before its first run; done.json is read with that grid's keys;
 * the lock is taken (or left to its live holder) and released. */
#include "tests/fuzz/fuzz_common.h"

#include <sys/stat.h>

#include "src/sweep/lock.h"
#include "src/sweep/results.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t grid_len, rest_len, done_len, lock_len;
    const uint8_t *rest, *lock;
    fuzz_split(data, size, "\n--done\n", &grid_len, &rest, &rest_len);
    fuzz_split(rest, rest_len, "\n--lock\n", &done_len, &lock, &lock_len);

    static tpsc_sweep_grid g;
    static tpsc_recipe base;
    memset(&g, 0, sizeof g);
    char *specs = fuzz_cstr(data, grid_len);
    for (char *line = strtok(specs, "\n"); line; line = strtok(NULL, "\n"))
        if (tpsc_grid_add(&g, line) != TPSC_OK) break;
    free(specs);
    tpsc_recipe_defaults(&base);
    tpsc_grid_check(&g, &base, NULL);

    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/point", fuzz_tmpdir());
    mkdir(dir, 0755);
    fuzz_write("point/done.json", rest, done_len, path, sizeof path);
    tpsc_sweep_row row;
    tpsc_sweep_read_done(dir, &g, &row);

    if (lock_len) {
        fuzz_write("point/lock", lock, lock_len, path, sizeof path);
        bool taken = false;
        if (tpsc_sweep_lock(dir, &taken) == TPSC_OK && taken) tpsc_sweep_unlock(dir);
        unlink(path);
    }
    tpsc_clear_error();
    return 0;
}
