# Wall time per step spent in oneDNN primitives, by problem, from ONEDNN_VERBOSE=1 output:
#
#   ONEDNN_VERBOSE=1 build/tpsc bench train --precision bf16 --method none --batch 64 --steps 3 \
#       --threads 2 | awk -v threads=2 -f bench/onednn_time.awk
#
# A step starts at each repeat of the first primitive executed (the patch embedding's GEMM in a
# training step). The first `skip` steps (default 1) are dropped: the warm-up step creates the
# primitives and first-touches the activation arena, which makes it several times slower.
#
# The verbose time of a call is its own wall time. Attention's per-head products (token by token
# in two of their dimensions, all three at most `pair_max`, default 1024) run one per thread
# inside a parallel region, `threads` at once, so their summed times are divided by `threads`
# to approximate the wall time they occupy; the other GEMMs run alone, threaded inside oneDNN.
BEGIN {
    FS = ","
    if (threads == "") threads = 1
    if (skip == "") skip = 1
    if (pair_max == "") pair_max = 1024
    step = -1
}
/^onednn_verbose,exec,/ {
    shape = $(NF - 1)
    ms = $NF + 0
    sig = $5 " " $7 " " $8 " " shape
    if (first == "") first = sig
    if (sig == first) step++
    if (step < skip) next
    split(shape, part, ":")
    split(part[1], mk, "x")
    split(part[2], kn, "x")
    m = mk[1] + 0; k = mk[2] + 0; n = kn[2] + 0
    small = (m <= pair_max && n <= pair_max && k <= pair_max && (m == n || m == k || n == k))
    wall = small ? ms / threads : ms
    attr = $8
    sub(/attr-scratchpad:user ?/, "", attr)
    # operand layouts: ab row-major, ba transposed (src, weights)
    layout = $7
    gsub(/_[a-z0-9]+::blocked:/, ":", layout)
    gsub(/:f0[^ ]*/, "", layout)
    key = sprintf("%-28s %-5s %s %s", shape, small ? "pair" : "", layout, attr)
    t[key] += wall
    calls[key]++
    flop[key] += 2.0 * m * k * n
    total += wall
}
END {
    steps = step - skip + 1
    if (steps < 1) {
        print "onednn_time.awk: no complete step after the first " skip " (run more --steps)" > "/dev/stderr"
        exit 1
    }
    printf "%d steps after %d skipped; oneDNN wall time per step: %.0f ms\n", steps, skip, total / steps
    printf "%8s %6s %9s %9s  %s\n", "ms/step", "share", "calls", "GFLOP/s", "problem (MxK:KxN), pair = per-thread product, post-ops"
    n_keys = 0
    for (key in t) keys[++n_keys] = key
    # insertion sort by time, largest first (a few dozen keys)
    for (i = 2; i <= n_keys; i++) {
        v = keys[i]
        for (j = i - 1; j >= 1 && t[keys[j]] < t[v]; j--) keys[j + 1] = keys[j]
        keys[j + 1] = v
    }
    for (i = 1; i <= n_keys; i++) {
        key = keys[i]
        printf "%8.1f %5.1f%% %9d %9.0f  %s\n", t[key] / steps, 100 * t[key] / total, calls[key] / steps,
               flop[key] / (t[key] * 1e6), key
    }
}
