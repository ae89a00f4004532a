/* The commands' options: a value that is not a whole number or a number in the option's range
 * (cli_int, cli_float, src/cli/cli_util.c), or not one of an option's named choices (--gemm, --precision), is named,
 * and the command exits 2 before it reads a file or starts work. The whole numbers, all but tpsc
 * infer's, were once taken by atoi: "--threads x" ran on all cores, "--iters 0" timed nothing,
 * "--mpi 0" was dropped without a word.
 * And the edges are accepted: the range's ends reach the command (seen by the next error it
 * reports, about the missing checkpoint or data, not about the number). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "support/command.h"

typedef struct bad_case {
    const char *args, *message;
} bad_case;

static const bad_case bad[] = {
    {"bench infer --threads x", "tpsc bench: --threads 'x' is not a whole number in 0..1024"},
    {"bench infer --threads 2000", "tpsc bench: --threads '2000' is not a whole number in 0..1024"},
    {"bench infer --iters 0", "tpsc bench: --iters '0' is not a whole number in 1..1000000"},
    {"bench train --steps 3x", "tpsc bench: --steps '3x' is not a whole number in 1..1000000"},
    {"bench infer --classes -5", "tpsc bench: --classes '-5' is not a whole number in 1..1000000"},
    {"bench infer --tome-r 99999999999999999999", "tpsc bench: --tome-r '99999999999999999999' is not a whole number"},
    {"eval missing.h5 --threads 1.5", "tpsc eval: --threads '1.5' is not a whole number in 0..1024"},
    {"eval missing.h5 --threads", "tpsc eval: --threads '' is not a whole number in 0..1024"},
    {"sweep --threads -1", "tpsc sweep: --threads '-1' is not a whole number in 0..1024"},
    {"sweep --mpi 0", "tpsc sweep: --mpi '0' is not a whole number in 1..4096"},
    {"visualize missing.h5 --max 0", "tpsc visualize: --max '0' is not a whole number in 1..1000000"},
    {"visualize missing.h5 --scale 65", "tpsc visualize: --scale '65' is not a whole number in 1..64"},
    {"visualize missing.h5 --threads two", "tpsc visualize: --threads 'two' is not a whole number in 0..1024"},
    {"infer missing.h5 x.png --top 0", "tpsc infer: --top '0' is not a whole number in 1..1000000"},
    {"infer missing.h5 x.png --batch 8k", "tpsc infer: --batch '8k' is not a whole number in 1..1000000"},
    {"infer missing.h5 x.png --threads -2", "tpsc infer: --threads '-2' is not a whole number in 0..1024"},
    {"infer missing.h5 x.png --tome-r 0", "tpsc infer: --tome-r '0' is not a whole number in 1..1000000"},
    {"eval missing.h5 --tome-r -3", "tpsc eval: --tome-r '-3' is not a whole number in 0..1000000"},
    {"visualize missing.h5 --tome-r x", "tpsc visualize: --tome-r 'x' is not a whole number in 0..1000000"},
    /* fractions (cli_float): bench once took "--keep-ratio abc" as 0 and "--bucket-mb x" as no
     * option at all; eval and visualize read "0.7x" as 0.7 */
    {"bench infer --keep-ratio abc", "tpsc bench: --keep-ratio 'abc' is not a number in (0, 1]"},
    {"bench infer --tome-inflect 2", "tpsc bench: --tome-inflect '2' is not a number in [-1, 1]"},
    {"bench train --bucket-mb x", "tpsc bench: --bucket-mb 'x' is not a number in (0, 65536]"},
    {"eval missing.h5 --keep-ratio 0.7x", "tpsc eval: --keep-ratio '0.7x' is not a number in (0, 1]"},
    {"eval missing.h5 --keep-ratio 0", "tpsc eval: --keep-ratio '0' is not a number in (0, 1]"},
    {"eval missing.h5 --tome-inflect nan", "tpsc eval: --tome-inflect 'nan' is not a number in [-1, 1]"},
    {"visualize missing.h5 --keep-ratio 1.5", "tpsc visualize: --keep-ratio '1.5' is not a number in (0, 1]"},
    {"infer missing.h5 x.png --tome-inflect -1.5", "tpsc infer: --tome-inflect '-1.5' is not a number in [-1, 1]"},
    /* the named choices: a bad --gemm value was once read as the next path ("mkl: cannot open") */
    {"bench infer --gemm mkl", "tpsc bench: --gemm: unknown GEMM back-end 'mkl' (auto, openblas, onednn or panel)"},
    {"eval missing.h5 --gemm mkl", "tpsc eval: --gemm: unknown GEMM back-end 'mkl' (auto, openblas, onednn or panel)"},
    {"infer missing.h5 x.png --gemm mkl", "tpsc infer: unknown GEMM back-end 'mkl' (auto, openblas, onednn or panel)"},
    {"eval missing.h5 --precision fp16", "tpsc eval: --precision is fp32 or bf16, not 'fp16'"},
};

/* tpsc infer said some things twice: a bad --gemm value drew the library's message and then
 * "--gemm needs a valid value", an unknown option "unknown option" and then "--foo needs a valid
 * value". One message each now; a value with no message of its own keeps the generic one. */
Test(cli_args, infer_says_it_once) {
    const char *cmds[] = {"infer missing.h5 x.png --top 0", "infer missing.h5 --foo", "infer missing.h5 x.png --gemm mkl"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char out[8192];
        const int status = tcmd_tpsc(cmds[i], out, sizeof out);
        cr_expect_eq(status, 2, "tpsc %s: exit status %d", cmds[i], status);
        cr_expect(!strstr(out, "needs a valid value"), "tpsc %s said it twice:\n%s", cmds[i], out);
    }
    char out[8192];
    cr_expect_eq(tcmd_tpsc("infer missing.h5 x.png --keep-ratio abc", out, sizeof out), 2);
    cr_expect(strstr(out, "tpsc infer: --keep-ratio needs a valid value"), "said:\n%s", out);
}

Test(cli_args, bad_whole_numbers_are_named_and_exit_2) {
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char out[8192];
        const int status = tcmd_tpsc(bad[i].args, out, sizeof out);
        cr_expect_eq(status, 2, "tpsc %s: exit status %d, said:\n%s", bad[i].args, status, out);
        cr_expect(strstr(out, bad[i].message), "tpsc %s said:\n%s", bad[i].args, out);
        cr_expect(!strstr(out, "cannot open") && !strstr(out, "missing.h5"), "tpsc %s went on to a file:\n%s",
                  bad[i].args, out);
    }
}

Test(cli_args, range_ends_are_accepted) {
    const char *ok[] = {"eval missing.h5 --threads 0", "eval missing.h5 --threads 1024", "eval missing.h5 --keep-ratio 1",
                        "eval missing.h5 --tome-inflect -1"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char out[8192];
        const int status = tcmd_tpsc(ok[i], out, sizeof out);
        cr_expect(!strstr(out, "is not a"), "tpsc %s refused its number:\n%s", ok[i], out);
        cr_expect(strstr(out, "missing.h5"), "tpsc %s did not reach the checkpoint (status %d):\n%s", ok[i], status, out);
    }
}
