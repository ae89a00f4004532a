#include "support/op_error.h"

#include <criterion/criterion.h>
#include <string.h>

void op_expect_error(ag_ctx *ctx, ag_tensor *y, tpsc_status want, const char *op) {
    cr_assert_null(y, "%s should fail", op);
    cr_assert_eq(ag_ctx_status(ctx), want, "%s: status %d, want %d", op, ag_ctx_status(ctx), want);
    cr_assert(strstr(tpsc_last_error(), op) != NULL, "%s: message: %s", op, tpsc_last_error());
    ag_ctx_reset(ctx);
}
