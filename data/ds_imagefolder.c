/* ImageNet's root/<class>/<img> layout, as torchvision's ImageFolder reads it: classes are
 * the sorted sub-folder names, files are found recursively and ordered by (folder path,
 * file name). Images are decoded per sample with stb_image (JPEG, PNG, BMP, PPM/PGM).
 *
 * stb_image is lenient with damaged files (a truncated JPEG decodes to grey), so before
 * decoding we check the file's signature and its end marker, to name bad files rather than
 * train on garbage. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <stb/stb_image.h>

#include "data/dataset.h"
#include "data/image_check.h"
#include "data/stb_alloc_guard.h"
#include "src/util/alloc.h"

typedef struct folder_data {
    char **paths; /* [N] */
    int channels;
} folder_data;

typedef struct name_list {
    char **items;
    size_t n, cap;
} name_list;

static tpsc_status list_push(name_list *l, const char *s) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **items = tpsc_realloc(l->items, cap * sizeof *items, "file list");
        if (!items) return TPSC_ERR_NOMEM;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n] = tpsc_strdup(s);
    if (!l->items[l->n]) return TPSC_ERR_NOMEM;
    l->n++;
    return TPSC_OK;
}

static void list_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++) tpsc_free(l->items[i]);
    tpsc_free(l->items);
    *l = (name_list){0};
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_image_extension(const char *name) {
    static const char *const exts[] = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm"};
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
        if (strcasecmp(dot, exts[i]) == 0) return true;
    return false;
}

/* Sorted names in `dir` (no "." / ".."), directories or image files as asked. */
static tpsc_status list_dir(const char *dir, bool want_dirs, name_list *out) {
    DIR *d = opendir(dir);
    if (!d) return tpsc_fail(TPSC_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    tpsc_status st = TPSC_OK;
    char path[TPSC_DATA_PATH_MAX];
    while (st == TPSC_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
            st = tpsc_fail(TPSC_ERR_ARG, "%s/%s: path too long", dir, e->d_name);
            break;
        }
        bool d_ = is_dir(path);
        if (want_dirs ? d_ : (!d_ && has_image_extension(e->d_name))) st = list_push(out, e->d_name);
    }
    closedir(d);
    if (st == TPSC_OK && out->n > 1) qsort(out->items, out->n, sizeof *out->items, cmp_str); /* items is NULL when empty */
    return st;
}

/* os.walk order, sorted by folder path, then file name within a folder: collect the
 * folders first, sort their paths, then list each one's files. */
static tpsc_status collect_dirs(const char *dir, name_list *dirs) {
    TPSC_TRY(list_push(dirs, dir));
    name_list subs = {0};
    tpsc_status st = list_dir(dir, true, &subs);
    char path[TPSC_DATA_PATH_MAX];
    for (size_t i = 0; st == TPSC_OK && i < subs.n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs.items[i]);
        st = collect_dirs(path, dirs);
    }
    list_free(&subs);
    return st;
}

static tpsc_status read_file(const char *path, tpsc_decode_scratch *s, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return tpsc_fail(TPSC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    tpsc_status st = TPSC_OK;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) st = tpsc_fail(TPSC_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    if (st == TPSC_OK && (size_t)size + 1 > s->file_cap) {
        size_t cap = (size_t)size + (size_t)size / 2 + 1;
        uint8_t *p = tpsc_realloc(s->file, cap, path);
        if (!p) st = TPSC_ERR_NOMEM;
        else {
            s->file = p;
            s->file_cap = cap;
        }
    }
    if (st == TPSC_OK && size > 0 && fread(s->file, 1, (size_t)size, f) != (size_t)size)
        st = tpsc_fail(TPSC_ERR_IO, "%s: read failed: %s", path, ferror(f) ? strerror(errno) : "short read");
    fclose(f);
    *len = st == TPSC_OK ? (size_t)size : 0;
    return st;
}

/* Signature and end marker: a file cut short lacks JPEG's EOI or PNG's IEND chunk, or is
 * shorter than BMP's header says. */
static tpsc_status check_complete(const char *path, const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
        /* EOI (FF D9) within the last bytes: some writers pad after it, none pad much. */
        size_t from = n > 1024 ? n - 1024 : 2;
        for (size_t i = n - 1; i > from; i--)
            if (b[i - 1] == 0xff && b[i] == 0xd9) return TPSC_OK;
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: truncated JPEG (no end-of-image marker)", path);
    }
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) {
        if (n >= 20 && memcmp(b + n - 8, "IEND", 4) == 0) return TPSC_OK;
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: truncated PNG (no IEND chunk at the end)", path);
    }
    if (n >= 2 && b[0] == 'B' && b[1] == 'M') {
        uint32_t declared = n >= 6 ? (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24 : 0;
        if (n < 26 || declared > n)
            return tpsc_fail(TPSC_ERR_FORMAT, "%s: truncated BMP (%zu bytes, header says %u)", path, n, declared);
        return TPSC_OK;
    }
    if (n >= 2 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) return TPSC_OK;
    if (n == 0) return tpsc_fail(TPSC_ERR_FORMAT, "%s: empty file", path);
    return tpsc_fail(TPSC_ERR_FORMAT, "%s: not a JPEG, PNG, BMP or PPM/PGM image (unknown signature)", path);
}

tpsc_status tpsc_image_decode_file(const char *path, int channels, tpsc_decode_scratch *s, tpsc_image_view *out) {
    size_t len = 0;
    TPSC_TRY(read_file(path, s, &len));
    TPSC_TRY(check_complete(path, s->file, len));
    if (len > (size_t)INT32_MAX) return tpsc_fail(TPSC_ERR_FORMAT, "%s: file too large (%zu bytes)", path, len);
    if (s->pixels) stbi_image_free(s->pixels);
    s->pixels = NULL;
    int w = 0, h = 0, comp = 0;
    char why[160];
    /* the JPEG check first: stb_image parses the tables it guards already to read the size */
    const char *bad = tpsc_image_check_jpeg_tables(s->file, len, why, sizeof why);
    if (!bad) bad = tpsc_image_check_pnm_length(s->file, len, why, sizeof why);
    if (!bad) bad = tpsc_image_check_pnm_16bit(s->file, len, channels, why, sizeof why);
    if (bad) return tpsc_fail(TPSC_ERR_FORMAT, "%s: %s", path, bad);
    if (!stbi_info_from_memory(s->file, (int)len, &w, &h, &comp))
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot decode: %s", path, stbi_failure_reason());
    bad = tpsc_image_check_dims(w, h, channels, len, why, sizeof why);
    if (bad) return tpsc_fail(TPSC_ERR_FORMAT, "%s: %s", path, bad);
    tpsc_stb_set_cap(TPSC_STB_DECODE_CAP(w, h));
    s->pixels = stbi_load_from_memory(s->file, (int)len, &w, &h, &comp, channels);
    tpsc_stb_set_cap((size_t)-1);
    if (!s->pixels) return tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot decode: %s", path, stbi_failure_reason());
    if (w < 1 || h < 1) return tpsc_fail(TPSC_ERR_FORMAT, "%s: decoded to %dx%d pixels", path, w, h);
    *out = (tpsc_image_view){.u8 = s->pixels, .width = w, .height = h, .channels = channels};
    return TPSC_OK;
}

static tpsc_status folder_get(const tpsc_dataset *ds, size_t i, tpsc_decode_scratch *s, tpsc_image_view *out) {
    const folder_data *d = ds->impl;
    return tpsc_image_decode_file(d->paths[i], d->channels, s, out);
}

void tpsc_decode_scratch_free(tpsc_decode_scratch *s) {
    if (s->pixels) stbi_image_free(s->pixels);
    tpsc_free(s->file);
    *s = (tpsc_decode_scratch){0};
}

static void folder_name(const tpsc_dataset *ds, size_t i, char *buf, size_t n) {
    const folder_data *d = ds->impl;
    snprintf(buf, n, "%s", d->paths[i]);
}

static void folder_close(tpsc_dataset *ds) {
    folder_data *d = ds->impl;
    if (d) {
        for (size_t i = 0; d->paths && i < ds->count; i++) tpsc_free(d->paths[i]);
        tpsc_free(d->paths);
        tpsc_free(d);
    }
    tpsc_dataset_free_common(ds);
}

static const tpsc_dataset_ops folder_ops = {folder_get, folder_name, folder_close};

tpsc_status tpsc_dataset_open_imagefolder(tpsc_dataset **out, const char *root, int channels) {
    *out = NULL;
    if (channels != 1 && channels != 3)
        return tpsc_fail(TPSC_ERR_CONFIG, "data: channels = %d, expected 1 or 3", channels);
    tpsc_dataset *ds;
    TPSC_TRY(tpsc_dataset_alloc(&ds, &folder_ops, root, sizeof(folder_data), "imagefolder dataset"));
    folder_data *d = ds->impl;
    d->channels = channels;

    name_list classes = {0}, files = {0}, labels_tmp = {0};
    int32_t *labels = NULL;
    size_t n_labels = 0, cap_labels = 0;
    tpsc_status st = list_dir(root, true, &classes);
    if (st == TPSC_OK && classes.n == 0) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: no class folders", root);
    char path[TPSC_DATA_PATH_MAX];
    for (size_t k = 0; st == TPSC_OK && k < classes.n; k++) {
        name_list dirs = {0};
        snprintf(path, sizeof path, "%s/%s", root, classes.items[k]);
        st = collect_dirs(path, &dirs);
        if (st == TPSC_OK) qsort(dirs.items, dirs.n, sizeof *dirs.items, cmp_str);
        for (size_t di = 0; st == TPSC_OK && di < dirs.n; di++) {
            name_list names = {0};
            st = list_dir(dirs.items[di], false, &names);
            for (size_t f = 0; st == TPSC_OK && f < names.n; f++) {
                char file[TPSC_DATA_PATH_MAX];
                if (snprintf(file, sizeof file, "%s/%s", dirs.items[di], names.items[f]) >= (int)sizeof file)
                    st = tpsc_fail(TPSC_ERR_ARG, "%s/%s: path too long", dirs.items[di], names.items[f]);
                if (st == TPSC_OK) st = list_push(&files, file);
                if (st == TPSC_OK && n_labels == cap_labels) {
                    cap_labels = cap_labels ? 2 * cap_labels : 256;
                    int32_t *p = tpsc_realloc(labels, cap_labels * sizeof *labels, "imagefolder labels");
                    if (!p) st = TPSC_ERR_NOMEM;
                    else labels = p;
                }
                if (st == TPSC_OK) labels[n_labels++] = (int32_t)k;
            }
            list_free(&names);
        }
        list_free(&dirs);
    }
    if (st == TPSC_OK && files.n == 0) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: no JPEG/PNG/BMP images in the class folders", root);
    if (st == TPSC_OK) st = tpsc_dataset_set_classes(ds, classes.n, (const char *const *)classes.items);
    list_free(&classes);
    list_free(&labels_tmp);
    if (st != TPSC_OK) {
        list_free(&files);
        tpsc_free(labels);
        folder_close(ds);
        return st;
    }
    d->paths = files.items; /* the list's array becomes ours */
    ds->count = files.n;
    ds->labels = labels;
    *out = ds;
    return TPSC_OK;
}
