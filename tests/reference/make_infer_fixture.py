"""Writes tests/fixtures/infer_tiny.h5: a tiny dTPS inference file written by h5py (not by the C
writer), in the layout `tpsc export` produces (docs/inference.md), plus the PyTorch reference
outputs of that model for a random batch, under /check (ignored by libtpsinfer):

  /check/input [3,3,32,32] float32, /check/logits [3,4], /check/kept_s{s} int64 [3, n_s]

Model: img 32, patch 8 (N = 16), C 32, 4 heads, depth 3, 4 classes, dtps with prune_loc [1,2]
and keep ratio 0.7 (keeps 11, then 7). The examples/ install test classifies an image with it.
Run with Debian's /usr/bin/python3 (torch 1.13, h5py); the seed is the first from 1 for which
every top-k cut and every host choice has a margin > 1e-4 (no decision hinges on rounding)."""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import vit_ref  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "infer_tiny.h5")
CFG = dict(img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=3, num_heads=4, num_classes=4, mlp_ratio=4.0)
PRUNE_LOC, KEEP = [1, 2], 0.7


def margins_ok(out):
    if vit_ref.HOST_MARGINS and min(vit_ref.HOST_MARGINS) <= 1e-4:
        return False
    for stage, s in enumerate(out["sorted_scores"]):
        k = out["kept"][stage].shape[1]
        if (s[:, k - 1] - s[:, k]).abs().min().item() <= 1e-4:
            return False
    return True


def main():
    torch.set_num_threads(1)
    for seed in range(1, 200):
        torch.manual_seed(seed)
        model = vit_ref.PruningViT("dtps", PRUNE_LOC, KEEP, **CFG).eval()
        vit_ref.init_random(model, seed)
        x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1000))
        vit_ref.HOST_MARGINS.clear()
        with torch.no_grad():
            out = model.forward_infer(x)
        if margins_ok(out):
            break
    logits = out["logits"]
    assert (logits.max(1).values - logits.min(1).values).min() > 0.5, "flat logits"
    with h5py.File(OUT, "w", libver="earliest") as f:
        a = f.attrs
        a["format"] = "tpsc-inference"
        a["format_version"] = np.int64(1)
        a["arch"] = "custom"
        for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "num_classes"):
            a[k] = np.int64(CFG[k])
        a["mlp_ratio"] = np.float64(CFG["mlp_ratio"])
        a["ln_eps"] = np.float64(np.float32(1e-6))
        a["method"] = "dtps"
        a["prune_loc"] = np.array(PRUNE_LOC, dtype=np.int32)
        a["keep_frac"] = np.array([KEEP ** (s + 1) for s in range(len(PRUNE_LOC))], dtype=np.float32)
        a["squeeze_temp"] = np.float64(1.0)
        a["class_names"] = ["class_ant", "class_bee", "class_cat", "class_dog"]
        a["input_size"] = np.int64(32)
        a["crop_pct"] = np.float64(0.875)
        a["mean"] = np.array([0.485, 0.456, 0.406], dtype=np.float32)
        a["std"] = np.array([0.229, 0.224, 0.225], dtype=np.float32)
        a["interpolation"] = "bicubic"
        for name, p in model.state_dict().items():
            f.create_dataset("model/" + name, data=p.numpy().astype(np.float32), track_times=False)
        f.create_dataset("check/input", data=x.numpy(), track_times=False)
        f.create_dataset("check/logits", data=logits.numpy(), track_times=False)
        for s, kept in enumerate(out["kept"]):
            f.create_dataset(f"check/kept_s{s}", data=kept.numpy().astype(np.int64), track_times=False)
    print(f"seed {seed}; kept {[k.shape[1] for k in out['kept']]}; wrote {OUT}")


if __name__ == "__main__":
    main()
