#!/bin/bash
# Our `tpsc bench` against the PyTorch (and, when installed, ONNX Runtime) anchors on the same
# shapes, run back to back on this machine, with the ratios.
#
#   bash bench/compare.sh [--avx512] [--bf16] [--bf16-train] [--bf16-train-only] [--train-removal] [--openblas] [--tome] [--attention] [--threads 2]
#                         [--repeat 1] [--quick] [--no-train] [--no-torch] [--no-ort] [--no-gemm-limit]
#                         [--omp-wait-policy PASSIVE|ACTIVE|default] [--out DIR]
#
# Shapes: DeiT-S 224, training step (fwd + bwd + AdamW) dense at batch 16 and 64; inference
# dense and dTPS (keep 0.7 at blocks 3/6/9) at batch 1 and 32. Everything runs under the
# environment's OPENBLAS_CORETYPE (Haswell on the earlier development machine: AVX2 kernels);
# --avx512 runs it all again with the variable unset (OpenBLAS then picks its AVX-512 kernels),
# and is a no-op where the environment leaves it unset. --repeat R runs ours and the
# peers R times, alternating, and reports medians of the R runs (each run is itself a median
# over steps/iterations). The GEMM-only limit is the anchor's sgemm_peak "DeiT-S b64 train-step
# GEMM mix" measured in the same run for the same core type and threads. Both tpsc and PyTorch
# run with the same OMP_WAIT_POLICY, PASSIVE unless told otherwise (the anchors' setting; on a
# shared, loaded machine libgomp's default spin-waiting costs tpsc 1.5-2.5x, see
# docs/performance.md); "default" leaves it unset for both. --bf16 adds libtpsinfer's opt-in
# BF16 precision (`bench infer --precision bf16`, linears through oneDNN, needs AVX512-BF16) as
# extra inference rows, set against the same FP32 peers. --bf16-train adds BF16 mixed-precision
# training (`bench train --precision bf16`, run.precision = bf16) at batch 16 and 64, set against
# our FP32 step of the same round and PyTorch's CPU autocast in bf16 (`torch_deit.py --amp bf16`),
# in a table of its own; its ratios are medians of the per-round ratios. --bf16-train-only runs
# nothing else: per round, our FP32 step, our BF16 step and PyTorch's bf16 autocast step at batch
# 64 (the anchor's own training child, `torch_deit.py --child train --batch 64 --amp bf16`), back
# to back, so that a changing machine load hits the three alike. libtpsinfer's FP32 rows run its default GEMM back-end (the faster one on
# this CPU, named above each table); --openblas adds rows with `--gemm openblas`, the other one.
# --train-removal adds the dTPS fine-tune step (topk masks, keep 0.7 at blocks 3/6/9, batch 64)
# masked against real removal (`bench train --removal`, tps.train_removal), the two in
# alternation on one model, in FP32 and, with --bf16-train, in BF16: the median of the per-step
# speed-ups and the MAC ratio of the two forwards (docs/tps.md, "Real removal in training").
# The "of peak" column is the inference GFLOP/s over register-only loops on the same threads,
# measured by `tpsc bench` in the same run: FMA loops for FP32 rows, vdpbf16ps loops (the BF16
# dot-product peak) for the bf16 rows (docs/inference.md, FP32 GEMM back-ends). --tome adds ToMe off the shelf in libtpsinfer
# at r = 8, 13 and 16 against dense at batch 1 and 32 (`bench infer --tome-r R --interleave`: the
# two in alternation, the median of the per-pair speed-ups), with both GMACs and their ratio; the
# ToMe paper's anchor is ViT-S/16 at r = 13 on a V100, 953 -> 1564 img/s (1.64x). --attention adds
# libtpsinfer's fused attention kernel against the two sgemm calls, dense and dTPS 0.7 at batch 1
# and 32 (`bench infer --interleave-attention`: the two in alternation, the median of the per-pair
# speed-ups). --no-train skips the training rows (inference only).
#
# Builds nothing of ours: it uses build/tpsc (or $TPSC_BIN). The anchors live in
# ../shared/bench-anchors beside the repo (or $TPSC_SHARED/bench-anchors); they are called from
# there, not copied. PyTorch comes from /usr/bin/python3 (Debian's torch); without it the torch
# column is skipped with a message. ONNX Runtime needs node and /tmp/ort_node (see the anchors'
# README); its models are exported to /tmp/anchors_onnx on first use.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
SHARED="${TPSC_SHARED:-$ROOT/../shared}"
ANCH="$SHARED/bench-anchors"
TPSC="${TPSC_BIN:-$ROOT/build/tpsc}"
PY=/usr/bin/python3
ONNX_DIR=/tmp/anchors_onnx
ORT_DIR="${ORT_NODE_DIR:-/tmp/ort_node}"

orig_args=("$@")
wait_policy=PASSIVE threads=2 repeat=1 quick=0 avx512=0 bf16=0 bf16_train=0 bf16_train_only=0 train_removal=0 openblas=0 tome=0 attention=0 do_train=1 do_torch=1 do_ort=1 do_gemm=1 out=/tmp/tpsc_compare
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --avx512) avx512=1 ;;
        --bf16) bf16=1 ;;
        --bf16-train) bf16_train=1 ;;
        --bf16-train-only) bf16_train=1 bf16_train_only=1 do_ort=0 do_gemm=0 ;;
        --train-removal) train_removal=1 ;;
        --openblas) openblas=1 ;;
        --tome) tome=1 ;;
        --attention) attention=1 ;;
        --no-train) do_train=0 ;;
        --threads) threads="$2"; shift ;;
        --repeat) repeat="$2"; shift ;;
        --quick) quick=1 ;;
        --no-torch) do_torch=0 ;;
        --no-ort) do_ort=0 ;;
        --no-gemm-limit) do_gemm=0 ;;
        --out) out="$2"; shift ;;
        --omp-wait-policy) wait_policy="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$wait_policy" = default ]; then unset OMP_WAIT_POLICY; else export OMP_WAIT_POLICY="$wait_policy"; fi
[ -x "$TPSC" ] || { echo "compare.sh: no $TPSC; build it first (cmake --build build --target tpsc)" >&2; exit 2; }
mkdir -p "$out" || exit 2
JSONPY=$PY; [ -x "$JSONPY" ] || JSONPY=python3

steps=3 iters=10
[ $quick = 1 ] && steps=2 iters=5

have_torch=0
if [ $do_torch = 1 ]; then
    if [ ! -f "$ANCH/torch_deit.py" ]; then
        echo "PyTorch: skipped, no $ANCH/torch_deit.py (is ../shared beside the repo?)"
    elif ! "$PY" -c 'import torch' 2>/dev/null; then
        echo "PyTorch: skipped, $PY cannot import torch (apt-get install python3-torch)"
    else
        have_torch=1
    fi
fi
have_ort=0
if [ $do_ort = 1 ]; then
    if ! command -v node >/dev/null || [ ! -d "$ORT_DIR/node_modules/onnxruntime-node" ]; then
        echo "ONNX Runtime: skipped, needs node and onnxruntime-node in $ORT_DIR (see $ANCH/README.md)"
    elif [ $have_torch = 0 ] && [ ! -f "$ONNX_DIR/deit_small.onnx" ]; then
        echo "ONNX Runtime: skipped, exporting the models needs PyTorch"
    else
        have_ort=1
    fi
fi
have_gemm=0
if [ $do_gemm = 1 ]; then
    if [ -f "$ANCH/sgemm_peak.c" ] && gcc -O2 -o "$out/sgemm_peak" "$ANCH/sgemm_peak.c" -lopenblas -lpthread -lm 2>"$out/sgemm_build.log"; then
        have_gemm=1
    else
        echo "GEMM-only limit: skipped, could not build $ANCH/sgemm_peak.c (see $out/sgemm_build.log)"
    fi
fi

# run_env MODE CMD...: MODE env keeps OPENBLAS_CORETYPE as the caller has it, auto unsets it.
run_env() {
    local mode=$1; shift
    if [ "$mode" = auto ]; then env -u OPENBLAS_CORETYPE "$@"; else "$@"; fi
}

bf16_train_round() { # MODE ROUND: our FP32 and BF16 steps and PyTorch's bf16 autocast step, batch 64
    local mode=$1 r=$2 tag="$1.$2"
    echo "[$mode, round $r] batch-64 training step: tpsc fp32, tpsc bf16, PyTorch bf16 autocast" >&2
    run_env "$mode" "$TPSC" bench train --method none --batch 64 --steps $steps --threads "$threads" \
        > "$out/ours_train64.$tag.txt" 2>&1 || echo "  tpsc bench train failed: see $out/ours_train64.$tag.txt" >&2
    run_env "$mode" "$TPSC" bench train --precision bf16 --method none --batch 64 --steps $steps --threads "$threads" \
        > "$out/ours_bf16train64.$tag.txt" 2>&1 ||
        echo "  tpsc bench train --precision bf16 failed: see $out/ours_bf16train64.$tag.txt" >&2
    [ $have_torch = 1 ] || return 0
    local q=(); [ $quick = 1 ] && q=(--quick)
    (export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
     [ "$mode" = auto ] && unset OPENBLAS_CORETYPE
     "$PY" "$ANCH/torch_deit.py" --child train --threads "$threads" --batch 64 --amp bf16 "${q[@]}" \
        > "$out/torch_bf16.$tag.txt" 2>&1) || echo "  PyTorch bf16 training child failed: see $out/torch_bf16.$tag.txt" >&2
    sed -n 's/^@@RESULT //p' "$out/torch_bf16.$tag.txt" > "$out/torch_bf16.$tag.json"
    [ -s "$out/torch_bf16.$tag.json" ] || rm -f "$out/torch_bf16.$tag.json"
}

one_round() { # MODE ROUND
    local mode=$1 r=$2 tag="$1.$2"
    if [ $bf16_train_only = 1 ]; then bf16_train_round "$mode" "$r"; return; fi
    echo "[$mode, round $r] tpsc bench train (batch 16, 64) and infer (batch 1, 32)" >&2
    for b in 16 64; do
        [ $do_train = 1 ] || break
        run_env "$mode" "$TPSC" bench train --method none --batch $b --steps $steps --threads "$threads" \
            > "$out/ours_train$b.$tag.txt" 2>&1 || echo "  tpsc bench train --batch $b failed: see $out/ours_train$b.$tag.txt" >&2
    done
    run_env "$mode" "$TPSC" bench infer --method dtps --keep-ratio 0.7 --batch 1,32 --iters $iters --threads "$threads" \
        > "$out/ours_infer.$tag.txt" 2>&1 || echo "  tpsc bench infer failed: see $out/ours_infer.$tag.txt" >&2
    if [ $openblas = 1 ]; then
        run_env "$mode" "$TPSC" bench infer --gemm openblas --method dtps --keep-ratio 0.7 --batch 1,32 --iters $iters \
            --threads "$threads" > "$out/ours_openblas.$tag.txt" 2>&1 ||
            echo "  tpsc bench infer --gemm openblas failed: see $out/ours_openblas.$tag.txt" >&2
    fi
    if [ $tome = 1 ]; then
        for tr in 8 13 16; do
            run_env "$mode" "$TPSC" bench infer --tome-r $tr --interleave --batch 1,32 --iters $iters \
                --threads "$threads" > "$out/ours_tome$tr.$tag.txt" 2>&1 ||
                echo "  tpsc bench infer --tome-r $tr failed: see $out/ours_tome$tr.$tag.txt" >&2
        done
    fi
    if [ $attention = 1 ]; then
        for m in none dtps; do
            run_env "$mode" "$TPSC" bench infer --method $m --keep-ratio 0.7 --interleave-attention --batch 1,32 \
                --iters $iters --threads "$threads" > "$out/ours_attn_$m.$tag.txt" 2>&1 ||
                echo "  tpsc bench infer --interleave-attention failed: see $out/ours_attn_$m.$tag.txt" >&2
        done
    fi
    if [ $bf16 = 1 ]; then
        run_env "$mode" "$TPSC" bench infer --precision bf16 --method dtps --keep-ratio 0.7 --batch 1,32 --iters $iters \
            --threads "$threads" > "$out/ours_bf16.$tag.txt" 2>&1 ||
            echo "  tpsc bench infer --precision bf16 failed: see $out/ours_bf16.$tag.txt" >&2
    fi
    if [ $bf16_train = 1 ]; then
        for b in 16 64; do
            run_env "$mode" "$TPSC" bench train --precision bf16 --method none --batch $b --steps $steps \
                --threads "$threads" > "$out/ours_bf16train$b.$tag.txt" 2>&1 ||
                echo "  tpsc bench train --precision bf16 --batch $b failed: see $out/ours_bf16train$b.$tag.txt" >&2
        done
    fi
    if [ $train_removal = 1 ]; then
        local precs=(fp32); [ $bf16_train = 1 ] && precs+=(bf16)
        for p in "${precs[@]}"; do
            run_env "$mode" "$TPSC" bench train --removal --method dtps --keep-ratio 0.7 --batch 64 --steps $steps \
                --precision $p --threads "$threads" > "$out/ours_removal_$p.$tag.txt" 2>&1 ||
                echo "  tpsc bench train --removal --precision $p failed: see $out/ours_removal_$p.$tag.txt" >&2
        done
    fi
    if [ $have_torch = 1 ] && [ $bf16_train = 1 ]; then
        echo "[$mode, round $r] PyTorch bf16 autocast anchors (a few minutes)" >&2
        local qb=(); [ $quick = 1 ] && qb=(--quick)
        local ctb=env; [ "$mode" = auto ] && ctb=auto
        "$PY" "$ANCH/torch_deit.py" --threads "$threads" --coretype $ctb --no-tps-train --sgemm-json "" "${qb[@]}" \
            --omp-wait-policy "$wait_policy" --amp bf16 \
            --json "$out/torch_bf16.$tag.json" > "$out/torch_bf16.$tag.txt" 2>&1 ||
            echo "  PyTorch bf16 anchors failed: see $out/torch_bf16.$tag.txt" >&2
    fi
    if [ $have_torch = 1 ]; then
        echo "[$mode, round $r] PyTorch anchors (a few minutes)" >&2
        local q=(); [ $quick = 1 ] && q=(--quick)
        local ct=env; [ "$mode" = auto ] && ct=auto
        "$PY" "$ANCH/torch_deit.py" --threads "$threads" --coretype $ct --no-tps-train --sgemm-json "" "${q[@]}" \
            --omp-wait-policy "$wait_policy" \
            --json "$out/torch.$tag.json" > "$out/torch.$tag.txt" 2>&1 || echo "  PyTorch anchors failed: see $out/torch.$tag.txt" >&2
    fi
    if [ $have_gemm = 1 ]; then
        run_env "$mode" "$out/sgemm_peak" --no-fma --threads "$threads" --reps 3 --json "$out/sgemm.$tag.json" \
            > "$out/sgemm.$tag.txt" 2>&1 || echo "  sgemm_peak failed: see $out/sgemm.$tag.txt" >&2
    fi
}

ort_round() { # ROUND (ONNX Runtime does not use OpenBLAS: one run serves both core types)
    local r=$1
    for m in deit_small deit_small_tps; do
        if [ ! -f "$ONNX_DIR/$m.onnx" ]; then
            mkdir -p "$ONNX_DIR"
            local t=(); [ $m = deit_small_tps ] && t=(--tps)
            "$PY" "$ANCH/torch_deit.py" --export-onnx "$ONNX_DIR/$m.onnx" "${t[@]}" > "$out/onnx_export.txt" 2>&1 ||
                { echo "  ONNX export of $m failed: see $out/onnx_export.txt" >&2; continue; }
        fi
        echo "[ort, round $r] $m" >&2
        ORT_NODE_DIR="$ORT_DIR" node "$ANCH/ort_bench.js" --model "$ONNX_DIR/$m.onnx" --threads "$threads" \
            --batches 1,32 --json "$out/ort_$m.$r.json" > "$out/ort_$m.$r.txt" 2>&1 ||
            echo "  ONNX Runtime failed: see $out/ort_$m.$r.txt" >&2
    done
}

modes=(env)
# With the variable unset in the environment the two settings are one: run it once.
if [ $avx512 = 1 ]; then
    if [ -n "${OPENBLAS_CORETYPE:-}" ]; then modes+=(auto)
    else echo "--avx512: OPENBLAS_CORETYPE is unset here already, so the environment's rows are the AVX-512 ones"; fi
fi
rm -f "$out"/ours_*.txt "$out"/torch.*.json "$out"/torch_bf16.*.json "$out"/ort_*.json "$out"/sgemm.*.json
for ((r = 1; r <= repeat; r++)); do
    for mode in "${modes[@]}"; do one_round "$mode" $r; done
    [ $have_ort = 1 ] && ort_round $r
done

echo
echo "command: bash bench/compare.sh ${orig_args[*]:-}"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), host load (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg), nproc $(nproc)"
echo "tpsc: $("$TPSC" version 2>/dev/null | head -1), OPENBLAS_CORETYPE in the environment: ${OPENBLAS_CORETYPE:-(unset)}, OMP_WAIT_POLICY (tpsc and PyTorch): $wait_policy"
"$JSONPY" - "$out" "$repeat" "${modes[@]}" <<'EOF'
import glob, json, os, re, statistics, sys

out, repeat, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

backends = set()

def ours_rows(path, suffix=""):
    """{(kind, method + suffix, batch): (img/s, peak RSS MB, % of the FMA or, bf16 rows, the BF16 peak, or None)} from a `tpsc bench`
    markdown table; and the core."""
    rows, core = {}, None
    if not os.path.exists(path):
        return rows, core
    for line in open(path):
        m = re.match(r"OpenBLAS core (\S+),", line)
        if m:
            core = m.group(1)
        m = re.match(r"GEMM back-end (\S+)", line)
        if m and not suffix:
            backends.add(m.group(1))
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 10 and cells[0] in ("train", "infer"):
            fma = float(cells[11].rstrip("%")) if len(cells) >= 12 and cells[11].rstrip("%").replace(".", "").isdigit() else None
            rows[(cells[0], ("dense" if cells[1] == "none" else cells[1]) + suffix, int(cells[2]))] = (
                float(cells[3]), float(cells[9]), fma)
    return rows, core

def torch_rows(path):
    rows, core = {}, None
    if not os.path.exists(path):
        return rows, core
    d = json.load(open(path))
    core = d.get("openblas_core")
    for r in d.get("rows", d.get("results", [])):  # the harness' summary, or one training child's result
        method = "dtps" if r["model"].endswith("_tps") else "dense"
        rows[(r["kind"], method, r["batch"])] = (r["img_s"], r.get("peak_rss_mb"))
    return rows, core

def ort_rows(r):
    rows = {}
    for model, method in (("deit_small", "dense"), ("deit_small_tps", "dtps")):
        p = os.path.join(out, "ort_%s.%d.json" % (model, r))
        if os.path.exists(p):
            for x in json.load(open(p))["results"]:
                rows[("infer", method, x["batch"])] = (x["img_s"], None)
    return rows

def gemm_limit(path):
    if not os.path.exists(path):
        return None
    d = json.load(open(path))
    vals = [v for k, v in d.items() if k.startswith("train_mix_gemm_only_img_s_")]
    return vals[0] if vals else None

shapes = [("train", "dense", 16), ("train", "dense", 64), ("infer", "dense", 1), ("infer", "dense", 32),
          ("infer", "dtps", 1), ("infer", "dtps", 32)]
ort_all = [ort_rows(r) for r in range(1, repeat + 1)]

def fmt(x, spec="%.2f"):
    return spec % x if x is not None else "-"

def ratio(a, b):
    return "%.2fx" % (a / b) if a is not None and b else "-"

for mode in modes:
    backends.clear()
    ours, torch, torch_bf16, cores, tcore, limits = [], [], [], set(), set(), []
    for r in range(1, repeat + 1):
        tag = "%s.%d" % (mode, r)
        o = {}
        for f in ("ours_train16", "ours_train64", "ours_infer", "ours_openblas", "ours_bf16", "ours_bf16train16",
                  "ours_bf16train64"):
            suffix = " bf16" if "bf16" in f else " openblas" if "openblas" in f else ""
            rows, core = ours_rows(os.path.join(out, "%s.%s.txt" % (f, tag)), suffix)
            o.update(rows)
            if core:
                cores.add(core)
        ours.append(o)
        t, core = torch_rows(os.path.join(out, "torch.%s.json" % tag))
        torch.append(t)
        if core:
            tcore.add(core)
        tb, _ = torch_rows(os.path.join(out, "torch_bf16.%s.json" % tag))
        torch_bf16.append(tb)
        limits.append(gemm_limit(os.path.join(out, "sgemm.%s.json" % tag)))
    label = "environment's OPENBLAS_CORETYPE" if mode == "env" else "OPENBLAS_CORETYPE unset (AVX-512 kernels)"
    print("\n### %s: tpsc core %s, PyTorch core %s; libtpsinfer FP32 GEMM back-end %s; medians of %d run(s)\n" % (
        label, "/".join(sorted(cores)) or "?", "/".join(sorted(tcore)) or "-", "/".join(sorted(backends)) or "?",
        repeat))
    table = ["| DeiT-S 224 | batch | tpsc img/s | PyTorch img/s | tpsc / PyTorch | ORT img/s | tpsc / ORT | tpsc peak RSS MB |"
             " PyTorch peak RSS MB | tpsc of peak (FMA; bf16: AMX where used, else BF16) |", "|---|---|---|---|---|---|---|---|---|---|"]
    extra = [(k, m + sfx, b) for sfx in (" openblas", " bf16") for k, m, b in shapes if k == "infer"]
    for key in shapes + [k for k in extra if any(k in o for o in ours)]:  # BF16 training: its own table
        kind, method, batch = key
        peer = (kind, method.split(" ")[0], batch)  # BF16 and --gemm openblas rows against the FP32 peers
        oi = med([o[key][0] for o in ours if key in o])
        orss = med([o[key][1] for o in ours if key in o])
        ti = med([t[peer][0] for t in torch if peer in t])
        trss = med([t[peer][1] for t in torch if peer in t])
        ri = med([x[peer][0] for x in ort_all if peer in x])
        ofma = med([o[key][2] for o in ours if key in o])
        name = "%s %s" % ("training step" if kind == "train" else "inference", method)
        if oi is None and ti is None and ri is None:
            continue  # not run (--bf16-train-only runs the BF16 table's steps alone)
        table.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, batch, fmt(oi), fmt(ti), ratio(oi, ti), fmt(ri), ratio(oi, ri), fmt(orss, "%.0f"),
            fmt(trss, "%.0f") if kind == "train" else "-", fmt(ofma, "%.0f%%") if kind == "infer" else "-"))
    if len(table) > 2:
        print("\n".join(table))
    train_bf16 = [("train", "dense bf16", b) for b in (16, 64)]
    if any(k in o for o in ours for k in train_bf16):
        print("\nBF16 mixed-precision training (run.precision = bf16; PyTorch: torch.autocast('cpu', bfloat16)):\n")
        print("| DeiT-S 224 dense step | batch | tpsc bf16 img/s | tpsc fp32 img/s | bf16 / fp32 | PyTorch bf16 img/s |"
              " tpsc bf16 / PyTorch bf16 | tpsc bf16 peak RSS MB | tpsc fp32 peak RSS MB | PyTorch bf16 peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for key in train_bf16:
            fkey = ("train", "dense", key[2])
            bi = med([o[key][0] for o in ours if key in o])
            fi = med([o[fkey][0] for o in ours if fkey in o])
            ti = med([t[fkey][0] for t in torch_bf16 if fkey in t])
            # ratios: the median over rounds of each round's own ratio (the three ran back to back)
            rf = med([o[key][0] / o[fkey][0] for o in ours if key in o and fkey in o])
            rt = med([o[key][0] / t[fkey][0] for o, t in zip(ours, torch_bf16) if key in o and fkey in t])
            if bi is None and fi is None:
                continue
            print("| training step | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                key[2], fmt(bi), fmt(fi), fmt(rf, "%.2fx"), fmt(ti), fmt(rt, "%.2fx"),
                fmt(med([o[key][1] for o in ours if key in o]), "%.0f"),
                fmt(med([o[fkey][1] for o in ours if fkey in o]), "%.0f"),
                fmt(med([t[fkey][1] for t in torch_bf16 if fkey in t]), "%.0f")))
    rem = {}
    for r in range(1, repeat + 1):
        for prec in ("fp32", "bf16"):
            path = os.path.join(out, "ours_removal_%s.%s.%d.txt" % (prec, mode, r))
            if not os.path.exists(path):
                continue
            for line in open(path):
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) == 8 and cells[0] == "train topk":
                    rem.setdefault((prec, cells[1], int(cells[2])), []).append(
                        (cells[3], cells[4], float(cells[5].rstrip("x")), float(cells[6].rstrip("x")),
                         float(cells[7].rstrip("x"))))
    if rem:
        print("\nReal token removal in training (dTPS, topk masks, keep 0.7 at blocks 3/6/9; `tpsc bench train --removal`):\n")
        print("| step | precision | batch | masked ms (wall / cpu) | removed ms (wall / cpu) | speed-up wall | speed-up cpu |"
              " MACs ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for (prec, method, batch), rs in sorted(rem.items()):
            print("| %s fine-tune | %s | %d | %s | %s | %.2fx | %.2fx | %.2fx |" % (
                method, prec, batch, rs[-1][0], rs[-1][1], med([x[2] for x in rs]), med([x[3] for x in rs]), rs[-1][4]))
    tome_rows = {}
    for path in sorted(glob.glob(os.path.join(out, "ours_tome*.%s.*.txt" % mode))):
        for line in open(path):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 8 and cells[0].startswith("tome"):
                tome_rows.setdefault((int(cells[0].split("r=")[1]), int(cells[1])), []).append(
                    (float(cells[4].rstrip("x")), float(cells[5].rstrip("x")), float(cells[6].rstrip("x")), cells[7]))
    if tome_rows:
        print("\nToMe off the shelf in libtpsinfer against dense (`tpsc bench infer --tome-r R --interleave`, the two"
              " in alternation; the ToMe paper: ViT-S/16 r = 13 on a V100, 953 -> 1564 img/s, 1.64x):\n")
        print("| DeiT-S 224 | batch | speed-up wall | speed-up cpu | MACs ratio | GMACs/img dense / ToMe |")
        print("|---|---|---|---|---|---|")
        for (r, batch), rs in sorted(tome_rows.items()):
            print("| ToMe r = %d | %d | %.2fx | %.2fx | %.2fx | %s |" % (
                r, batch, med([x[0] for x in rs]), med([x[1] for x in rs]), rs[-1][2], rs[-1][3]))
    attn_rows, attn_name = {}, "fused"
    for path in sorted(glob.glob(os.path.join(out, "ours_attn_*.%s.*.txt" % mode))):
        for line in open(path):
            m = re.match(r"\| method \| batch \| gemm ms \(wall / cpu\) \| (.+) ms \(wall", line)
            if m:
                attn_name = m.group(1)
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 6 and cells[1].isdigit():
                attn_rows.setdefault((cells[0], int(cells[1])), []).append(
                    (float(cells[4].rstrip("x")), float(cells[5].rstrip("x"))))
    if attn_rows:
        print("\nAttention in libtpsinfer: %s against two sgemm calls per head (`tpsc bench infer"
              " --interleave-attention`, the two in alternation; speed-up of the whole pass):\n" % attn_name)
        print("| DeiT-S 224 | batch | rounds | speed-up wall | speed-up cpu |")
        print("|---|---|---|---|---|")
        for (method, batch), rs in sorted(attn_rows.items()):
            print("| %s | %d | %d | %.2fx | %.2fx |" % ("dense" if method == "none" else method, batch, len(rs),
                                                      med([x[0] for x in rs]), med([x[1] for x in rs])))
    lim = med(limits)
    t64 = med([o[("train", "dense", 64)][0] for o in ours if ("train", "dense", 64) in o])
    if lim and t64:
        print("\nGEMM-only limit of a batch-64 training step (sgemm_peak's DeiT-S GEMM mix, same core type and"
              " threads, this run): %.2f img/s; tpsc reaches %.0f%% of it." % (lim, 100.0 * t64 / lim))
print("\nRaw outputs in %s. img/s are medians over steps (train) or iterations (infer) within a run." % out)
EOF
