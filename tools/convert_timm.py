#!/usr/bin/python3
"""Convert timm / DeiT / official-TPS PyTorch weights to a tpsc HDF5 checkpoint, and back.

    tools/convert_timm.py --arch deit_small_patch16_224 [--method dtps] [--keep-ratio 0.7] IN.pth OUT.h5
    tools/convert_timm.py --to-pth IN.h5 OUT.pth
    tools/convert_timm.py --self-test

Reads what the official trainings save: timm/DeiT/DynamicViT/EViT ({"model", "model_ema",
"args", ...}), timm's train.py ({"state_dict", "state_dict_ema"}), TPS-CVPR2023's train.py
({"net", "optimizer", "epoch", ...}) and bare state dicts. --ema picks the EMA weights. The
saved "args" of DynamicViT and EViT runs give the method, pruning locations, keep rate and
EViT's fuse_token when the command line leaves them out (and are checked when it does not).
What converts from where: docs/interop.md.

The .h5 gets the root attributes of a tpsc checkpoint (format, format_version, the ViT and TPS
configuration) and one float32 dataset per parameter under /model, named exactly as in the
state dict (timm and official TPS names, e.g. score_predictor.0.in_conv.1.weight) and in
PyTorch's shapes. Every key is checked against the architecture: an unknown, missing or
mis-shaped tensor is refused with its name. Layout: docs/checkpoints.md.

Needs torch and h5py (Debian: python3-torch python3-h5py; run with /usr/bin/python3).
"""
import argparse
import ast
import contextlib
import io
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


# Official model names that say the architecture and the method (TPS-CVPR2023's
# torch_codebase/models/dynamic_vit.py and youweiliang/evit's evit.py register them with timm).
ARCH_ALIASES = {}
for _size in ("tiny", "small", "base"):
    _arch = f"deit_{_size}_patch16_224"
    ARCH_ALIASES[f"dynamic_deit_{_size}_patch16_224"] = (_arch, "dynamicvit")
    ARCH_ALIASES[f"dynamic_deit_{_size}_patch16_224_token_merge_softmax_reweight"] = (_arch, "dtps")
ARCH_ALIASES["deit_small_patch16_shrink_base"] = ("deit_small_patch16_224", "evit")
ARCH_ALIASES["deit_base_patch16_shrink_base"] = ("deit_base_patch16_224", "evit")
ARCH_ALIASES["deit_small_patch16_224_shrink_base"] = ("deit_small_patch16_224", "evit")

# Where trainings put the weights: DeiT/DynamicViT/EViT main.py save "model" and "model_ema",
# timm's train.py "state_dict" and "state_dict_ema", TPS-CVPR2023's train.py "net".
MODEL_KEYS = ("model", "state_dict", "net")
EMA_KEYS = ("model_ema", "state_dict_ema")


def is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def unwrap(obj, path, use_ema=False):
    """The state dict inside a training checkpoint, "module." stripped, and the key it came from
    (None for a bare state dict). use_ema picks the EMA weights and refuses a file without them."""
    key = None
    if is_state_dict(obj):
        if use_ema:
            raise ConvertError(f"{path}: --ema, but the file is a bare state dict (no EMA weights; those are saved "
                               f"as {' or '.join(repr(k) for k in EMA_KEYS)})")
    elif isinstance(obj, dict):
        models = [k for k in MODEL_KEYS if is_state_dict(obj.get(k))]
        emas = [k for k in EMA_KEYS if is_state_dict(obj.get(k))]
        if use_ema and not emas:
            raise ConvertError(f"{path}: --ema, but the file holds no EMA weights (looked for "
                               f"{', '.join(repr(k) for k in EMA_KEYS)}; its keys: {', '.join(map(str, obj))})")
        key = (emas if use_ema else models or emas or [None])[0]
        if key is None:
            raise ConvertError(f"{path}: no state dict of tensors found (looked for "
                               f"{', '.join(repr(k) for k in MODEL_KEYS + EMA_KEYS)}; its keys: "
                               f"{', '.join(map(str, obj))})")
        if not use_ema and emas and key not in emas:
            print(f"{path}: converting '{key}'; the file also holds EMA weights ('{emas[0]}'): --ema converts "
                  f"those", file=sys.stderr)
        if not use_ema and key in emas:
            print(f"{path}: the file holds only EMA weights; converting '{key}'", file=sys.stderr)
        obj = obj[key]
    else:
        raise ConvertError(f"{path}: no state dict of tensors found (the file holds a {type(obj).__name__})")
    out = {}
    for k, v in obj.items():
        name = k[len("module."):] if k.startswith("module.") else k
        out[name] = v
    return out, key


def official_args(obj, path):
    """What the saved training arguments say about the model: DynamicViT's and EViT's main.py
    store their argparse Namespace as "args" (TPS's train.py stores none). Returns a dict with
    method, prune_loc, keep_ratio and (EViT) fuse_token, and where it came from; {} if unknown."""
    a = obj.get("args") if isinstance(obj, dict) else None
    if a is None:
        return {}
    d = a if isinstance(a, dict) else getattr(a, "__dict__", {})
    if "fuse_token" in d and "base_keep_rate" in d:  # youweiliang/evit main.py
        loc = d.get("drop_loc", "(3, 6, 9)")
        try:
            loc = ast.literal_eval(loc) if isinstance(loc, str) else loc
            loc = [int(x) for x in loc]
        except (ValueError, SyntaxError, TypeError):
            raise ConvertError(f"{path}: args.drop_loc {d.get('drop_loc')!r} is not a list of block indices")
        return dict(source="EViT's saved args", method="evit", prune_loc=loc,
                    keep_ratio=[float(d["base_keep_rate"])], fuse_token=bool(d["fuse_token"]))
    if "base_rate" in d and str(d.get("model", "")).startswith("deit"):  # raoyongming/DynamicViT main.py
        return dict(source="DynamicViT's saved args", method="dynamicvit", prune_loc=[3, 6, 9],
                    keep_ratio=[float(d["base_rate"])])
    return {}


def fitting_methods(sd):
    """Methods whose parameters the tensor names allow. dTPS and DynamicViT have the same
    parameters (the squeeze has none), and so have none, evit and etps (the backbone's only)."""
    return ["dynamicvit", "dtps"] if any(k.startswith("score_predictor.") for k in sd) else ["none", "evit", "etps"]


def resolve_method(sd, args, hints, path):
    """The method: --method, checked against the tensors and the saved args; else the args'
    method; else none for a backbone-only file. Predictor tensors without either are refused."""
    fits = fitting_methods(sd)
    method = args.method
    if method is None and args.arch in ARCH_ALIASES:
        method = ARCH_ALIASES[args.arch][1]
    if method is None:
        method = hints.get("method")
    if method is None:
        if "dtps" in fits:
            raise ConvertError(
                f"{path}: the file has score predictors (score_predictor.*), so it is dtps or dynamicvit; pass "
                f"--method dtps or --method dynamicvit. The tensors cannot tell them apart: dTPS squeezes pruned "
                f"tokens into kept ones with no parameters of its own, and the two compute different logits "
                f"from the same weights. (TPS-CVPR2023's arch *_token_merge_softmax_reweight is dtps, "
                f"dynamic_deit_* is dynamicvit.)")
        return "none"
    if method not in fits:
        why = ("has score predictors (score_predictor.*)" if "dtps" in fits else
               "has no score predictors (a dense checkpoint? convert it with --method none; fine-tuning "
               "initialises the predictors)")
        raise ConvertError(f"{path}: --method {method} does not fit: the file {why}; methods that fit: "
                           f"{', '.join(fits)}")
    if hints.get("method") and hints["method"] != method:
        raise ConvertError(f"{path}: --method {method}, but {hints['source']} say the model is "
                           f"{hints['method']}; drop --method or convert another file")
    return method


def infer_config(sd, arch, args, path):
    """The ViT configuration: the named arch's, checked against (or, for custom, read from) the tensors."""
    for need in ("patch_embed.proj.weight", "pos_embed", "head.weight", "blocks.0.mlp.fc1.weight"):
        if need not in sd:
            raise ConvertError(f"{path}: {need} is missing; not a timm ViT/DeiT state dict")
    C, in_chans, p, _ = sd["patch_embed.proj.weight"].shape
    n_patches = sd["pos_embed"].shape[1] - 1
    grid = int(round(n_patches ** 0.5))
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    found = dict(img_size=grid * p, patch_size=p, embed_dim=C, depth=depth)
    if arch in ARCHS:
        want = ARCHS[arch]
        for k, v in found.items():
            if want[k] != v:
                raise ConvertError(f"{path}: {arch} has {k} {want[k]}, the state dict has {v}")
        num_heads = want["num_heads"]
    elif arch == "custom":
        if not args.num_heads:
            raise ConvertError("--arch custom needs --num-heads (it cannot be read from the weights)")
        num_heads = args.num_heads
    else:
        raise ConvertError(f"unknown --arch {arch}; known: {', '.join(list(ARCHS) + list(ARCH_ALIASES))} or custom")
    if grid * grid != n_patches:
        raise ConvertError(f"{path}: pos_embed has {n_patches} patch positions, not a square grid")
    if C % num_heads:
        raise ConvertError(f"embed_dim {C} is not divisible by num_heads {num_heads}")
    hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
    return dict(arch=arch, img_size=grid * p, patch_size=p, in_chans=in_chans, embed_dim=C, depth=depth,
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


def write_h5(sd, cfg, method, prune_loc, keep_frac, out_path, source, recipe="", squeeze_temp=1.0, fuse_token=True):
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
            a["squeeze_temp"] = np.float64(np.float32(squeeze_temp))
            a["fuse_token"] = np.int64(1 if fuse_token else 0)
            a["git_describe"] = git_describe()
            a.create("class_names", np.array([], dtype=object), dtype=h5py.string_dtype())
            a["recipe"] = recipe
            a["converted_from"] = os.path.basename(source)
            g = f.create_group("model")
            for k in sorted(sd):
                g.create_dataset(k, data=sd[k].detach().to(torch.float32).cpu().numpy())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a file written by open() gets the umask's mode
        os.replace(tmp, out_path)
    except BaseException:
        os.unlink(tmp)
        raise


def pick(name, given, hints, key, path):
    """A setting from the command line, else from the saved args; both given must agree."""
    if key not in hints:
        return given
    if given is not None and given != hints[key]:
        raise ConvertError(f"{path}: {name} {given}, but {hints['source']} say {hints[key]}; leave {name} out to "
                           f"use the saved value")
    return hints[key]


def keep_fractions(ratios, n_stages, method):
    """tps.keep_ratio's rule: one rho (stage s keeps rho^(s+1) of the patches; EViT keeps
    ceil(rho n) of the n current tokens at each stage) or one cumulative fraction per stage."""
    if len(ratios) == 1:
        return [ratios[0] ** (s + 1) for s in range(n_stages)]
    if len(ratios) != n_stages:
        raise ConvertError(f"--keep-ratio has {len(ratios)} values for {n_stages} pruning locations (give one rho "
                           f"or one cumulative fraction per location)")
    return list(ratios)


def to_h5(args):
    try:
        obj = torch.load(args.input, map_location="cpu")
    except Exception as e:  # torch raises many types for a bad file
        raise ConvertError(f"{args.input}: cannot load as a PyTorch file: {e}")
    sd, _ = unwrap(obj, args.input, args.ema)
    hints = official_args(obj, args.input)
    arch = ARCH_ALIASES.get(args.arch, (args.arch,))[0]
    cfg = infer_config(sd, arch, args, args.input)
    method = resolve_method(sd, args, hints, args.input)
    if method == "none" and args.method is None:
        print(f"{args.input}: no --method: converting as a dense model (none); EViT and eTPS weights have the same "
              f"tensors, pass --method evit or etps for those", file=sys.stderr)
    fuse_token = True
    if method == "none":
        prune_loc, keep_frac = [], []
    else:
        prune_loc = pick("--prune-loc", args.prune_loc, hints, "prune_loc", args.input) or [3, 6, 9]
        if any(not 1 <= l < cfg["depth"] for l in prune_loc) or prune_loc != sorted(set(prune_loc)):
            raise ConvertError(f"--prune-loc {prune_loc}: locations must increase strictly within [1, {cfg['depth']})")
        ratios = pick("--keep-ratio", args.keep_ratio, hints, "keep_ratio", args.input) or [0.7]
        if any(not 0 < r <= 1 for r in ratios) or any(b > a for a, b in zip(ratios, ratios[1:])):
            raise ConvertError(f"--keep-ratio {ratios}: values must lie in (0, 1] and not increase")
        keep_frac = keep_fractions(ratios, len(prune_loc), method)
        if method == "evit":
            fuse_token = pick("--fuse-token", args.fuse_token, hints, "fuse_token", args.input)
            if fuse_token is None:
                raise ConvertError(
                    f"{args.input}: EViT with or without token fusion? The weights cannot say (fusion has no "
                    f"parameters) and the file holds no saved EViT args: pass --fuse-token (the published EViT "
                    f"runs, run_code.sh) or --no-fuse-token (evit main.py's default without --fuse_token)")
        elif args.fuse_token is not None:
            raise ConvertError(f"--fuse-token / --no-fuse-token apply to --method evit only, not {method}")
    if args.squeeze_temp is not None and method not in ("dtps", "etps"):
        raise ConvertError(f"--squeeze-temp applies to the squeezing methods dtps and etps only, not {method}")
    squeeze_temp = 1.0 if args.squeeze_temp is None else args.squeeze_temp
    if not (squeeze_temp > 0 and squeeze_temp < float("inf")):
        raise ConvertError(f"--squeeze-temp {squeeze_temp}: must be a finite number > 0")
    want = expected_shapes(cfg, method, len(prune_loc))
    check_keys(sd, want, args.input, method)
    recipe = ""
    if args.recipe:
        try:
            with open(args.recipe, encoding="utf-8") as fh:
                recipe = fh.read()
        except OSError as e:
            raise ConvertError(f"{args.recipe}: cannot read the recipe: {e.strerror}")
    write_h5(sd, cfg, method, prune_loc, keep_frac, args.output, args.input, recipe, squeeze_temp, fuse_token)
    extra = f", fuse_token {str(fuse_token).lower()}" if method == "evit" else ""
    stages = f", prune_loc {prune_loc}, keep_frac {[round(f, 6) for f in keep_frac]}" if prune_loc else ""
    print(f"{args.output}: {len(sd)} tensors, {cfg['arch']} method {method}{stages}{extra}, "
          f"{cfg['num_classes']} classes")


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
    """A tiny timm-shaped ViT through .pth -> .h5 -> .pth, bit-exact, then each way the official
    trainings save weights and each option, and the refusals (message checked)."""
    torch.manual_seed(0)
    cfg = dict(arch="custom", img_size=8, patch_size=4, in_chans=3, embed_dim=16, depth=4, num_heads=2,
               num_classes=5, mlp_ratio=4.0, ln_eps=1e-6)
    want = expected_shapes(cfg, "dtps", 2)
    sd = {("module." + k): torch.randn(*shape) for k, shape in want.items()}
    dense = {k: v for k, v in sd.items() if "score_predictor" not in k}
    run = ["--arch", "custom", "--num-heads", "2"]
    with tempfile.TemporaryDirectory() as d:
        pth, h5, back = (os.path.join(d, n) for n in ("in.pth", "out.h5", "back.pth"))

        def convert(obj, *opts, ok=True, says=()):
            """Converts obj with opts; returns (root attributes, /model) or checks the refusal."""
            torch.save(obj, pth)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(run + list(opts) + [pth, h5])
            out, err = out.getvalue(), err.getvalue()
            if not ok:
                assert rc != 0, f"{opts}: accepted, expected a refusal"
                for word in says:
                    assert word in err, f"{opts}: {word!r} not in: {err}"
                return None, None
            assert rc == 0, f"{opts}: {err}"
            for word in says:
                assert word in err + out, f"{opts}: {word!r} not in: {err}{out}"
            with h5py.File(h5, "r") as f:
                return dict(f.attrs), {k: torch.from_numpy(v[()]) for k, v in f["model"].items()}

        # Round trip: names kept, values bit-exact both ways.
        attrs, loaded = convert({"model": sd}, "--method", "dtps", "--prune-loc", "1,2")
        assert attrs["format"] == FORMAT and int(attrs["format_version"]) == FORMAT_VERSION
        assert list(attrs["prune_loc"]) == [1, 2] and int(attrs["depth"]) == 4
        assert np.allclose(attrs["keep_frac"], [0.7, 0.49]) and float(attrs["squeeze_temp"]) == 1.0
        assert set(loaded) == set(want), "names must be kept as-is"
        assert all(torch.equal(loaded[k], sd["module." + k]) for k in want)
        assert main(["--to-pth", h5, back]) == 0
        rt = torch.load(back)["model"]
        assert set(rt) == set(want) and all(torch.equal(rt[k], sd["module." + k]) for k in want)

        # TPS-CVPR2023's train.py: {'net', 'optimizer', 'epoch', ...}; per-stage list, temperature.
        tps_file = {"net": sd, "optimizer": {"state": {}, "param_groups": []}, "epoch": 3, "metrics": {}}
        attrs, loaded = convert(tps_file, "--method", "dtps", "--prune-loc", "1,3", "--keep-ratio", "0.8,0.5",
                                "--squeeze-temp", "0.5")
        assert np.allclose(attrs["keep_frac"], [0.8, 0.5]) and float(attrs["squeeze_temp"]) == 0.5
        assert all(torch.equal(loaded[k], sd["module." + k]) for k in want)
        attrs, _ = convert(tps_file, "--method", "dynamicvit", "--prune-loc", "1,3", "--keep-rate", "0.6")
        assert np.allclose(attrs["keep_frac"], [0.6, 0.36]) and attrs["method"] == "dynamicvit"
        convert(tps_file, "--prune-loc", "1,2", ok=False, says=("--method dtps or --method dynamicvit",
                                                                  "cannot tell them apart"))
        convert(tps_file, "--method", "evit", ok=False, says=("methods that fit: dynamicvit, dtps",))
        convert(tps_file, "--method", "dtps", "--prune-loc", "1,2", "--keep-ratio", "0.8,0.5,0.3", ok=False,
                says=("3 values for 2 pruning locations",))
        convert(tps_file, "--method", "dynamicvit", "--prune-loc", "1,2", "--squeeze-temp", "2", ok=False,
                says=("dtps and etps only",))
        attrs, _ = convert(tps_file, "--arch", "dynamic_deit_small_patch16_224_token_merge_softmax_reweight",
                           ok=False, says=("deit_small_patch16_224 has",))

        # EMA: the model's weights by default (with a note), --ema for the EMA's.
        ema = {k: v + 1 for k, v in sd.items()}
        attrs, loaded = convert({"model": sd, "model_ema": ema}, "--method", "dtps", "--prune-loc", "1,2",
                                says=("--ema converts those",))
        assert all(torch.equal(loaded[k], sd["module." + k]) for k in want)
        attrs, loaded = convert({"model": sd, "model_ema": ema}, "--ema", "--method", "dtps", "--prune-loc", "1,2")
        assert all(torch.equal(loaded[k], ema["module." + k]) for k in want)
        attrs, loaded = convert({"state_dict": sd, "state_dict_ema": ema}, "--ema", "--method", "dtps",
                                "--prune-loc", "1,2")
        assert all(torch.equal(loaded[k], ema["module." + k]) for k in want)
        convert(tps_file, "--ema", "--method", "dtps", ok=False, says=("no EMA weights", "net"))

        # EViT: fuse_token, locations and keep rate from its saved args; the flag when there are none.
        evit_args = argparse.Namespace(model="deit_small_patch16_shrink_base", fuse_token=False,
                                       base_keep_rate=0.6, drop_loc="(1, 2)")
        attrs, _ = convert({"model": dense, "args": evit_args})
        assert attrs["method"] == "evit" and int(attrs["fuse_token"]) == 0 and list(attrs["prune_loc"]) == [1, 2]
        assert np.allclose(attrs["keep_frac"], [0.6, 0.36])
        convert({"model": dense, "args": evit_args}, "--fuse-token", ok=False, says=("EViT's saved args say False",))
        convert({"model": dense, "args": evit_args}, "--method", "etps", ok=False, says=("model is evit",))
        convert({"model": dense}, "--method", "evit", "--prune-loc", "1,2", ok=False, says=("--no-fuse-token",))
        attrs, _ = convert({"model": dense}, "--method", "evit", "--prune-loc", "1,2", "--no-fuse-token")
        assert int(attrs["fuse_token"]) == 0
        attrs, _ = convert(dense, "--method", "evit", "--prune-loc", "1,2", "--fuse-token")
        assert int(attrs["fuse_token"]) == 1
        attrs, _ = convert(dense, says=("converting as a dense model",))
        assert attrs["method"] == "none" and len(attrs["prune_loc"]) == 0
        convert(dense, "--fuse-token", "--method", "etps", "--prune-loc", "1,2", ok=False, says=("evit only",))

        # DynamicViT's saved args name the method: dtps against them is refused.
        dyn_args = argparse.Namespace(model="deit-s", base_rate=0.7)
        convert({"model": sd, "args": dyn_args}, "--method", "dtps", "--prune-loc", "1,2", ok=False,
                says=("DynamicViT's saved args", "dynamicvit"))

        # Other refusals: an unknown key, a dense model converted as dtps, no state dict at all.
        bad = dict(sd)
        bad["module.dist_token"] = torch.zeros(1, 1, 16)
        convert(bad, "--method", "dtps", "--prune-loc", "1,2", ok=False, says=("dist_token",))
        convert(dense, "--method", "dtps", "--prune-loc", "1,2", ok=False, says=("--method none",))
        convert({"epoch": 1, "optimizer": {}}, ok=False, says=("'net'", "its keys: epoch, optimizer"))
    print("self-test passed")


def int_list(text):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def float_list(text):
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", help="deit_tiny/small/base_patch16_224, or custom (with --num-heads)")
    ap.add_argument("--num-heads", type=int, help="heads, for --arch custom")
    ap.add_argument("--method", choices=METHODS,
                    help="default: from the --arch alias or the file's saved args; none for a file without "
                         "score predictors; required for one with them (dtps and dynamicvit look the same)")
    ap.add_argument("--prune-loc", type=int_list, help="pruning locations, e.g. 3,6,9 (default, or the saved args')")
    ap.add_argument("--keep-ratio", "--keep-rate", dest="keep_ratio", type=float_list,
                    help="one rho (stage s keeps rho^(s+1) of the patches) or one cumulative fraction per "
                         "location, e.g. 0.7,0.49,0.343 (default 0.7, or the saved args'), as tps.keep_ratio")
    ap.add_argument("--squeeze-temp", type=float, help="dtps/etps: temperature T of the squeeze similarity "
                                                       "(TPS's factory argument temperature; default 1)")
    ap.add_argument("--fuse-token", action=argparse.BooleanOptionalAction, default=None,
                    help="evit: fuse the pruned tokens into one (EViT's --fuse_token) or drop them; read from "
                         "EViT's saved args when the file has them, else required")
    ap.add_argument("--ema", action="store_true",
                    help="convert the EMA weights ('model_ema' or 'state_dict_ema') instead of the model's")
    ap.add_argument("--recipe", help="a recipe file to store as the checkpoint's recipe (default: none)")
    ap.add_argument("--to-pth", action="store_true", help="convert IN.h5 to OUT.pth ({'model': state_dict})")
    ap.add_argument("--group", default="/model", help="with --to-pth: /model or /ema")
    ap.add_argument("--self-test", action="store_true", help="round-trip a tiny random ViT and exit")
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    args = ap.parse_args(argv)
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
