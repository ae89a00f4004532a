/* Checks an encoded image must pass before stb_image decodes it, shared by the framework's
 * data loader (data/ds_imagefolder.c) and libtpsinfer (src/infer/image.c) so both refuse the
 * same files. Header-only and free of stb and of either library's error type: each function
 * returns NULL when the file passes, else a message fragment for the caller's own error.
 *
 * Letters: W, H image width and height in pixels. */
#ifndef TPSC_DATA_IMAGE_CHECK_H
#define TPSC_DATA_IMAGE_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The largest side and pixel count accepted (libtpsinfer's preprocessing takes up to 2^15). */
#define TPSC_IMAGE_MAX_SIDE 32768
#define TPSC_IMAGE_MAX_PIXELS ((uint64_t)1 << 28)
/* The most pixel bytes a file may expand to per encoded byte: deflate (PNG) cannot exceed
 * 1032:1 and baseline JPEG stays below that (two bits per 8x8 block at best), so a header that
 * claims more than this describes data the file cannot hold. Checked before stb allocates. */
#define TPSC_IMAGE_MAX_EXPANSION 1032u

/* Dimensions from the header (stbi_info_from_memory) against the limits above; `channels` is
 * what the decode will produce. */
static inline const char *tpsc_image_check_dims(int w, int h, int channels, size_t file_bytes, char *buf, size_t n) {
    if (w < 1 || h < 1) {
        snprintf(buf, n, "image header says %dx%d pixels", w, h);
        return buf;
    }
    if (w > TPSC_IMAGE_MAX_SIDE || h > TPSC_IMAGE_MAX_SIDE || (uint64_t)w * (uint64_t)h > TPSC_IMAGE_MAX_PIXELS) {
        snprintf(buf, n, "image header says %dx%d pixels (at most %d per side and %llu in all)", w, h,
                 TPSC_IMAGE_MAX_SIDE, (unsigned long long)TPSC_IMAGE_MAX_PIXELS);
        return buf;
    }
    uint64_t bytes = (uint64_t)w * (uint64_t)h * (uint64_t)(channels > 0 ? channels : 1);
    if (bytes > (uint64_t)file_bytes * TPSC_IMAGE_MAX_EXPANSION + 4096) {
        snprintf(buf, n, "image header says %dx%d pixels, more than a %zu-byte file can encode", w, h, file_bytes);
        return buf;
    }
    return NULL;
}

/* JPEG Huffman tables (every DHT segment; progressive files have some between scans): each
 * table's 16 code counts must add up to at most 256 symbols and fit the segment, or stb_image
 * 2.27 (Debian 12) writes past its 257-entry size table. And every table a scan decodes with
 * must have been defined by a DHT segment before it: stb_image decodes with an undefined table's
 * uninitialised memory and reads far outside its symbol table. A sequential scan decodes with
 * its components' DC and AC tables; a progressive one with the DC tables in a first DC scan
 * (Ss = 0, Ah = 0), with none in a DC refinement, and with the AC table in an AC scan (Ss > 0).
 * Not a JPEG: passes. */
static inline const char *tpsc_image_check_jpeg_tables(const uint8_t *b, size_t len, char *buf, size_t n) {
    /* stb_image finds the start-of-image marker after any 0xff fill bytes (ff ff d8 is a JPEG
     * to it), so this check does too */
    size_t at = 0;
    while (at < len && b[at] == 0xff) at++;
    if (at == 0 || at >= len || b[at] != 0xd8 || len < 4) return NULL;
    at++;
    unsigned defined = 0; /* bit 4 class + id of each table a DHT segment defined (ids 0..3) */
    int progressive = 0;  /* the frame's start marker was 0xffc2 */
    while (at + 4 <= len) {
        if (b[at] != 0xff) { /* stb_image skips bytes between segments looking for a marker: so do we */
            at++;
            continue;
        }
        uint8_t marker = b[at + 1];
        if (marker == 0xff) {           /* fill byte */
            at++;
            continue;
        }
        if (marker == 0xd9) return NULL; /* end of image */
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
            at += 2;
            continue;
        }
        size_t seg = (size_t)b[at + 2] << 8 | b[at + 3];
        if (seg < 2 || at + 2 + seg > len) {
            /* stb_image reads zeros past the end and would parse them as the segment */
            snprintf(buf, n, "JPEG segment 0xff%02x at byte %zu runs past the end of the file (truncated)", marker, at);
            return buf;
        }
        if (marker >= 0xc0 && marker <= 0xc2) progressive = marker == 0xc2;
        if (marker == 0xda && seg >= 6 && seg >= 6 + 2 * (size_t)b[at + 4]) { /* shorter: stb refuses it */
            const size_t ns = b[at + 4], ss = b[at + 5 + 2 * ns], ah = b[at + 7 + 2 * ns] >> 4;
            for (size_t c = 0; c < ns; c++) {
                const unsigned dc = b[at + 6 + 2 * c] >> 4, ac = b[at + 6 + 2 * c] & 15u; /* > 3: stb refuses */
                const int uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss > 0;
                const int missing_dc = uses_dc && dc <= 3 && !(defined >> dc & 1u);
                const int missing_ac = uses_ac && ac <= 3 && !(defined >> (4 + ac) & 1u);
                if (missing_dc || missing_ac) {
                    snprintf(buf, n, "JPEG scan at byte %zu decodes with %s Huffman table %u, which no DHT segment "
                             "before it defines", at, missing_dc ? "DC" : "AC", missing_dc ? dc : ac);
                    return buf;
                }
            }
        }
        if (marker == 0xda) { /* start of scan: skip its entropy-coded data to the next marker */
            at += 2 + seg;
            while (at + 1 < len) {
                if (b[at] != 0xff) {
                    at++;
                    continue;
                }
                /* as stb_image's bit reader: 0xff fill bytes, then 0x00 (a stuffed 0xff) or a
                 * restart marker is still data; anything else is the next marker */
                size_t q = at + 1;
                while (q < len && b[q] == 0xff) q++;
                if (q < len && (b[q] == 0x00 || (b[q] >= 0xd0 && b[q] <= 0xd7))) {
                    at = q + 1;
                    continue;
                }
                at = q - 1;
                break;
            }
            continue;
        }
        if (marker == 0xc4) {
            size_t p = at + 4, end = at + 2 + seg;
            while (p < end) {
                if (p + 17 > end) {
                    snprintf(buf, n, "JPEG Huffman table at byte %zu is cut short", p);
                    return buf;
                }
                if ((b[p] >> 4) <= 1 && (b[p] & 15u) <= 3) defined |= 1u << (4 * (b[p] >> 4) + (b[p] & 15u));
                unsigned total = 0;
                for (int i = 0; i < 16; i++) total += b[p + 1 + i];
                if (total > 256 || p + 17 + total > end) {
                    snprintf(buf, n, "JPEG Huffman table at byte %zu declares %u codes (at most 256, in its segment)",
                             p, total);
                    return buf;
                }
                p += 17 + total;
            }
        }
        at += 2 + seg;
    }
    return NULL;
}

/* Binary PNM (P5 grey, P6 RGB): the pixel data must be as long as the header says. stb_image
 * 2.27 reads a short 16-bit file (maxval > 255) past its buffer when it converts to 8 bits.
 * Not a binary PNM, or a header it cannot read (stb then refuses it itself): passes. */
#define TPSC_PNM_TOO_LONG_ ((size_t)-1)
static inline size_t tpsc_pnm_number_(const uint8_t *b, size_t len, size_t *at) {
    for (;;) { /* whitespace and # comments, as stb_image skips them */
        while (*at < len && (b[*at] == ' ' || (b[*at] >= '\t' && b[*at] <= '\r'))) (*at)++;
        if (*at < len && b[*at] == '#') { while (*at < len && b[*at] != '\n' && b[*at] != '\r') (*at)++; continue; }
        break;
    }
    size_t v = 0;
    int digits = 0;
    while (*at < len && b[*at] >= '0' && b[*at] <= '9' && digits < 9) { v = v * 10 + (size_t)(b[*at] - '0'); (*at)++; digits++; }
    /* stb_image reads numbers into an int without an overflow check (undefined behaviour) */
    if (digits == 9 && *at < len && b[*at] >= '0' && b[*at] <= '9') return TPSC_PNM_TOO_LONG_;
    return digits ? v : 0;
}
static inline const char *tpsc_image_check_pnm_length(const uint8_t *b, size_t len, char *buf, size_t n) {
    if (len < 3 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return NULL;
    size_t at = 2;
    /* all three, as stb_image reads them before it judges any (a zero height does not stop it
     * reading an overflowing maxval) */
    const size_t w = tpsc_pnm_number_(b, len, &at);
    const size_t h = tpsc_pnm_number_(b, len, &at);
    const size_t maxval = tpsc_pnm_number_(b, len, &at);
    if (w == TPSC_PNM_TOO_LONG_ || h == TPSC_PNM_TOO_LONG_ || maxval == TPSC_PNM_TOO_LONG_) {
        snprintf(buf, n, "PNM header has a number of 10 digits or more");
        return buf;
    }
    if (!w || !h || !maxval || at >= len) return NULL;
    at++; /* the single whitespace byte before the pixels */
    const size_t need = w * h * (b[1] == '6' ? 3u : 1u) * (maxval > 255 ? 2u : 1u);
    if (len - at < need) {
        snprintf(buf, n, "PNM pixel data is %zu bytes, the header (%zu x %zu, maxval %zu) needs %zu", len - at, w, h,
                 maxval, need);
        return buf;
    }
    return NULL;
}

/* A 16-bit binary PNM (maxval > 255) decoded to another channel count than its own (grey P5 to
 * RGB, or P6 to grey): stb_image 2.27 converts the channels with its 8-bit routine on 16-bit
 * samples, then reads twice the buffer it wrote when it narrows them to 8 bits (a heap
 * overflow inside the library). Refused with the reason; 16-bit files with the requested
 * channel count, and every 8-bit file, pass. */
static inline const char *tpsc_image_check_pnm_16bit(const uint8_t *b, size_t len, int req_channels, char *buf,
                                                     size_t n) {
    if (len < 3 || b[0] != 'P' || (b[1] != '5' && b[1] != '6')) return NULL;
    size_t at = 2;
    tpsc_pnm_number_(b, len, &at);
    tpsc_pnm_number_(b, len, &at);
    const size_t maxval = tpsc_pnm_number_(b, len, &at);
    const int own = b[1] == '6' ? 3 : 1;
    if (maxval <= 255 || req_channels == own) return NULL;
    snprintf(buf, n, "16-bit PNM (maxval %zu) with %d channel(s) cannot become %d (stb_image 2.27 overflows); save it as 8-bit",
             maxval, own, req_channels);
    return buf;
}

#endif
