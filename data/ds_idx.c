/* MNIST-style IDX files (gzip-compressed or plain: zlib's gzread reads both), decoded once
 * into memory at open: images uint8 [N, H, W] (C = 1), labels uint8 [N]. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "data/dataset.h"
#include "src/util/alloc.h"

typedef struct idx_data {
    uint8_t *pixels; /* [N, H, W] */
    int height, width;
    char images_path[TPSC_DATA_PATH_MAX];
} idx_data;

/* Reads exactly n bytes or fails naming the file: short = truncated, -1 = corrupt gzip. */
static tpsc_status read_exact(gzFile f, const char *path, void *dst, size_t n, const char *what) {
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done > (1u << 30) ? (1u << 30) : n - done;
        int got = gzread(f, (uint8_t *)dst + done, (unsigned)chunk);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            return tpsc_fail(TPSC_ERR_FORMAT, "%s: corrupt while reading %s: %s", path, what, msg);
        }
        if (got == 0)
            return tpsc_fail(TPSC_ERR_FORMAT, "%s: truncated: %s needs %zu bytes, file ends after %zu", path, what,
                             n, done);
        done += (size_t)got;
    }
    return TPSC_OK;
}

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Opens an IDX file of unsigned bytes with `ndims` dimensions, reads its dims and its data. */
static tpsc_status read_idx(const char *path, int ndims, uint32_t dims[3], uint8_t **data) {
    *data = NULL;
    gzFile f = gzopen(path, "rb");
    if (!f) return tpsc_fail(TPSC_ERR_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
    uint8_t head[16];
    uint32_t want_magic = 0x800u | (uint32_t)ndims;
    tpsc_status st = read_exact(f, path, head, 4 + 4 * (size_t)ndims, "the IDX header");
    if (st == TPSC_OK && be32(head) != want_magic)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: wrong IDX magic 0x%08x, expected 0x%08x (unsigned byte, %d dims)", path,
                       be32(head), want_magic, ndims);
    uint64_t total = 1;
    if (st == TPSC_OK) {
        for (int d = 0; d < ndims; d++) {
            dims[d] = be32(head + 4 + 4 * d);
            total *= dims[d];
            if (total > ((uint64_t)1 << 40)) break; /* stop before three 32-bit factors wrap 64 bits */
        }
        if (total > ((uint64_t)1 << 40))
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: IDX header claims more than 2^40 bytes of data", path);
        else if (total == 0) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: IDX file holds no data", path);
        else if (ndims == 3 && (dims[1] > 65536 || dims[2] > 65536))
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: IDX images of %ux%u pixels (at most 65536 per side)", path, dims[1],
                           dims[2]);
    }
    /* The buffer grows with the data actually read, so a header claiming more than the file
     * holds is a "truncated" error after reading the file, never an allocation of its claim. */
    size_t have = 0, cap = 0;
    while (st == TPSC_OK && have < total) {
        size_t want = cap ? cap * 2 : (size_t)1 << 20;
        if (want > total) want = (size_t)total;
        uint8_t *p = tpsc_realloc(*data, want, path);
        if (!p) {
            st = TPSC_ERR_NOMEM;
            break;
        }
        *data = p;
        cap = want;
        st = read_exact(f, path, *data + have, cap - have, "the IDX data");
        if (st == TPSC_ERR_FORMAT && strstr(tpsc_last_error(), "truncated"))
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: truncated: the header says %llu bytes of data, the file holds less",
                           path, (unsigned long long)total);
        have = cap;
    }
    gzclose(f);
    if (st != TPSC_OK) {
        tpsc_free(*data);
        *data = NULL;
    }
    return st;
}

static tpsc_status idx_get(const tpsc_dataset *ds, size_t i, tpsc_decode_scratch *s, tpsc_image_view *out) {
    const idx_data *d = ds->impl;
    size_t plane = (size_t)d->height * (size_t)d->width;
    *out = (tpsc_image_view){.u8 = d->pixels + i * plane, .width = d->width, .height = d->height, .channels = 1};
    return TPSC_OK;
}

static void idx_name(const tpsc_dataset *ds, size_t i, char *buf, size_t n) {
    const idx_data *d = ds->impl;
    snprintf(buf, n, "%s[%zu]", d->images_path, i);
}

static void idx_close(tpsc_dataset *ds) {
    idx_data *d = ds->impl;
    if (d) tpsc_free(d->pixels);
    tpsc_free(d);
    tpsc_dataset_free_common(ds);
}

static const tpsc_dataset_ops idx_ops = {idx_get, idx_name, idx_close};

tpsc_status tpsc_dataset_open_idx(tpsc_dataset **out, const char *images_path, const char *labels_path) {
    *out = NULL;
    tpsc_dataset *ds;
    TPSC_TRY(tpsc_dataset_alloc(&ds, &idx_ops, images_path, sizeof(idx_data), "idx dataset"));
    idx_data *d = ds->impl;
    snprintf(d->images_path, sizeof d->images_path, "%s", images_path);

    uint32_t idims[3] = {0}, ldims[3] = {0};
    uint8_t *raw_labels = NULL;
    tpsc_status st = read_idx(images_path, 3, idims, &d->pixels);
    if (st == TPSC_OK) st = read_idx(labels_path, 1, ldims, &raw_labels);
    if (st == TPSC_OK && ldims[0] != idims[0])
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: %u labels but %s has %u images", labels_path, ldims[0], images_path,
                       idims[0]);
    if (st == TPSC_OK) {
        ds->count = idims[0];
        d->height = (int)idims[1];
        d->width = (int)idims[2];
        ds->labels = tpsc_malloc(ds->count * sizeof *ds->labels, "idx labels");
        if (!ds->labels) st = TPSC_ERR_NOMEM;
    }
    if (st == TPSC_OK) {
        int max_label = 0;
        for (size_t i = 0; i < ds->count; i++) {
            ds->labels[i] = raw_labels[i];
            if (raw_labels[i] > max_label) max_label = raw_labels[i];
        }
        st = tpsc_dataset_set_classes(ds, (size_t)max_label + 1, NULL);
    }
    tpsc_free(raw_labels);
    if (st != TPSC_OK) {
        idx_close(ds);
        return st;
    }
    *out = ds;
    return TPSC_OK;
}
