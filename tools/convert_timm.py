#!/usr/bin/python3
"""Convert timm / DeiT / official-TPS PyTorch weights to a tpsc HDF5 checkpoint, and back.

    tools/convert_timm.py --arch deit_small_patch16_224 [--method dtps] IN.pth OUT.h5
    tools/convert_timm.py --to-pth IN.h5 OUT.pth
    tools/convert_timm.py --self-test

The .h5 gets the root attributes of a tpsc checkpoint (format, format_version, the ViT and TPS
configuration) and one float32 dataset per parameter under /model, named exactly as in the
state dict (timm and official TPS names, e.g. score_predictor.0.in_conv.1.weight) and in
PyTorch's shapes. Every key is checked against the architecture: an unknown, missing or
mis-shaped tensor is refused with its name. Layout: docs/checkpoints.md.

Needs torch and h5py (Debian: python3-torch python3-h5py; run with /usr/bin/python3).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

FORMAT = "tpsc-checkpoint"
FORMAT_VERSION = 1

# timm's DeiT configurations (src/model/vit.h: vit_config_named).
ARCHS = {
    "deit_tiny_patch16_224": dict(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "deit_small_patch16_224": dict(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "deit_base_patch16_224": dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12),
}
METHODS = ["none", "dynamicvit", "dtps", "evit", "etps"]
PREDICTOR_METHODS = {"dynamicvit", "dtps"}


class ConvertError(Exception):
    pass


def unwrap(obj, path):
    """The state dict inside a training checkpoint ({"model": ...} etc.), "module." stripped."""
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ConvertError(f"{path}: no state dict of tensors found (looked for 'model', 'state_dict', 'model_ema')")
    out = {}
    for k, v in obj.items():
        name = k[len("module."):] if k.startswith("module.") else k
        out[name] = v
    return out


def infer_config(sd, args, path):
    """The ViT configuration: the named arch's, checked against (or, for custom, read from) the tensors."""
    for need in ("patch_embed.proj.weight", "pos_embed", "head.weight", "blocks.0.mlp.fc1.weight"):
        if need not in sd:
            raise ConvertError(f"{path}: {need} is missing; not a timm ViT/DeiT state dict")
    C, in_chans, p, _ = sd["patch_embed.proj.weight"].shape
    n_patches = sd["pos_embed"].shape[1] - 1
    grid = int(round(n_patches ** 0.5))
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    found = dict(img_size=grid * p, patch_size=p, embed_dim=C, depth=depth)
    if args.arch in ARCHS:
        want = ARCHS[args.arch]
        for k, v in found.items():
            if want[k] != v:
                raise ConvertError(f"{path}: {args.arch} has {k} {want[k]}, the state dict has {v}")
        num_heads = want["num_heads"]
    elif args.arch == "custom":
        if not args.num_heads:
            raise ConvertError("--arch custom needs --num-heads (it cannot be read from the weights)")
        num_heads = args.num_heads
    else:
        raise ConvertError(f"unknown --arch {args.arch}; known: {', '.join(ARCHS)} or custom")
    if grid * grid != n_patches:
        raise ConvertError(f"{path}: pos_embed has {n_patches} patch positions, not a square grid")
    if C % num_heads:
        raise ConvertError(f"embed_dim {C} is not divisible by num_heads {num_heads}")
    hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
    return dict(arch=args.arch, img_size=grid * p, patch_size=p, in_chans=in_chans, embed_dim=C, depth=depth,
                num_heads=num_heads, num_classes=sd["head.weight"].shape[0], mlp_ratio=hidden / C, ln_eps=1e-6)


def expected_shapes(cfg, method, n_stages):
    """Every parameter name of the model with its PyTorch shape, as the C model declares them."""
    C, P, K = cfg["embed_dim"], cfg["patch_size"], cfg["num_classes"]
    hid = int(round(C * cfg["mlp_ratio"]))
    n = (cfg["img_size"] // P) ** 2
    s = {"cls_token": (1, 1, C), "pos_embed": (1, 1 + n, C),
         "patch_embed.proj.weight": (C, cfg["in_chans"], P, P), "patch_embed.proj.bias": (C,)}
    for i in range(cfg["depth"]):
        b = f"blocks.{i}."
        s.update({b + "norm1.weight": (C,), b + "norm1.bias": (C,),
                  b + "attn.qkv.weight": (3 * C, C), b + "attn.qkv.bias": (3 * C,),
                  b + "attn.proj.weight": (C, C), b + "attn.proj.bias": (C,),
                  b + "norm2.weight": (C,), b + "norm2.bias": (C,),
                  b + "mlp.fc1.weight": (hid, C), b + "mlp.fc1.bias": (hid,),
                  b + "mlp.fc2.weight": (C, hid), b + "mlp.fc2.bias": (C,)})
    s.update({"norm.weight": (C,), "norm.bias": (C,), "head.weight": (K, C), "head.bias": (K,)})
    if method in PREDICTOR_METHODS:
        # DynamicViT's PredictorLG: LayerNorm, Linear C->C, then Linears C->C/2->C/4->2.
        for st in range(n_stages):
            b = f"score_predictor.{st}."
            s.update({b + "in_conv.0.weight": (C,), b + "in_conv.0.bias": (C,),
                      b + "in_conv.1.weight": (C, C), b + "in_conv.1.bias": (C,),
                      b + "out_conv.0.weight": (C // 2, C), b + "out_conv.0.bias": (C // 2,),
                      b + "out_conv.2.weight": (C // 4, C // 2), b + "out_conv.2.bias": (C // 4,),
                      b + "out_conv.4.weight": (2, C // 4), b + "out_conv.4.bias": (2,)})
    return s


def check_keys(sd, want, path, method):
    missing = sorted(k for k in want if k not in sd)
    unknown = sorted(k for k in sd if k not in want)
    problems = []
    if unknown:
        problems.append("unknown tensors (not in this architecture): " + ", ".join(unknown))
    if missing:
        hint = ""
        if method in PREDICTOR_METHODS and all(k.startswith("score_predictor.") for k in missing):
            hint = (" (a dense checkpoint: convert it with --method none; the trainer initialises the "
                    "predictors when fine-tuning)")
        problems.append("missing tensors: " + ", ".join(missing) + hint)
    for k in sorted(want):
        if k in sd and tuple(sd[k].shape) != want[k]:
            problems.append(f"{k} has shape {list(sd[k].shape)}, expected {list(want[k])}")
    if problems:
        raise ConvertError(f"{path}: " + "; ".join(problems))


def git_describe():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=here,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_h5(sd, cfg, method, prune_loc, keep_frac, out_path, source, recipe=""):
    """Atomic like the C writer: a temporary in the same directory, renamed over OUT."""
    d = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(out_path) + ".tmp-", dir=d)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            a = f.attrs
            a["format"] = FORMAT
            a["format_version"] = np.int64(FORMAT_VERSION)
            a["arch"] = cfg["arch"]
            for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "num_classes"):
                a[k] = np.int64(cfg[k])
            a["mlp_ratio"] = np.float64(np.float32(cfg["mlp_ratio"]))
            a["ln_eps"] = np.float64(np.float32(cfg["ln_eps"]))
            a["method"] = method
            a["prune_loc"] = np.asarray(prune_loc, dtype=np.int32)
            a["keep_frac"] = np.asarray(keep_frac, dtype=np.float32)
            a["squeeze_temp"] = np.float64(1.0)
            a["git_describe"] = git_describe()
            a.create("class_names", np.array([], dtype=object), dtype=h5py.string_dtype())
            a["recipe"] = recipe
            a["converted_from"] = os.path.basename(source)
            g = f.create_group("model")
            for k in sorted(sd):
                g.create_dataset(k, data=sd[k].detach().to(torch.float32).cpu().numpy())
        os.replace(tmp, out_path)
    except BaseException:
        os.unlink(tmp)
        raise


def to_h5(args):
    try:
        obj = torch.load(args.input, map_location="cpu")
    except Exception as e:  # torch raises many types for a bad file
        raise ConvertError(f"{args.input}: cannot load as a PyTorch file: {e}")
    sd = unwrap(obj, args.input)
    cfg = infer_config(sd, args, args.input)
    method = args.method
    if method == "none":
        prune_loc, keep_frac = [], []
    else:
        prune_loc = args.prune_loc
        if not prune_loc or any(not 1 <= l < cfg["depth"] for l in prune_loc) or prune_loc != sorted(set(prune_loc)):
            raise ConvertError(f"--prune-loc {prune_loc}: locations must increase strictly within [1, {cfg['depth']})")
        keep_frac = [args.keep_rate ** (s + 1) for s in range(len(prune_loc))]
    want = expected_shapes(cfg, method, len(prune_loc))
    check_keys(sd, want, args.input, method)
    recipe = ""
    if args.recipe:
        try:
            with open(args.recipe, encoding="utf-8") as fh:
                recipe = fh.read()
        except OSError as e:
            raise ConvertError(f"{args.recipe}: cannot read the recipe: {e.strerror}")
    write_h5(sd, cfg, method, prune_loc, keep_frac, args.output, args.input, recipe)
    print(f"{args.output}: {len(sd)} tensors, {cfg['arch']} method {method}, {cfg['num_classes']} classes")


def to_pth(args):
    with h5py.File(args.input, "r") as f:
        fmt = f.attrs.get("format")
        if fmt not in ("tpsc-checkpoint", "tpsc-inference"):
            raise ConvertError(f"{args.input}: format is {fmt!r}, not a tpsc checkpoint")
        if int(f.attrs["format_version"]) > FORMAT_VERSION:
            raise ConvertError(f"{args.input}: format_version {int(f.attrs['format_version'])} is newer than "
                               f"this converter supports ({FORMAT_VERSION})")
        group = args.group.strip("/")
        if group not in f:
            raise ConvertError(f"{args.input}: group /{group} is missing")
        sd = {k: torch.from_numpy(v[()]) for k, v in f[group].items()}
    torch.save({"model": sd}, args.output)
    print(f"{args.output}: {len(sd)} tensors from /{group}")


def self_test():
    """A tiny timm-shaped dTPS ViT through .pth -> .h5 -> .pth, bit-exact, plus refusals."""
    torch.manual_seed(0)
    cfg = dict(arch="custom", img_size=8, patch_size=4, in_chans=3, embed_dim=16, depth=4, num_heads=2,
               num_classes=5, mlp_ratio=4.0, ln_eps=1e-6)
    want = expected_shapes(cfg, "dtps", 2)
    sd = {("module." + k): torch.randn(*shape) for k, shape in want.items()}
    with tempfile.TemporaryDirectory() as d:
        pth, h5, back = (os.path.join(d, n) for n in ("in.pth", "out.h5", "back.pth"))
        torch.save({"model": sd}, pth)
        run = [sys.executable, os.path.abspath(__file__)]
        subprocess.run(run + ["--arch", "custom", "--num-heads", "2", "--method", "dtps", "--prune-loc", "1,2",
                              pth, h5], check=True)
        with h5py.File(h5, "r") as f:
            assert f.attrs["format"] == FORMAT and int(f.attrs["format_version"]) == FORMAT_VERSION
            assert list(f.attrs["prune_loc"]) == [1, 2] and int(f.attrs["depth"]) == 4
            loaded = {k: torch.from_numpy(v[()]) for k, v in f["model"].items()}
        assert set(loaded) == set(want), "names must be kept as-is"
        for k in want:
            assert torch.equal(loaded[k], sd["module." + k]), k
        subprocess.run(run + ["--to-pth", h5, back], check=True)
        rt = torch.load(back)["model"]
        assert set(rt) == set(want) and all(torch.equal(rt[k], sd["module." + k]) for k in want)
        # Refusals: an unknown key, and a dense model converted as dtps.
        bad = dict(sd)
        bad["module.dist_token"] = torch.zeros(1, 1, 16)
        torch.save(bad, pth)
        r = subprocess.run(run + ["--arch", "custom", "--num-heads", "2", "--method", "dtps", "--prune-loc", "1,2",
                                  pth, h5], capture_output=True, text=True)
        assert r.returncode != 0 and "dist_token" in r.stderr, r.stderr
        dense = {k: v for k, v in sd.items() if "score_predictor" not in k}
        torch.save(dense, pth)
        r = subprocess.run(run + ["--arch", "custom", "--num-heads", "2", "--method", "dtps", "--prune-loc", "1,2",
                                  pth, h5],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "score_predictor.0.in_conv.0.weight" in r.stderr, r.stderr
    print("self-test passed")


def int_list(text):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", help="deit_tiny/small/base_patch16_224, or custom (with --num-heads)")
    ap.add_argument("--num-heads", type=int, help="heads, for --arch custom")
    ap.add_argument("--method", default="none", choices=METHODS)
    ap.add_argument("--prune-loc", type=int_list, default=[3, 6, 9], help="pruning locations, e.g. 3,6,9 (default)")
    ap.add_argument("--keep-rate", type=float, default=0.7, help="rho; stage s keeps rho^(s+1) (default 0.7)")
    ap.add_argument("--recipe", help="a recipe file to store as the checkpoint's recipe (default: none)")
    ap.add_argument("--to-pth", action="store_true", help="convert IN.h5 to OUT.pth ({'model': state_dict})")
    ap.add_argument("--group", default="/model", help="with --to-pth: /model or /ema")
    ap.add_argument("--self-test", action="store_true", help="round-trip a tiny random ViT and exit")
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    args = ap.parse_args()
    try:
        if args.self_test:
            self_test()
            return 0
        if not args.input or not args.output:
            ap.error("IN and OUT are required")
        if args.to_pth:
            to_pth(args)
        else:
            if not args.arch:
                ap.error("--arch is required to convert to .h5")
            to_h5(args)
    except ConvertError as e:
        print(f"convert_timm.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
