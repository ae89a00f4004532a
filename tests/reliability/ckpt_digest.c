/* ckpt_digest CHECKPOINT: loads a training checkpoint the way `tpsc train --resume` does (its
 * own recipe, the model built from it, /model strictly, then the optimiser moments, EMA,
 * loader position and counters) and prints
 *     step <S> epoch <E> digest <64-bit FNV-1a of the weights, moments and EMA>
 * so two checkpoints can be compared bit for bit from a shell script. Exit 1 (with the
 * message) when the file does not load. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/io/checkpoint.h"
#include "src/recipe/recipe.h"
#include "src/train/setup.h"
#include "src/util/alloc.h"
#include "src/util/log.h"

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int fail(const char *path) {
    fprintf(stderr, "ckpt_digest: %s: %s\n", path, tpsc_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: ckpt_digest CHECKPOINT.h5\n");
        return 2;
    }
    const char *path = argv[1];
    tpsc_log_set_level(TPSC_LOG_WARN);
    char *text = NULL;
    static tpsc_recipe r;
    if (tpsc_checkpoint_read_recipe(path, &text) != TPSC_OK) return fail(path);
    tpsc_status st = tpsc_recipe_load_string(&r, text, path);
    tpsc_free(text);
    if (st != TPSC_OK) return fail(path);
    r.run.resume[0] = '\0';
    vit_model m = {0};
    if (tpsc_build_model(&r, &m) != TPSC_OK) return fail(path);
    const ag_params *p = &m.params;
    if (tpsc_checkpoint_load_params(path, "/model", &m.params, NULL, NULL) != TPSC_OK) return fail(path);
    float *mom = calloc(3 * p->total, sizeof(float));
    int64_t loader[2] = {0, 0};
    if (!mom) return 1;
    tpsc_checkpoint_state cs = {.opt_m = mom, .opt_v = mom + p->total, .ema = mom + 2 * p->total,
                                .loader_pos = loader, .loader_cap = 2};
    if (tpsc_checkpoint_load_state(path, p, &cs) != TPSC_OK) return fail(path);
    uint64_t h = fnv(p->data, p->total * sizeof(float), 0xcbf29ce484222325ull);
    h = fnv(mom, 3 * p->total * sizeof(float), h);
    h = fnv(loader, sizeof loader, h);
    printf("step %" PRId64 " epoch %" PRId64 " digest %016" PRIx64 "\n", cs.step, cs.epoch, h);
    free(mom);
    vit_model_free(&m);
    return 0;
}
