/* Patch embedding's unfold: img [B,Cin,H,W] -> patches [B, (H/p)(W/p), P], P = Cin p p.
 * Patches are numbered row-major over the (H/p, W/p) grid (conv output flatten(2)), and each
 * patch row is ordered (cin, ky, kx), the layout of a conv weight [C,Cin,p,p] seen as [C,P],
 * so that the conv becomes ag_linear(patches, weight). Patches do not overlap: every pixel
 * lands in exactly one place, so backward is the same walk with the copy reversed. */
#include <string.h>

#include "autograd/ops.h"

#define PF_PAR 32768

/* Forward: patch (b, py, px) row <- image pixels. Backward: image grad += patch grad. */
static void patch_walk(float *img, float *patches, size_t B, size_t Cin, size_t H, size_t W, size_t p, bool backward) {
    const size_t GH = H / p, GW = W / p, P = Cin * p * p, count = B * GH * GW;
    #pragma omp parallel for if (count * P > PF_PAR)
    for (size_t t = 0; t < count; t++) {
        const size_t b = t / (GH * GW), py = (t / GW) % GH, px = t % GW;
        float *row = patches + t * P;
        for (size_t c = 0; c < Cin; c++)
            for (size_t ky = 0; ky < p; ky++) {
                float *pix = img + ((b * Cin + c) * H + py * p + ky) * W + px * p;
                float *dst = row + (c * p + ky) * p;
                if (backward)
                    #pragma omp simd
                    for (size_t kx = 0; kx < p; kx++) pix[kx] += dst[kx];
                else
                    memcpy(dst, pix, p * sizeof(float));
            }
    }
}

static void patchify_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *img = n->in[0];
    float *dimg = ag_grad(ctx, img);
    if (!dimg) return;
    patch_walk(dimg, n->out->grad, img->shape[0], img->shape[1], img->shape[2], img->shape[3], (size_t)n->i[0], true);
}

ag_tensor *ag_patchify(ag_ctx *ctx, ag_tensor *img, size_t patch) {
    if (!ag_ok(ctx, 1, img)) return NULL;
    char s[64];
    if (img->ndim != 4 || patch == 0 || img->shape[2] % patch != 0 || img->shape[3] % patch != 0 || img->shape[2] == 0 ||
        img->shape[3] == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "patchify: image %s must be [B,Cin,H,W] with H and W divisible by the patch size %zu",
                        ag_shape_str(img, s, sizeof s), patch);
    if (!ag_is_contiguous(img)) return ag_error(ctx, TPSC_ERR_SHAPE, "patchify: image %s must be contiguous", ag_shape_str(img, s, sizeof s));
    const size_t B = img->shape[0], Cin = img->shape[1], H = img->shape[2], W = img->shape[3];
    ag_tensor *y = ag_new3(ctx, B, (H / patch) * (W / patch), Cin * patch * patch);
    if (!y) return NULL;
    patch_walk(img->data, y->data, B, Cin, H, W, patch, false);
    ag_node *n = ag_record(ctx, "patchify", patchify_backward, y, 1, &img);
    if (n) n->i[0] = (int64_t)patch;
    return ctx->status == TPSC_OK ? y : NULL;
}
