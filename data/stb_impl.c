/* The translation unit that compiles stb_image and stb_image_resize (external linkage) for
 * tpsc_data and whatever links it. Another copy elsewhere must be static (STB_IMAGE_STATIC,
 * STB_IMAGE_RESIZE_STATIC, as src/infer/image.c does) or the link sees duplicates.
 *
 * stb_image_resize allocates its work memory through STBIR_MALLOC with a context pointer;
 * we route it to a per-thread grow buffer (the context), so resizing never mallocs once the
 * buffer has reached its size. */
#include <stddef.h>

#include <stdlib.h>

#include "data/buffer.h"
#include "data/image_check.h"
#include "data/stb_alloc_guard.h"

TPSC_STB_ALLOC_GUARD(, tpsc_stb_set_cap)

static void *resize_scratch(void *context, size_t bytes) {
    return tpsc_grow((tpsc_grow_buf *)context, bytes, "stb_image_resize work memory");
}

#define STBIR_MALLOC(size, c) resize_scratch((c), (size))
#define STBIR_FREE(ptr, c) ((void)(ptr), (void)(c))
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_IMPLEMENTATION
#include "data/stb_formats.h"
#include "data/stb_quiet_begin.h"
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include "data/stb_quiet_end.h"
