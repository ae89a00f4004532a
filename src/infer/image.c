/* Decoding image files and the eval preprocessing (timm / DeiT): resize the short side to
 * floor(S / crop_pct), centre-crop S x S, x / 255, (x - mean) / std. The crop is taken as a
 * source box and resized in one step (stb_image_resize, Catmull-Rom for bicubic), as the
 * training framework's data pipeline does (data/geometry.c).
 *
 * stb is compiled here with static linkage, so this library's copy never clashes with an
 * application's own stb. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_check.h"
#include "data/stb_alloc_guard.h"
#include "src/common/crop.h"
#include "src/infer/internal.h"

/* Growable scratch for preprocessing (see ti_scratch in internal.h): stb_image_resize's work
 * memory comes from it, so preprocessing through a workspace allocates nothing once warm. A
 * NULL context (tps_preprocess without a workspace) falls back to malloc/free. */
static void *resize_alloc(ti_scratch *s, size_t bytes) {
    if (!s) return malloc(bytes);
    return ti_scratch_get(s, bytes);
}
#define STBIR_MALLOC(size, c) resize_alloc((ti_scratch *)(c), (size))
#define STBIR_FREE(ptr, c) ((c) ? (void)0 : free(ptr))
TPSC_STB_ALLOC_GUARD(static, ti_stb_set_cap)
#define STB_IMAGE_STATIC
#define STB_IMAGE_RESIZE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include "data/stb_formats.h"
#define STBI_FAILURE_USERMSG
#include "data/stb_quiet_begin.h"
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
/* no pop: stb's unused static declarations are reported at the end of the file */

tps_status tps_image_load(const char *path, uint8_t **pixels, int *width, int *height) {
    if (pixels) *pixels = NULL;
    if (!path || !pixels || !width || !height) return ti_fail(TPS_ERR_ARG, "tps_image_load: NULL argument");
    FILE *fp = fopen(path, "rb");
    if (!fp) return ti_fail(TPS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* the whole file first, so its size bounds what the header may claim (data/image_check.h) */
    long size = -1;
    if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return ti_fail(TPS_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    }
    if (size == 0 || size > INT32_MAX) {
        fclose(fp);
        return ti_fail(TPS_ERR_DECODE, "%s: %s (%ld bytes)", path, size ? "file too large" : "empty file", size);
    }
    uint8_t *file = malloc((size_t)size);
    if (!file) {
        fclose(fp);
        return ti_fail(TPS_ERR_NOMEM, "%s: no memory for %ld bytes", path, size);
    }
    size_t got = fread(file, 1, (size_t)size, fp);
    fclose(fp);
    if (got != (size_t)size) {
        free(file);
        return ti_fail(TPS_ERR_IO, "%s: read failed (%zu of %ld bytes)", path, got, size);
    }
    int w = 0, h = 0, c = 0;
    char why[160];
    /* the JPEG check first: stb_image parses the tables it guards already to read the size */
    const char *bad = tpsc_image_check_jpeg_tables(file, (size_t)size, why, sizeof why);
    if (!bad) bad = tpsc_image_check_pnm_length(file, (size_t)size, why, sizeof why);
    if (!bad) bad = tpsc_image_check_pnm_16bit(file, (size_t)size, 3, why, sizeof why);
    if (!bad && !stbi_info_from_memory(file, (int)size, &w, &h, &c)) bad = stbi_failure_reason();
    if (!bad) bad = tpsc_image_check_dims(w, h, 3, (size_t)size, why, sizeof why);
    uint8_t *p = NULL;
    if (!bad) {
        ti_stb_set_cap(TPSC_STB_DECODE_CAP(w, h));
        p = stbi_load_from_memory(file, (int)size, &w, &h, &c, 3);
        ti_stb_set_cap((size_t)-1);
    }
    free(file);
    if (bad) return ti_fail(TPS_ERR_DECODE, "%s: cannot decode the image (%s)", path, bad);
    if (!p) return ti_fail(TPS_ERR_DECODE, "%s: cannot decode the image (%s)", path, stbi_failure_reason());
    if (w < 1 || h < 1) {
        stbi_image_free(p);
        return ti_fail(TPS_ERR_DECODE, "%s: empty image", path);
    }
    *pixels = p, *width = w, *height = h;
    return TPS_OK;
}

void tps_image_free(uint8_t *pixels) { stbi_image_free(pixels); }


void *ti_scratch_get(ti_scratch *s, size_t bytes) {
    if (bytes <= s->cap) return s->p;
    void *p = realloc(s->p, bytes);
    if (!p) return NULL;
    s->p = p;
    s->cap = bytes;
    return p;
}

tps_status ti_preprocess(const tps_model *m, const uint8_t *pixels, int width, int height, float *out,
                         ti_scratch *resized_buf, ti_scratch *resize_work) {
    if (!m || !pixels || !out) return ti_fail(TPS_ERR_ARG, "tps_preprocess: NULL argument");
    if (width < 1 || height < 1 || width > (1 << 15) || height > (1 << 15))
        return ti_fail(TPS_ERR_ARG, "tps_preprocess: image size %dx%d", width, height);
    if (m->in_chans != 3 && m->in_chans != 1)
        return ti_fail(TPS_ERR_ARG, "tps_preprocess: the model takes %zu channels (RGB input needs 1 or 3)", m->in_chans);
    const int S = (int)m->img;
    const tps_model_info *in = &m->info;
    float box[4];
    crop_eval_box(width, height, S, in->crop_pct, box);
    uint8_t *resized = resized_buf ? ti_scratch_get(resized_buf, (size_t)S * S * 3) : malloc((size_t)S * S * 3);
    if (!resized) return ti_fail(TPS_ERR_NOMEM, "tps_preprocess: no memory for a %dx%d image", S, S);
    const stbir_filter filter = strcmp(in->interpolation, "bilinear") == 0 ? STBIR_FILTER_TRIANGLE : STBIR_FILTER_CATMULLROM;
    int ok = stbir_resize_region(pixels, width, height, 0, resized, S, S, 0, STBIR_TYPE_UINT8, 3, STBIR_ALPHA_CHANNEL_NONE,
                                 0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP, filter, filter, STBIR_COLORSPACE_LINEAR, resize_work,
                                 box[0] / width, box[1] / height, (box[0] + box[2]) / width, (box[1] + box[3]) / height);
    if (!ok) {
        if (!resized_buf) free(resized);
        return ti_fail(TPS_ERR_INTERNAL, "tps_preprocess: resizing %dx%d to %dx%d failed", width, height, S, S);
    }
    const size_t plane = (size_t)S * S;
    for (size_t c = 0; c < m->in_chans; c++) {
        const float mean = in->mean[c], inv_std = 1.0f / in->std[c];
        float *dst = out + c * plane;
        for (size_t p = 0; p < plane; p++) {
            const uint8_t *px = resized + p * 3;
            /* one channel: ITU-R 601 luminance, as PIL's convert("L") */
            float v = m->in_chans == 3 ? (float)px[c] : 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2];
            dst[p] = (v * (1.0f / 255.0f) - mean) * inv_std;
        }
    }
    if (!resized_buf) free(resized);
    return TPS_OK;
}

tps_status tps_preprocess(const tps_model *m, const uint8_t *pixels, int width, int height, float *out) {
    if (!m || !pixels || !out) return ti_fail(TPS_ERR_ARG, "tps_preprocess: NULL argument");
    return ti_preprocess(m, pixels, width, height, out, NULL, NULL);
}
