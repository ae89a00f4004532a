"""PyTorch reference for tpsc: a small timm-compatible DeiT plus the DynamicViT / TPS
token-pruning semantics of the official code (megvii-research/TPS-CVPR2023,
torch_codebase/models/dynamic_vit.py and losses/loss.py).

Written in plain torch (no timm) with timm's exact parameter names, so that the C engine can
be checked tensor by tensor against it. Shape letters: B batch, N tokens, C channels, H heads,
D head size, K classes. Float32 throughout; no dropout, no drop_path.

The pruning part (PruningViT) lives in this file too; see tests/reference/README.md for
which official function each piece follows.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-6


# ----------------------------------------------------------------------------- backbone
class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images):                      # [B,3,img,img] -> [B,N,C]
        return self.proj(images).flatten(2).transpose(1, 2)


def softmax_with_policy(scores, policy, eps=1e-6):
    """DynamicViT/TPS Attention.softmax_with_policy (training only).

    scores [B,H,N,N], policy [B,N,1] (1 = token visible). A token with policy 0 is invisible
    as a key to every other query but still attends to itself (the eye term); the small eps
    keeps rows of all-pruned keys finite. Computed in float32 as the official code does."""
    B, N, _ = policy.size()
    attn_policy = policy.reshape(B, 1, 1, N)
    eye = torch.eye(N, dtype=attn_policy.dtype, device=attn_policy.device).view(1, 1, N, N)
    attn_policy = attn_policy + (1.0 - attn_policy) * eye
    max_att = torch.max(scores, dim=-1, keepdim=True)[0]
    scores = scores - max_att
    scores = scores.to(torch.float32).exp_() * attn_policy.to(torch.float32)
    return (scores + eps / N) / (scores.sum(dim=-1, keepdim=True) + eps)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.last_attn = None                       # [B,H,N,N], kept for EViT scores

    def forward(self, x, policy=None):
        B, N, C = x.shape
        H = self.num_heads
        qkv = self.qkv(x).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4)   # 3,B,H,N,D
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(-2, -1)) * self.scale                         # B,H,N,N
        attn = scores.softmax(dim=-1) if policy is None else softmax_with_policy(scores, policy)
        self.last_attn = attn
        out = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))        # exact erf GELU, as timm's nn.GELU


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, policy=None):
        x = x + self.attn(self.norm1(x), policy)
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """timm VisionTransformer / DeiT (no distillation token), classifier on cls."""

    def __init__(self, img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=4,
                 num_heads=4, num_classes=10, mlp_ratio=4.0):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        n = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, images):                        # [B,3,img,img] -> [B,1+N,C]
        x = self.patch_embed(images)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat((cls, x), dim=1) + self.pos_embed

    def forward_tokens(self, images):               # final normed tokens [B,1+N,C]
        x = self.embed(images)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, images):                      # logits [B,K]
        return self.head(self.forward_tokens(images)[:, 0])


# ----------------------------------------------------------------------------- init
def init_random(model, seed, linear_std=0.2, head_std=0.5, pred_std=None):
    """Deterministic random weights that keep activations non-degenerate.

    timm's std 0.02 would give near-uniform attention and near-equal logits at this size, which
    hides bugs; instead linears use a normal clipped at +-2 std scaled by 1/sqrt(fan_in/32),
    and every LayerNorm weight/bias is perturbed away from 1/0 so that a kernel that ignores
    them fails. Parameters are visited in name order so the stream does not depend on module
    construction details."""
    g = torch.Generator().manual_seed(seed)

    def tn(shape, std):
        t = torch.randn(shape, generator=g)
        return (t.clamp(-2.0, 2.0) * std).to(torch.float32)

    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("cls_token") or name.endswith("pos_embed"):
                p.copy_(tn(p.shape, 0.02))
            elif name.startswith("patch_embed") and name.endswith("weight"):
                fan_in = p[0].numel()
                p.copy_(tn(p.shape, 1.0 / math.sqrt(fan_in)))
            elif p.dim() == 2:                  # Linear weight [out,in]
                std = head_std if name.startswith("head") else linear_std
                if pred_std is not None and name.startswith("score_predictor"):
                    std = pred_std
                p.copy_(tn(p.shape, std * math.sqrt(32.0 / p.shape[1])))
            elif _is_norm_param(model, name):
                if name.endswith("weight"):
                    p.copy_(1.0 + tn(p.shape, 0.1))
                else:
                    p.copy_(tn(p.shape, 0.1))
            else:                                 # linear / conv bias
                p.copy_(tn(p.shape, 0.05))


def _is_norm_param(model, name):
    mod = model
    for part in name.split(".")[:-1]:
        mod = getattr(mod, part) if not part.isdigit() else mod[int(part)]
    return isinstance(mod, nn.LayerNorm)


# ----------------------------------------------------------------------------- losses
def soft_target_ce(logits, targets):
    """timm SoftTargetCrossEntropy: mean_b sum_k -t_bk log_softmax(x)_bk."""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def label_smoothing_ce(logits, labels, smoothing=0.1):
    """timm LabelSmoothingCrossEntropy: (1-s) * nll + s * mean_k(-log_softmax), mean over B."""
    logprobs = F.log_softmax(logits, dim=-1)
    nll = -logprobs.gather(dim=-1, index=labels.unsqueeze(1)).squeeze(1)
    smooth = -logprobs.mean(dim=-1)
    return ((1.0 - smoothing) * nll + smoothing * smooth).mean()


def mixed_soft_targets(labels, num_classes, lam=0.7, smoothing=0.1):
    """timm mixup_target: label-smoothed one-hots of labels and of labels.flip(0), mixed lam."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    y1 = torch.full((labels.shape[0], num_classes), off).scatter_(1, labels.unsqueeze(1), on)
    y2 = torch.full((labels.shape[0], num_classes), off).scatter_(1, labels.flip(0).unsqueeze(1), on)
    return (y1 * lam + y2 * (1.0 - lam)).to(torch.float32)
