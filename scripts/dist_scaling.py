#!/usr/bin/env python3
"""The scaling model of docs/distributed.md: predicted data-parallel efficiency of DeiT-S dTPS
training at a global batch of 1024, for N nodes on links of 10/25/100 Gb/s, with and without
overlapping the gradient allreduce with the backward.

  python3 scripts/dist_scaling.py [--img-s-per-core 3.9] [--cores 32] [--alpha-us 30]

Model (ring allreduce, the algorithm Open MPI uses for large messages):
  S      gradient bytes per optimiser step = 4 * parameters (float32)
  T_ar   = 2 (N-1)/N * S / B  +  2 (N-1) * alpha * n_buckets   (B link bytes/s, alpha latency)
  T_c    = 1024 / (N * r)     compute of one optimiser step on one node (r images/s per node)
  T_bw   = 2/3 * T_c / A      backward of the last micro-batch (A micro-batches per step; the
                              allreduce runs once per optimiser step, after the last one)
  no overlap:  T = T_c + T_ar
  overlap:     T = T_c + max(T_ar / n_buckets, T_ar - T_bw * (n_buckets - 1) / n_buckets)
  efficiency E = T_c / T
"""
import argparse
import math

PARAMS = 22_050_664 + 3 * 241_250  # DeiT-S (timm) + three dTPS score predictors
IMAGES = 1_281_167 * 30            # ImageNet-1k train, 30 epochs
GLOBAL_BATCH = 1024
MICRO_PER_NODE = 128               # official per-process batch; accumulate above it


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--img-s-per-core", type=float, default=3.9,
                    help="training images/s per core (measured: tpsc bench train, DeiT-S dTPS)")
    ap.add_argument("--cores", type=int, default=32)
    ap.add_argument("--alpha-us", type=float, default=30.0, help="per-message latency (TCP: ~30 us)")
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    a = ap.parse_args()
    S = 4.0 * PARAMS
    nb = max(1, math.ceil(S / (a.bucket_mb * 2**20)))
    r = a.img_s_per_core * a.cores
    print(f"gradient bytes per step S = {S / 1e6:.1f} MB in {nb} buckets; one node: {r:.0f} images/s "
          f"({a.cores} cores x {a.img_s_per_core} images/s/core)")
    print("| nodes | micro-batches A | compute T_c s | " + " | ".join(
        f"{g} Gb/s: T_ar ms, E no overlap / overlap" for g in (10, 25, 100)) + " |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for n in (2, 4, 8, 16, 32, 64):
        A = max(1, GLOBAL_BATCH // (n * MICRO_PER_NODE))
        tc = GLOBAL_BATCH / (n * r)
        tbw = 2.0 / 3.0 * tc / A
        cells = []
        for g in (10, 25, 100):
            B = g * 1e9 / 8
            tar = 2 * (n - 1) / n * S / B + 2 * (n - 1) * a.alpha_us * 1e-6 * nb
            e0 = tc / (tc + tar)
            e1 = tc / (tc + max(tar / nb, tar - tbw * (nb - 1) / nb))
            rows[(n, g)] = (e0, e1)
            cells.append(f"{tar * 1e3:.0f}, {100 * e0:.0f}% / {100 * e1:.0f}%")
        print(f"| {n} | {A} | {tc:.3f} | " + " | ".join(cells) + " |")
    print()
    for n in (8, 32):
        for g in (10, 25, 100):
            e0, e1 = rows[(n, g)]
            h0 = IMAGES / (n * r * e0) / 3600
            h1 = IMAGES / (n * r * e1) / 3600
            print(f"30-epoch DeiT-S dTPS on {n} nodes, {g} Gb/s: {h0:.1f} h without overlap, {h1:.1f} h with")


if __name__ == "__main__":
    main()
