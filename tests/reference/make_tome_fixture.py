#!/usr/bin/python3
"""Writes tests/fixtures/vit_tome.h5 from the official ToMe code applied to a timm DeiT.

Nothing of ToMe or timm is copied here: the script extracts both packages at pinned commits
from local git clones into a temporary directory, imports them, builds a small timm
VisionTransformer with random weights, applies `tome.patch.timm`, and records what the C
engine must reproduce. Needs Debian's python3-torch, python3-torchvision (timm imports it),
python3-tqdm (tome.utils imports it) and python3-h5py:

    /usr/bin/python3 tests/reference/make_tome_fixture.py \
        --timm-git /path/to/pytorch-image-models/.git --tome-git /path/to/ToMe/.git

(any clone of https://github.com/huggingface/pytorch-image-models and
https://github.com/facebookresearch/ToMe that holds the commits below). Layout: README.md.
"""
import argparse
import io
import math
import os
import subprocess
import sys
import tarfile
import tempfile

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vit_ref as R  # noqa: E402  (the shared random-weight scheme and soft-target CE)
from make_fixtures import FIXTURES, check_logits_spread, make_inputs, open_fixture, put, report  # noqa: E402

TIMM_COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"   # timm 1.0.29.dev0, 2026-08-08
TOME_COMMIT = "af95e4b1befa172dadccd8c81e223b10090f9579"   # ToMe main, 2023-03-30

CFG = dict(img_size=32, patch_size=4, in_chans=3, embed_dim=32, depth=4, num_heads=4,
           num_classes=10, mlp_ratio=4.0)
BATCH = 3
# name -> ToMe's model.r (int: constant; tuple: (r, inflection), -1 = the paper's decreasing
# schedule). "r15" hits ToMe's own per-block limit (at most half the non-cls tokens) in its
# last block: 65 -> 50 -> 35 -> 20 -> 11.
CASES = {"r8": 8, "r15": 15, "dec12": (12, -1.0)}
GRAD_CASE = "r8"    # the case that also stores the gradient of its loss (training through ToMe)
GAP = 1e-4          # every discrete decision must clear this margin (cosine units)
FIRST_SEED = 3100


def extract(git_dir, commit, package, into):
    data = subprocess.run(["git", "--git-dir", git_dir, "archive", commit, package],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        t.extractall(into)


def build(seed):
    import timm.models.vision_transformer as tv
    import tome
    model = tv.VisionTransformer(img_size=CFG["img_size"], patch_size=CFG["patch_size"],
                                 in_chans=CFG["in_chans"], num_classes=CFG["num_classes"],
                                 embed_dim=CFG["embed_dim"], depth=CFG["depth"],
                                 num_heads=CFG["num_heads"], mlp_ratio=CFG["mlp_ratio"],
                                 qkv_bias=True, class_token=True, global_pool="token")
    R.init_random(model, seed)
    model.eval()
    tome.patch.timm(model, trace_source=True, prop_attn=True)
    return model


def traced_forward(model, images, r):
    """Runs the patched model once; returns logits and, per block, the metric ToMe matched on,
    the token count before merging, the size vector and the source matrix after the block."""
    from tome.utils import parse_r
    model.r = r
    info = model._tome_info
    per_block = []

    def attn_hook(_m, _inp, out):
        per_block.append({"metric": out[1].detach().clone()})

    def block_hook(_m, inp, _out):
        rec = per_block[-1]
        rec["t_in"] = inp[0].shape[1]
        rec["size"] = None if info["size"] is None else info["size"][..., 0].detach().clone()
        rec["source"] = None if info["source"] is None else info["source"].detach().clone()

    hooks = [b.attn.register_forward_hook(attn_hook) for b in model.blocks]
    hooks += [b.register_forward_hook(block_hook) for b in model.blocks]
    try:
        logits = model(images)
    finally:
        for h in hooks:
            h.remove()
    return logits, per_block, parse_r(len(model.blocks), r)


def decision_gaps(per_block, schedule):
    """Smallest margin of ToMe's discrete choices, recomputed from each block's metric as
    bipartite_soft_matching makes them: the best B match of every merged A token against its
    second best, and the r-th best edge against the (r+1)-th (the cut)."""
    worst = math.inf
    for rec, r_req in zip(per_block, schedule):
        t = rec["t_in"]
        r = min(r_req, (t - 1) // 2)
        if r <= 0:
            continue
        m = rec["metric"].double()
        m = m / m.norm(dim=-1, keepdim=True)
        scores = m[:, ::2] @ m[:, 1::2].transpose(-1, -2)
        scores[:, 0, :] = -math.inf
        top2 = scores.topk(2, dim=-1).values                       # [B, |A|, 2]
        node_max = top2[..., 0]
        order = node_max.argsort(dim=-1, descending=True)
        srt = node_max.gather(1, order)
        cut = (srt[:, r - 1] - srt[:, r]).min().item()
        src = order[:, :r]
        row_gap = (top2[..., 0] - top2[..., 1]).gather(1, src).min().item()
        worst = min(worst, cut, row_gap)
    return worst


def groups_of(source):
    """ToMe's source [B, n, 1+N] (0/1, one 1 per column) -> group[b, j]: the position after
    the block of the token that holds original token j (cls is j = 0)."""
    assert torch.all(source.sum(dim=1) == 1), "every original token is in exactly one group"
    return source.argmax(dim=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timm-git", required=True)
    ap.add_argument("--tome-git", required=True)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        extract(args.timm_git, TIMM_COMMIT, "timm", tmp)
        extract(args.tome_git, TOME_COMMIT, "tome", tmp)
        sys.path.insert(0, tmp)
        images, labels, targets = make_inputs(CFG, seed=4242, batch=BATCH)

        seed = None
        for cand in range(FIRST_SEED, FIRST_SEED + 200):
            model = build(cand)
            with torch.no_grad():
                gaps = [decision_gaps(*traced_forward(model, images, r)[1:]) for r in CASES.values()]
            if min(gaps) > GAP:
                seed = cand
                break
        assert seed is not None, "no tie-free weight seed"
        model = build(seed)
        print(f"tome: weight seed {seed}, smallest decision gap {min(gaps):.2e} (cosine)")

        f, path = open_fixture("vit_tome.h5", CFG, BATCH,
                               {"timm_commit": TIMM_COMMIT, "tome_commit": TOME_COMMIT,
                                "weight_seed": np.int64(seed), "min_gap": np.float64(min(gaps))})
        with f:
            for name, p in model.named_parameters():
                put(f, f"model/{name}", p)
            put(f, "input/images", images)
            put(f, "input/labels", labels)
            put(f, "input/targets", targets)
            model.r = 0
            with torch.no_grad():
                put(f, "dense/logits", model(images))
            for name, r in CASES.items():
                model.zero_grad()
                logits, per_block, schedule = traced_forward(model, images, r)
                check_logits_spread(logits, name)
                loss = R.soft_target_ce(logits, targets)
                loss.backward()
                g = f.create_group(name)
                g.attrs["schedule"] = np.asarray(schedule, dtype=np.int64)
                put(f, f"{name}/logits", logits)
                put(f, f"{name}/loss", np.float32(loss.item()))
                counts = []
                for i, rec in enumerate(per_block):
                    src = rec["source"]
                    if src is None:          # nothing merged yet: identity
                        n = rec["t_in"]
                        grp = torch.arange(n).expand(BATCH, n)
                        size = torch.ones(BATCH, n)
                    else:
                        grp, size = groups_of(src), rec["size"]
                    counts.append(size.shape[1])
                    put(f, f"{name}/group_b{i}", grp)
                    put(f, f"{name}/size_b{i}", size)
                g.attrs["tokens_after"] = np.asarray(counts, dtype=np.int64)
                if name == GRAD_CASE:
                    for pname, p in model.named_parameters():
                        put(f, f"{name}/grad/{pname}", p.grad)
                print(f"  {name}: schedule {schedule}, tokens after each block {counts}, "
                      f"loss {loss.item():.6f}")
        report(path)


if __name__ == "__main__":
    main()
