#!/usr/bin/python3
"""Writes the committed HDF5 fixtures the C tests compare against (no torch needed in CI).

Run from anywhere with Debian's python (it has torch 1.13 and h5py):
    /usr/bin/python3 tests/reference/make_fixtures.py [dense|adamw|tps ...]
The layout of every file is a contract with the C tests; see tests/reference/README.md.
"""
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vit_ref as R  # noqa: E402

FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))

DENSE_CFG = dict(img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=4, num_heads=4,
                 num_classes=10, mlp_ratio=4.0)
BATCH = 3


# ----------------------------------------------------------------------------- h5 helpers
def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def put(f, path, value):
    """float tensors -> float32, integer tensors -> int64; no timestamps (reproducible bytes)."""
    if isinstance(value, torch.Tensor):
        if value.dtype in (torch.int64, torch.int32, torch.bool):
            arr = np.ascontiguousarray(value.detach().cpu().numpy().astype(np.int64))
        else:
            arr = f32(value)
    else:
        arr = np.asarray(value)
    f.create_dataset(path, data=arr, track_times=False)


def open_fixture(name, cfg, batch, extra_attrs=None):
    path = os.path.join(FIXTURES, name)
    f = h5py.File(path, "w", libver="earliest")
    f.attrs["format"] = "tpsc-fixture"
    for k, v in cfg.items():
        f.attrs[k] = np.float64(v) if isinstance(v, float) else np.int64(v)
    f.attrs["batch"] = np.int64(batch)
    for k, v in (extra_attrs or {}).items():
        f.attrs[k] = v
    return f, path


def make_inputs(cfg, seed, batch=BATCH):
    g = torch.Generator().manual_seed(seed)
    img = cfg["img_size"]
    images = torch.randn((batch, cfg["in_chans"], img, img), generator=g).to(torch.float32)
    labels = torch.randperm(cfg["num_classes"], generator=g)[:batch].to(torch.int64)
    targets = R.mixed_soft_targets(labels, cfg["num_classes"], lam=0.7, smoothing=0.1)
    return images, labels, targets


def put_inputs(f, images, labels, targets):
    put(f, "input/images", images)
    put(f, "input/labels", labels)
    put(f, "input/targets", targets)


def put_params(f, group, model):
    for name, p in model.named_parameters():
        put(f, f"{group}/{name}", p)


def report(path):
    print(f"  wrote {os.path.relpath(path)}: {os.path.getsize(path)} bytes")


def check_logits_spread(logits, what):
    """Random weights must give logits that differ across classes, or a bug hides."""
    spread = (logits.max(dim=-1)[0] - logits.min(dim=-1)[0]).min().item()
    assert spread > 1.0, f"{what}: logits too flat (min row spread {spread:.3f})"
    return spread


# ----------------------------------------------------------------------------- 1. dense
def make_dense():
    model = R.ViT(**DENSE_CFG)
    R.init_random(model, seed=1234)
    images, labels, targets = make_inputs(DENSE_CFG, seed=99)
    logits = model(images)
    loss = R.soft_target_ce(logits, targets)
    loss_smooth = R.label_smoothing_ce(logits, labels, smoothing=0.1)
    model.zero_grad()
    loss.backward()
    spread = check_logits_spread(logits, "dense")

    f, path = open_fixture("vit_dense.h5", DENSE_CFG, BATCH)
    with f:
        put_params(f, "model", model)
        put_inputs(f, images, labels, targets)
        put(f, "output/logits", logits)
        put(f, "output/loss", np.float32(loss.item()))
        put(f, "output/loss_smooth", np.float32(loss_smooth.item()))
        for name, p in model.named_parameters():
            put(f, f"grad/{name}", p.grad)
    print(f"dense: loss {loss.item():.6f} loss_smooth {loss_smooth.item():.6f} "
          f"logit spread {spread:.3f} logits[0] {logits[0].detach().numpy().round(3)}")
    report(path)


# ----------------------------------------------------------------------------- 2. adamw
ADAMW = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05)
ADAMW_STEPS = 5
ADAMW_FINAL = ["head.weight", "head.bias", "blocks.0.attn.qkv.weight", "blocks.3.mlp.fc2.weight",
               "cls_token", "pos_embed", "norm.weight", "patch_embed.proj.weight"]
NO_WEIGHT_DECAY = {"cls_token", "pos_embed"}     # DeiT's model.no_weight_decay()


def param_groups_weight_decay(model, weight_decay):
    """timm optim_factory.param_groups_weight_decay: 1-D params (norms, biases) and the
    model's no_weight_decay() names get no decay; everything else decays."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim <= 1 or name.endswith(".bias") or name in NO_WEIGHT_DECAY:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay}]


def make_adamw():
    model = R.ViT(**DENSE_CFG)
    R.init_random(model, seed=4321)
    images, labels, targets = make_inputs(DENSE_CFG, seed=77)
    f, path = open_fixture("vit_adamw.h5", DENSE_CFG, BATCH,
                           {k: np.float64(v) for k, v in ADAMW.items()} | {"steps": np.int64(ADAMW_STEPS)})
    with f:
        put_params(f, "model", model)           # initial values, before any step
        put_inputs(f, images, labels, targets)
        opt = torch.optim.AdamW(param_groups_weight_decay(model, ADAMW["weight_decay"]),
                                lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]),
                                eps=ADAMW["eps"])
        losses = []
        for _ in range(ADAMW_STEPS):
            opt.zero_grad(set_to_none=False)
            loss = R.soft_target_ce(model(images), targets)
            loss.backward()
            losses.append(loss.item())
            opt.step()
        put(f, "adamw/losses", np.asarray(losses, dtype=np.float32))
        params = dict(model.named_parameters())
        for name in ADAMW_FINAL:
            put(f, f"adamw/final/{name}", params[name])
    assert losses[-1] < losses[0] - 0.5, f"adamw: loss did not fall {losses}"
    print("adamw: losses " + " ".join(f"{v:.6f}" for v in losses))
    report(path)


def main(argv):
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    os.makedirs(FIXTURES, exist_ok=True)
    todo = argv[1:] or ["dense", "adamw", "tps"]
    makers = {"dense": make_dense, "adamw": make_adamw}
    for what in todo:
        if what in makers:
            makers[what]()
        else:
            print(f"skip {what}: not written yet")


if __name__ == "__main__":
    main(sys.argv)
