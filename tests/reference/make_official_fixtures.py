#!/usr/bin/python3
"""Training-mode fixtures made by the official code itself, and official checkpoints converted.

    /usr/bin/python3 tests/reference/make_official_fixtures.py --official DIR

DIR holds checkouts of the official repositories at the pinned commits (README.md here says
how to get them):

    DIR/TPS-CVPR2023     megvii-research/TPS-CVPR2023   4ff58efc39ba003a7f769375176d1d8ed8de0b4e
    DIR/evit             youweiliang/evit               5ca95a7cf4a8637193284895c5bc0dd9dc365982
    DIR/timm-0.6.13      huggingface/pytorch-image-models v0.6.13 = 2696eedd1b1763b9da06e68c1af3c5ed360fe687
    DIR/timm-0.4.12      huggingface/pytorch-image-models v0.4.12 = 7096b52a613eefb4f6d8107366611c8983478b19

TPS pins timm 0.6.13 (environment.yml), EViT timm 0.4.12 (requirements.txt); each part runs in
its own interpreter with its own timm first on sys.path. Weights, images, soft targets and the
Gumbel uniforms are those of tests/fixtures/vit_dtps.h5 (chosen there so that no discrete
decision is near a tie). The official sampling is patched at one point only: Tensor.exponential_
(the draw inside TPS's functions.gumbel_softmax, as in torch's) returns -log(u) for the given
uniforms, so the Gumbel noise is g = -log(-log u) as the C engine computes it. Imports the
official code needs but the computation does not use (megfile, accelerate, orjson, sklearn,
GitPython via settings.py; torchprofile, lmdb, pyarrow, einops, tensorboardX) are stubbed.

Writes tests/fixtures/official_tps.h5, official_evit.h5 (training mode of the official code) and
interop_dtps_net.h5, interop_evit_nofuse.h5 (checkpoints saved by the official training code,
converted by tools/convert_timm.py), whose expected outputs are in the official_*.h5 files.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SOURCE = os.path.join(FIXTURES, "vit_dtps.h5")
PINNED = {"TPS-CVPR2023": "4ff58efc39ba003a7f769375176d1d8ed8de0b4e",
          "evit": "5ca95a7cf4a8637193284895c5bc0dd9dc365982",
          "timm-0.6.13": "2696eedd1b1763b9da06e68c1af3c5ed360fe687",
          "timm-0.4.12": "7096b52a613eefb4f6d8107366611c8983478b19"}
CFG = dict(img_size=32, patch_size=4, in_chans=3, embed_dim=32, depth=4, num_heads=4, num_classes=10,
           mlp_ratio=4.0)
PRUNE_LOC = [1, 2, 3]
KEEP = 0.7
WEIGHTS = dict(clf_weight=1.0, ratio_weight=2.0, distill_weight=0.5)  # dtps_deit_s_30e.sh: --axu_w 2 0.5


def stub_modules(names):
    for name in names:
        sys.modules[name] = types.ModuleType(name)


def check_commit(path, want):
    """The checkout's commit when it is a git work tree; archives cannot say, and are trusted."""
    try:
        got = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return
    if got and got != want and os.path.isdir(os.path.join(path, ".git")):
        sys.exit(f"{path} is at {got}, the fixtures pin {want}")


def load_source():
    import h5py
    import torch
    with h5py.File(SOURCE, "r") as f:
        model = {k: torch.from_numpy(v[()]) for k, v in f["model"].items()}
        images = torch.from_numpy(f["input/images"][()])
        targets = torch.from_numpy(f["input/targets"][()])
        uniforms = [torch.from_numpy(f[f"input/gumbel_u_s{s}"][()]) for s in range(len(PRUNE_LOC))]
    return model, images, targets, uniforms


class GivenNoise:
    """Tensor.exponential_ fills the tensor with -log(u) of the next given uniforms."""

    def __init__(self, torch, uniforms):
        self.torch, self.queue, self.orig = torch, list(uniforms), torch.Tensor.exponential_

    def __enter__(self):
        queue = self.queue

        def exponential_(t, *args, **kwargs):
            u = queue.pop(0)
            assert tuple(u.shape) == tuple(t.shape), (u.shape, t.shape)
            return t.copy_(-self.torch.log(u))
        self.torch.Tensor.exponential_ = exponential_
        return self

    def __exit__(self, *exc):
        self.torch.Tensor.exponential_ = self.orig
        assert not self.queue or exc[0], f"{len(self.queue)} noise tensors left unused"


def write_common(f, model, images, targets, uniforms, np):
    for k, v in CFG.items():
        f.attrs[k] = v
    f.attrs["format"] = "tpsc-fixture"
    f.attrs["batch"] = images.shape[0]
    f.attrs["prune_loc"] = np.asarray(PRUNE_LOC, dtype=np.int64)
    for k, v in model.items():
        f.create_dataset(f"model/{k}", data=v.numpy())
    f.create_dataset("input/images", data=images.numpy())
    f.create_dataset("input/targets", data=targets.numpy())
    for s, u in enumerate(uniforms):
        f.create_dataset(f"input/gumbel_u_s{s}", data=u.numpy())


def scalar(f, path, t):
    f.create_dataset(path, data=t.detach().to(dtype=t.dtype).reshape(()).numpy())


# ---- TPS-CVPR2023 (timm 0.6.13): dTPS and DynamicViT in training mode ------------------------

def tps_part(official, out_h5, ckpt_dir):
    code = os.path.join(official, "TPS-CVPR2023", "torch_codebase")
    sys.path[:0] = [os.path.join(official, "timm-0.6.13"), code]
    stub_modules(["sklearn", "sklearn.utils", "megfile", "accelerate", "orjson", "settings"])
    sys.modules["sklearn.utils"].shuffle = None
    sys.modules["accelerate"].Accelerator = None
    sys.modules["megfile"].smart_open = open  # utils.save_checkpoint writes through it
    import functools
    from argparse import Namespace

    import h5py
    import numpy as np
    import timm
    import torch
    import torch.nn as nn
    assert timm.__version__ == "0.6.13", timm.__version__
    import models.dynamic_vit as dv
    import utils
    from losses.loss import DistillKLLoss, KeepRatioLoss
    from timm.loss import SoftTargetCrossEntropy
    from timm.models.vision_transformer import VisionTransformer

    torch.set_num_threads(1)
    model_sd, images, targets, uniforms = load_source()
    backbone = {k: v for k, v in model_sd.items() if not k.startswith("score_predictor.")}

    def student(merge):
        # the factories' arguments (dynamic_deit_*_patch16_224[_token_merge_softmax_reweight]) at our size
        m = dv.DynamicVit(img_size=CFG["img_size"], patch_size=CFG["patch_size"], embed_dim=CFG["embed_dim"],
                          depth=CFG["depth"], num_heads=CFG["num_heads"], num_classes=CFG["num_classes"],
                          mlp_ratio=4, qkv_bias=True, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6),
                          no_embed_class=False, prune_loc=PRUNE_LOC, keep_ratio=KEEP, token_merge_module=merge)
        m.load_state_dict(model_sd, strict=True)
        return m

    # The teacher as train.py builds it: utils.get_modified_teacher_model(args) on timm's DeiT
    # (--tea deit_small_patch16_224 --prune_metric distill_kl_loss), here at our size with the
    # student's backbone weights instead of the pretrained download.
    def small_deit(name, pretrained=False, **kw):
        m = VisionTransformer(img_size=CFG["img_size"], patch_size=CFG["patch_size"], embed_dim=CFG["embed_dim"],
                              depth=CFG["depth"], num_heads=CFG["num_heads"], num_classes=CFG["num_classes"],
                              mlp_ratio=4, qkv_bias=True)
        m.load_state_dict(backbone, strict=True)
        return m
    utils.timm.create_model = small_deit
    teacher = utils.get_modified_teacher_model(Namespace(tea="deit_small_patch16_224",
                                                         prune_metric="distill_kl_loss"))
    teacher.eval()

    with h5py.File(out_h5, "w", track_order=False) as f:
        write_common(f, model_sd, images, targets, uniforms, np)
        f.attrs["keep_ratio"] = KEEP
        for k, v in WEIGHTS.items():
            f.attrs[k] = v
        with torch.no_grad():
            t_logits, _ = teacher(images)
        f.create_dataset("teacher/logits", data=t_logits.numpy())

        for name, temp in (("dtps", 1.0), ("dynamicvit", None), ("dtps_t05", 0.5)):
            merge = dv.TPSModule(temperature=temp) if temp is not None else None
            net = student(merge)
            net.train()
            squeeze_io = []
            if merge is not None:
                merge.register_forward_hook(lambda mod, inp, outp: squeeze_io.append((inp[0].detach(),
                                                                                     outp.detach())))
            with GivenNoise(torch, uniforms):
                pred, spatial, last_decision, hard, logit_list = net(images)
            g = f.create_group(f"{name}/train")
            g.create_dataset("logits", data=pred.detach().numpy())
            for s, keep in enumerate(hard):
                g.create_dataset(f"keep_s{s}", data=keep.detach().numpy())
                # the decisions must not hinge on a tie
                y = logit_list[s].detach().numpy() - np.log(-np.log(uniforms[s].numpy()))
                margin = np.abs(y[..., 0] - y[..., 1])[keep_prev_mask(hard, s, np)]
                assert margin.min() > 1e-3, (name, s, margin.min())
            for s, (x_in, x_out) in enumerate(squeeze_io):
                g.create_dataset(f"squeeze_in_s{s}", data=x_in.numpy())   # spatial tokens entering stage s [B,N,C]
                g.create_dataset(f"squeezed_s{s}", data=x_out.numpy())    # after TPSModule [B,N,C]
            if name == "dtps_t05":
                g.parent.attrs["squeeze_temp"] = temp
                continue
            # train.py's criteria, each at its official weight, summed with weight 1
            ce = SoftTargetCrossEntropy()(pred, targets)
            with torch.no_grad():
                pred_t, spatial_t = teacher(images)[:2]
            arch = "dynamic_deit_small_patch16_224" + ("_token_merge_softmax_reweight" if merge else "")
            ratio = KeepRatioLoss(net, Namespace(axu_w=WEIGHTS["ratio_weight"]))(hard)
            distill = DistillKLLoss(net, Namespace(axu_w=WEIGHTS["distill_weight"], mse_token_loss=False, arch=arch))(
                pred, pred_t, spatial, last_decision, spatial_t)
            loss = ce + ratio + distill
            # the unweighted parts, from the same classes at weight 1 (cls only: a non-dynamic arch)
            ratio1 = KeepRatioLoss(net, Namespace(axu_w=1.0))(hard)
            cls1 = DistillKLLoss(net, Namespace(axu_w=1.0, mse_token_loss=False, arch="deit"))(pred, pred_t)
            both1 = DistillKLLoss(net, Namespace(axu_w=1.0, mse_token_loss=False, arch=arch))(
                pred, pred_t, spatial, last_decision, spatial_t)
            for part, t in (("loss_ce", ce), ("loss_ratio", ratio1), ("loss_cls_kl", cls1),
                            ("loss_token_kl", both1 - cls1), ("loss", loss)):
                scalar(g, part, t)
            net.zero_grad()
            loss.backward()
            for k, p in net.named_parameters():
                g.create_dataset(f"grad/{k}", data=p.grad.numpy())
            print(f"{name}: loss {loss.item():.6f} (ce {ce.item():.6f}, ratio {ratio1.item():.6f}, cls {cls1.item():.6f},"
                  f" token {(both1 - cls1).item():.6f}); kept per stage "
                  f"{[int(k.sum().item()) for k in hard]}")

            # Inference of the same weights, and the checkpoint train.py saves for them.
            net.eval()
            with torch.no_grad():
                logits = net(images)[0]
            f.create_dataset(f"{name}/infer/logits", data=logits.numpy())
            if name == "dtps":
                opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
                save_info = {"net": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 0,
                             "metrics": {"acc1": 0.0}, "scheduler": {}, "scaler": {}}
                utils.save_checkpoint(ckpt_dir, save_info, "latest")  # train.py's own call


def keep_prev_mask(hard, s, np):
    """Tokens still alive before stage s (the decision of the others is masked by prev)."""
    if s == 0:
        return np.ones(hard[0].shape, dtype=bool)
    return hard[s - 1].detach().numpy() > 0.5


# ---- youweiliang/evit (timm 0.4.12): EViT with and without token fusion ----------------------

def evit_part(official, out_h5, ckpt_dir):
    sys.path[:0] = [os.path.join(official, "timm-0.4.12"), os.path.join(official, "evit")]
    # helpers.py needs torchprofile; main.py (for its argument parser) lmdb, pyarrow, einops, tensorboardX
    stub_modules(["torchprofile", "lmdb", "pyarrow", "einops", "tensorboardX"])
    sys.modules["torchprofile"].profile_macs = None
    sys.modules["einops"].rearrange = None
    sys.modules["tensorboardX"].SummaryWriter = None
    import h5py
    import numpy as np
    import timm
    import torch
    assert timm.__version__ == "0.4.12", timm.__version__
    import evit
    from losses import DistillationLoss
    from timm.loss import SoftTargetCrossEntropy

    torch.set_num_threads(1)
    model_sd, images, targets, uniforms = load_source()
    backbone = {k: v for k, v in model_sd.items() if not k.startswith("score_predictor.")}

    def build(fuse, drop_loc=tuple(PRUNE_LOC), small=True):
        """The factory of the published runs (run_code.sh: --model deit_small_patch16_shrink_base),
        at our size (its keyword arguments override the DeiT-S ones) or at DeiT-S's."""
        size = {}
        if small:
            size = dict(img_size=CFG["img_size"], patch_size=CFG["patch_size"], embed_dim=CFG["embed_dim"],
                        depth=CFG["depth"], num_heads=CFG["num_heads"], num_classes=CFG["num_classes"],
                        keep_rate=tuple(KEEP if i in drop_loc else 1 for i in range(CFG["depth"])))
        net = evit.deit_small_patch16_shrink_base(base_keep_rate=KEEP, drop_loc=drop_loc, fuse_token=fuse, **size)
        if small:
            net.load_state_dict(backbone, strict=True)
        return net

    with h5py.File(out_h5, "w") as f:
        write_common(f, backbone, images, targets, [], np)
        for name, fuse in (("evit", True), ("evit_nofuse", False)):
            net = build(fuse)
            g = f.create_group(name)
            g.attrs["keep_rate"] = KEEP
            g.attrs["fuse_token"] = int(fuse)
            # training: engine.train_one_epoch's criterion (DistillationLoss, distillation 'none')
            net.train()
            logits, idxs = net(images, get_idx=True)
            crit = DistillationLoss(SoftTargetCrossEntropy(), None, "none", 0.0, 1.0)
            loss = crit(images, logits, targets)
            t = g.create_group("train")
            t.create_dataset("logits", data=logits.detach().numpy())
            scalar(t, "loss_ce", loss)
            net.zero_grad()
            loss.backward()
            for k, p in net.named_parameters():
                t.create_dataset(f"grad/{k}", data=p.grad.numpy())
            kept, counts = original_indices(idxs, fuse, images.shape[0], (CFG["img_size"] // CFG["patch_size"]) ** 2)
            g.attrs["keep_counts"] = np.asarray(counts, dtype=np.int64)
            net.eval()
            with torch.no_grad():
                logits_eval, idxs_eval = net(images, get_idx=True)
            kept_eval, _ = original_indices(idxs_eval, fuse, images.shape[0], (CFG["img_size"] // CFG["patch_size"]) ** 2)
            e = g.create_group("infer")
            e.create_dataset("logits", data=logits_eval.numpy())
            for s, k in enumerate(kept_eval):
                e.create_dataset(f"kept_s{s}", data=k)
                assert np.array_equal(k, kept[s])
            print(f"{name}: loss_ce {loss.item():.6f}, kept per stage {counts}")

        # DeiT-S at the published keep rate: the counts per stage with and without fusion
        for name, fuse in (("deit_s_counts_fused", True), ("deit_s_counts_nofuse", False)):
            torch.manual_seed(0)
            net = build(fuse, drop_loc=(3, 6, 9), small=False)
            net.eval()
            with torch.no_grad():
                _, idxs = net(torch.randn(1, 3, 224, 224), get_idx=True)
            f.attrs[name] = np.asarray([i.shape[1] for i in idxs], dtype=np.int64)
            print(f"DeiT-S, keep rate {KEEP}, fuse_token {fuse}: kept per stage {list(f.attrs[name])}")

        # The checkpoint EViT's main.py saves (utils.save_on_master of {'model', 'optimizer',
        # 'lr_scheduler', 'epoch', 'model_ema', 'scaler', 'args'}) for the non-fused model, with
        # the argparse Namespace of its own parser.
        import main as evit_main
        args = evit_main.get_args_parser().parse_args(
            ["--model", "deit_small_patch16_shrink_base", "--base_keep_rate", str(KEEP),
             "--drop_loc", str(tuple(PRUNE_LOC))])
        assert args.fuse_token is False
        net = build(False)
        import utils as evit_utils
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        evit_utils.save_on_master({"model": net.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": {},
                                   "epoch": 0, "model_ema": net.state_dict(), "scaler": {}, "args": args},
                                  os.path.join(ckpt_dir, "checkpoint.pth"))


def original_indices(idxs, fuse, B, N):
    """EViT's per-stage top-k indices (into the current tokens) as original patch indices; the
    fused token (last position of the sequence after a fusing stage) is -1."""
    import numpy as np
    orig = np.tile(np.arange(N), (B, 1))
    kept, counts = [], []
    for idx in idxs:
        idx = idx.numpy()
        k = np.take_along_axis(orig, idx, axis=1)
        kept.append(k.astype(np.int64))
        counts.append(idx.shape[1])
        orig = np.concatenate([k, -np.ones((B, 1), dtype=k.dtype)], axis=1) if fuse else k
    return kept, counts


def convert(args, src, dst):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "convert_timm.py"), "--arch", "custom", "--num-heads",
           str(CFG["num_heads"])] + args + [src, dst]
    print(" ".join(cmd[1:]))
    subprocess.run(cmd, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="directory with the four checkouts")
    ap.add_argument("--part", choices=["tps", "evit"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt-dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part == "tps":
        return tps_part(a.official, a.out, a.ckpt_dir)
    if a.part == "evit":
        return evit_part(a.official, a.out, a.ckpt_dir)
    for name, commit in PINNED.items():
        path = os.path.join(a.official, name)
        if not os.path.isdir(path):
            sys.exit(f"{path}: missing (README.md: how to fetch the pinned checkouts)")
        check_commit(path, commit)
    with tempfile.TemporaryDirectory() as d:
        for part, out in (("tps", "official_tps.h5"), ("evit", "official_evit.h5")):
            os.makedirs(os.path.join(d, part))
            subprocess.run([sys.executable, os.path.abspath(__file__), "--official", a.official, "--part", part,
                            "--out", os.path.join(FIXTURES, out), "--ckpt-dir", os.path.join(d, part)], check=True,
                           cwd=os.path.join(a.official, "evit" if part == "evit" else "TPS-CVPR2023/torch_codebase"))
        convert(["--method", "dtps", "--prune-loc", ",".join(map(str, PRUNE_LOC)), "--keep-ratio", str(KEEP)],
                os.path.join(d, "tps", "latest"), os.path.join(FIXTURES, "interop_dtps_net.h5"))
        convert([], os.path.join(d, "evit", "checkpoint.pth"), os.path.join(FIXTURES, "interop_evit_nofuse.h5"))


if __name__ == "__main__":
    sys.exit(main())
