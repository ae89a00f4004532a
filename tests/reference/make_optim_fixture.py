#!/usr/bin/python3
"""Writes tests/fixtures/optim_ref.h5: PyTorch 1.13's optimisers on a few tiny named tensors,
for tests/test_optim.c (no torch needed to run the tests).

Run with Debian's python (it has torch 1.13 and h5py):
    /usr/bin/python3 tests/reference/make_optim_fixture.py

Layout (float32 unless noted; <name> is a timm-style parameter name):
  attrs                 lr, weight_decay, beta1, beta2, eps, scale_backbone, scale_predictor,
                        momentum, sgd_weight_decay, clip_max_norm, ema_decay, steps,
                        sched_* (the cosine schedules' knobs)
  init/<name>           parameters before step 0 (frozen ones included)
  grads/<name>          [steps, *shape]: the gradient fed at each step (fixed, not from a loss)
  adamw/lr              [steps] float64: base lr per step (before the per-group scale)
  adamw/final/<name>, adamw/exp_avg/<name>, adamw/exp_avg_sq/<name>
  sgd/final/<name>, sgd/momentum_buffer/<name>           momentum, coupled decay
  sgd_nesterov/final/<name>
  clip/norm [1] float32; clip/grad/<name>                clip_grad_norm_ on step 0's gradients
  ema/final/<name>                                       ModelEmaV2 over the AdamW run
  schedule/cosine_prefix, schedule/cosine_timm  float64 [sched_total]  (see below)
The frozen parameter (pos_embed) has requires_grad False, so PyTorch never sees a gradient
for it; its grads/ rows are still filled so the C test can prove they are ignored.
"""
import math
import os

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "fixtures", "optim_ref.h5"))

# name -> (shape, no_decay, lr group); no_decay follows timm's param_groups_weight_decay
# (ndim <= 1, ".bias", DeiT's no_weight_decay() names), group 1 = "score_predictor."
PARAMS = [
    ("cls_token", (1, 1, 4), True, 0),
    ("pos_embed", (1, 3, 4), True, 0),  # frozen in this fixture
    ("blocks.0.norm1.weight", (4,), True, 0),
    ("blocks.0.attn.qkv.weight", (6, 4), False, 0),
    ("score_predictor.0.in_conv.1.weight", (4, 4), False, 1),
    ("score_predictor.0.in_conv.1.bias", (4,), True, 1),
]
FROZEN = {"pos_embed"}
STEPS = 5
CFG = dict(lr=2e-2, weight_decay=0.05, beta1=0.9, beta2=0.999, eps=1e-8,
           scale_backbone=0.1, scale_predictor=1.0, momentum=0.9, sgd_weight_decay=1e-2,
           clip_max_norm=1.0, ema_decay=0.9)
# Cosine schedules checked value by value.
SCHED = dict(sched_base_lr=5e-4, sched_warmup_lr=1e-6, sched_min_lr=1e-5, sched_warmup=3,
             sched_total=20)
# The AdamW run uses a short cosine so the lr changes every step (warm-up 2 of 5 steps).
ADAMW_SCHED = dict(base=CFG["lr"], warmup_lr=1e-4, min_lr=1e-3, warmup=2, total=STEPS)


def cosine_lr(step, base, warmup_lr, min_lr, warmup, total, warmup_prefix):
    """timm CosineLRScheduler._get_lr (timm/scheduler/cosine_lr.py, cycle_limit 1, decay_rate 1,
    no noise, k 1) with t counted in optimiser steps:
      t < warmup_t: warmup_lr_init + t * s,  s = (lr - warmup_lr_init) / warmup_t
      else: if warmup_prefix: t -= warmup_t
            i = t // t_initial; lr_min + 0.5 * (lr - lr_min) * (1 + cos(pi * t_curr / t_i))
            while i < cycle_limit, else lr_min.
    warmup_prefix False is timm exactly with t_initial = total (DeiT's create_scheduler).
    warmup_prefix True is tpsc's default: the cycle t_initial = total - 1 - warmup is chosen so
    the run's last step (total - 1) lands on lr_min."""
    if step < warmup:
        return warmup_lr + step * ((base - warmup_lr) / warmup)
    t = step - warmup if warmup_prefix else step
    t_initial = total - 1 - warmup if warmup_prefix else total
    if t // t_initial >= 1:
        return min_lr
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * t / t_initial))


def put(f, path, value, dtype=np.float32):
    arr = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    f.create_dataset(path, data=np.ascontiguousarray(arr.astype(dtype)), track_times=False)


def make_params(gen):
    params = {}
    for name, shape, _, _ in PARAMS:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen))
        p.requires_grad_(name not in FROZEN)
        params[name] = p
    return params


def clone_params(init):
    out = {}
    for name, p in init.items():
        q = torch.nn.Parameter(p.detach().clone())
        q.requires_grad_(p.requires_grad)
        out[name] = q
    return out


def groups(params, lr, wd):
    """Four torch param groups: {backbone, predictor} x {decay, no decay}; lr scaled per group."""
    scale = {0: CFG["scale_backbone"], 1: CFG["scale_predictor"]}
    out = []
    for g in (0, 1):
        for no_decay in (False, True):
            ps = [params[n] for n, _, nd, gr in PARAMS
                  if gr == g and nd == no_decay and n not in FROZEN]
            if ps:
                out.append({"params": ps, "lr": lr * scale[g], "scale": scale[g],
                            "weight_decay": 0.0 if no_decay else wd})
    return out


def feed(params, grads, step):
    for name, p in params.items():
        if p.requires_grad:
            p.grad = grads[name][step].clone()


def main():
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20231)
    init = make_params(gen)
    # Gradients of mixed sign and size; one tensor small so eps matters a little.
    grads = {}
    for name, shape, _, _ in PARAMS:
        g = torch.randn((STEPS,) + shape, generator=gen)
        grads[name] = g * (1e-3 if name == "blocks.0.norm1.weight" else 1.0)

    with h5py.File(OUT, "w", libver="earliest") as f:
        f.attrs["format"] = "tpsc-optim-fixture"
        f.attrs["torch"] = str(torch.__version__).encode()
        for k, v in CFG.items():
            f.attrs[k] = np.float64(v)
        for k, v in SCHED.items():
            f.attrs[k] = np.int64(v) if isinstance(v, int) else np.float64(v)
        f.attrs["steps"] = np.int64(STEPS)
        for name, p in init.items():
            put(f, f"init/{name}", p)
            put(f, f"grads/{name}", grads[name])

        # AdamW, lr from a cosine schedule per step, per-group scale.
        params = clone_params(init)
        opt = torch.optim.AdamW(groups(params, CFG["lr"], CFG["weight_decay"]), lr=CFG["lr"],
                                betas=(CFG["beta1"], CFG["beta2"]), eps=CFG["eps"])
        ema = {n: p.detach().clone() for n, p in params.items()}
        lrs = []
        for step in range(STEPS):
            lr = cosine_lr(step, ADAMW_SCHED["base"], ADAMW_SCHED["warmup_lr"], ADAMW_SCHED["min_lr"],
                           ADAMW_SCHED["warmup"], ADAMW_SCHED["total"], True)
            lrs.append(lr)
            for g in opt.param_groups:
                g["lr"] = lr * g["scale"]
            feed(params, grads, step)
            opt.step()
            # timm ModelEmaV2._update: ema_v.copy_(ema_v * decay + (1. - decay) * model_v)
            with torch.no_grad():
                d = CFG["ema_decay"]
                for n, p in params.items():
                    ema[n].copy_(ema[n] * d + (1.0 - d) * p)
        put(f, "adamw/lr", lrs, np.float64)
        for name, p in params.items():
            put(f, f"adamw/final/{name}", p)
            put(f, f"ema/final/{name}", ema[name])
            if p.requires_grad:
                st = opt.state[p]
                assert int(st["step"]) == STEPS
                put(f, f"adamw/exp_avg/{name}", st["exp_avg"])
                put(f, f"adamw/exp_avg_sq/{name}", st["exp_avg_sq"])
            else:
                assert torch.equal(p, init[name])

        # SGD with momentum, coupled weight decay; plain and Nesterov.
        for tag, nesterov in (("sgd", False), ("sgd_nesterov", True)):
            params = clone_params(init)
            opt = torch.optim.SGD(groups(params, CFG["lr"], CFG["sgd_weight_decay"]), lr=CFG["lr"],
                                  momentum=CFG["momentum"], nesterov=nesterov)
            for step in range(STEPS):
                feed(params, grads, step)
                opt.step()
            for name, p in params.items():
                put(f, f"{tag}/final/{name}", p)
                if p.requires_grad and not nesterov:
                    put(f, f"{tag}/momentum_buffer/{name}", opt.state[p]["momentum_buffer"])

        # clip_grad_norm_ over the trainable parameters' step-0 gradients.
        params = clone_params(init)
        feed(params, grads, 0)
        trainable = [p for p in params.values() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(trainable, CFG["clip_max_norm"])
        assert norm.item() > CFG["clip_max_norm"], "the fixture must actually clip"
        put(f, "clip/norm", [norm.item()])
        for name, p in params.items():
            if p.requires_grad:
                put(f, f"clip/grad/{name}", p.grad)

        s = SCHED
        for tag, prefix in (("cosine_prefix", True), ("cosine_timm", False)):
            put(f, f"schedule/{tag}",
                [cosine_lr(t, s["sched_base_lr"], s["sched_warmup_lr"], s["sched_min_lr"],
                           s["sched_warmup"], s["sched_total"], prefix)
                 for t in range(s["sched_total"])], np.float64)
    print(f"{OUT}: {os.path.getsize(OUT)} bytes, lrs {lrs}, clip norm {norm.item():.6f}")


if __name__ == "__main__":
    main()
