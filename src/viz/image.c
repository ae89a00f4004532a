/* Decode + eval transform of one image file, and folder listing, for `tpsc visualize`. */
#include "src/viz/image.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/transforms.h"
#include "src/util/alloc.h"

tpsc_status tpsc_viz_load_image(const char *path, const tpsc_augment_config *aug, int channels, int size, float *chw,
                                uint8_t *display_rgb) {
    if (channels != 1 && channels != 3)
        return tpsc_fail(TPSC_ERR_ARG, "visualize: models with %d input channels are not drawn (1 or 3)", channels);
    /* decoded to RGB whatever the model takes: the display shows colour, the transform picks */
    tpsc_decode_scratch decoded = {0};
    tpsc_image_view view;
    tpsc_status st = tpsc_image_decode_file(path, 3, &decoded, &view);
    if (st != TPSC_OK) {
        tpsc_decode_scratch_free(&decoded);
        return st;
    }
    tpsc_transform t;
    tpsc_transform_scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    st = tpsc_transform_init(&t, aug, false, channels, size, 0);
    if (st == TPSC_OK) st = tpsc_transform_apply(&t, &view, 0, 0, &scratch, chw);
    tpsc_transform_scratch_free(&scratch);
    tpsc_decode_scratch_free(&decoded);
    if (st != TPSC_OK) {
        tpsc_error_context("%s: ", path);
        return st;
    }
    /* undo the normalisation for display: what the model sees, in 0..255 */
    const size_t P = (size_t)size * (size_t)size;
    for (size_t i = 0; i < P; i++)
        for (int c = 0; c < 3; c++) {
            const int src = channels == 1 ? 0 : c;
            float v = (chw[(size_t)src * P + i] * aug->std[src] + aug->mean[src]) * 255.0f;
            v = v < 0 ? 0 : v > 255 ? 255 : v;
            display_rgb[i * 3 + (size_t)c] = (uint8_t)lrintf(v);
        }
    return TPSC_OK;
}

static bool is_image_name(const char *name) {
    static const char *const ext[] = {"png", "jpg", "jpeg", "bmp", "pgm", "ppm", "pnm"};
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return false;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        const char *a = dot + 1, *b = ext[i];
        while (*a && *b && tolower((unsigned char)*a) == *b) a++, b++;
        if (!*a && !*b) return true;
    }
    return false;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void tpsc_viz_free_list(char **paths, int n) {
    for (int i = 0; paths && i < n; i++) tpsc_free(paths[i]);
    tpsc_free(paths);
}

tpsc_status tpsc_viz_list_images(const char *dir, int max, char ***paths, int *n) {
    *paths = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return tpsc_fail(TPSC_ERR_IO, "%s: cannot open the folder: %s", dir, strerror(errno));
    size_t cap = 0, count = 0;
    char **list = NULL;
    tpsc_status st = TPSC_OK;
    for (struct dirent *e; st == TPSC_OK && (e = readdir(d));) {
        if (!is_image_name(e->d_name)) continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **grown = tpsc_calloc(ncap, sizeof *grown, "image list");
            if (!grown) {
                st = TPSC_ERR_NOMEM;
                break;
            }
            if (list) memcpy(grown, list, count * sizeof *list);
            tpsc_free(list);
            list = grown, cap = ncap;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        list[count] = tpsc_malloc(len, "image path");
        if (!list[count]) {
            st = TPSC_ERR_NOMEM;
            break;
        }
        snprintf(list[count], len, "%s/%s", dir, e->d_name);
        count++;
    }
    closedir(d);
    if (st != TPSC_OK) {
        tpsc_viz_free_list(list, (int)count);
        return st;
    }
    if (count == 0) {
        tpsc_free(list);
        return tpsc_fail(TPSC_ERR_MISSING, "%s: no images (png, jpg, jpeg, bmp, pgm, ppm, pnm)", dir);
    }
    qsort(list, count, sizeof *list, cmp_str);
    int keep = max > 0 && (size_t)max < count ? max : (int)count;
    for (size_t i = (size_t)keep; i < count; i++) tpsc_free(list[i]);
    *paths = list;
    *n = keep;
    return TPSC_OK;
}
