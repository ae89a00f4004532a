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


# ----------------------------------------------------------------------------- pruning
class PredictorLG(nn.Module):
    """DynamicViT / TPS score predictor on spatial tokens (official dynamic_vit.PredictorLG).

    Note: its LayerNorm keeps torch's default eps 1e-5 (the backbone uses 1e-6).
    Output [B,N,2] log-probabilities, column 0 = keep."""

    def __init__(self, dim):
        super().__init__()
        self.in_conv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.out_conv = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(),
                                      nn.Linear(dim // 2, dim // 4), nn.GELU(),
                                      nn.Linear(dim // 4, 2), nn.LogSoftmax(dim=-1))

    def forward(self, x, policy):                   # x [B,N,C], policy [B,N,1] previous keep
        h = self.in_conv(x)
        B, N, C = h.shape
        local = h[:, :, :C // 2]
        # masked mean of the global half over the tokens still alive (no guard, as official)
        glob = (h[:, :, C // 2:] * policy).sum(dim=1, keepdim=True) / policy.sum(dim=1, keepdim=True)
        return self.out_conv(torch.cat([local, glob.expand(B, N, C // 2)], dim=-1))


def gumbel_from_uniform(u):
    """Gumbel(0,1) noise from given uniforms, so C and torch see the same sample.
    (The official functions.gumbel_softmax draws -log(Exp(1)), the same distribution.)"""
    return -torch.log(-torch.log(u))


def gumbel_hard_keep(log_probs, u, tau=1.0):
    """Official functions.gumbel_softmax(hard=True)[..., 0:1] with given noise: value is the
    one-hot of argmax(softmax((logp+g)/tau)), gradient is that of the soft sample."""
    y_soft = ((log_probs + gumbel_from_uniform(u)) / tau).softmax(dim=-1)
    index = y_soft.max(dim=-1, keepdim=True)[1]
    y_hard = torch.zeros_like(log_probs).scatter_(-1, index, 1.0)
    return (y_hard - y_soft.detach() + y_soft)[:, :, 0:1], y_soft


def unit_rows(x, eps=1e-6):
    """x / (||x|| + eps): the official get_sim normalisation (not F.normalize's max(.,eps))."""
    return x / (x.norm(dim=-1, keepdim=True) + eps)


HOST_MARGINS = []      # smallest best-minus-second host similarity per squeeze call


def _note_host_margin(sim, rows):
    """Records how close the host choice came to a tie (fixtures must not hinge on rounding)."""
    top2 = sim.detach().topk(2, dim=2)[0]
    gap = (top2[..., 0] - top2[..., 1])[rows]
    if gap.numel():
        HOST_MARGINS.append(gap.min().item())


def tps_squeeze_train(x, keep, pruned, temperature=1.0):
    """Official TPSModule.forward, training branch, on fixed-length spatial tokens.

    x [B,N,C]; keep [B,N,1] hard keep decision of this stage (straight-through);
    pruned [B,N,1] = (1-keep)*prev_decision, the tokens pruned at this stage.
    Every pruned token i picks its host(s) j = argmax_j sim(i,j) over kept j != i (all ties),
    and each host becomes (e*x_j + sum_i exp(sim_ij) x_i) / (e + sum_i exp(sim_ij)).
    The 0/1 selection matrix is multiplied by `pruned`, so it carries the straight-through
    gradient into the keep decisions, exactly as the official expression does."""
    B, N, _ = x.shape
    xn = unit_rows(x)
    sim = xn @ xn.transpose(1, 2)                                       # [B,N(query i),N(host j)]
    eye = torch.eye(N, dtype=torch.bool).unsqueeze(0)
    sim = sim.masked_fill(eye, -100.0) / temperature
    sim = sim.masked_fill(~keep.bool().reshape(B, 1, N), -100.0)        # only kept hosts
    best = sim.amax(dim=2, keepdim=True)
    _note_host_margin(sim, pruned.reshape(B, N) > 0.5)
    select = (sim == best).to(x.dtype) * pruned                         # [B,i,j]
    sim = select * sim
    select_t = select.transpose(1, 2)                                   # [B,j,i]
    weight = torch.exp(sim.transpose(1, 2)) * select_t
    den = math.e + weight.sum(dim=-1, keepdim=True)                     # [B,j,1]
    return x * (math.e / den) + (weight / den) @ x


def tps_squeeze_infer(kept, dropped, temperature=1.0):
    """Official TPSModule.forward, eval branch: kept [B,K,C] (score order), dropped [B,P,C].
    Cosine similarity dropped->kept (no diagonal mask), hosts = row argmax (all ties),
    kept_j' = (e*kept_j + sum_i exp(s_ij) dropped_i) / (e + sum_i exp(s_ij))."""
    sim = unit_rows(dropped) @ unit_rows(kept).transpose(1, 2) / temperature   # [B,P,K]
    best = sim.amax(dim=2, keepdim=True)
    if sim.shape[2] > 1:
        _note_host_margin(sim, torch.ones(sim.shape[:2], dtype=torch.bool))
    select = (sim == best).to(kept.dtype)
    weight = torch.exp((select * sim).transpose(1, 2)) * select.transpose(1, 2)   # [B,K,P]
    den = math.e + weight.sum(dim=-1, keepdim=True)
    return kept * (math.e / den) + (weight / den) @ dropped


def keep_ratio_list(keep_ratio, n_stages):
    """Official DynamicVit: cumulative keep_ratio**(s+1) (a list is used as given)."""
    if isinstance(keep_ratio, (list, tuple)):
        return list(keep_ratio)
    return [keep_ratio ** (k + 1) for k in range(n_stages)]


def keep_counts(n_patches, ratios):
    """int(N * ratio) in double precision, exactly as the official eval path truncates."""
    return [int(n_patches * r) for r in ratios]


class PruningViT(ViT):
    """Official TPS-CVPR2023 DynamicVit (dynamic_vit.py) on top of the timm backbone.

    method "dtps": token_merge_module = TPSModule (squeeze); "dynamicvit": prune only.
    Training keeps all tokens and masks attention with the policy; eval really removes them."""

    def __init__(self, method="dtps", prune_loc=(1, 2, 3), keep_ratio=0.7, **cfg):
        super().__init__(**cfg)
        assert method in ("dtps", "dynamicvit")
        self.method = method
        self.prune_loc = list(prune_loc)
        self.keep_ratio_list = keep_ratio_list(keep_ratio, len(self.prune_loc))
        C = self.cls_token.shape[-1]
        self.score_predictor = nn.ModuleList([PredictorLG(C) for _ in self.prune_loc])

    def forward_train(self, images, gumbel_u):
        """gumbel_u: list of [B,N,2] uniforms, one per stage. Returns a dict with logits,
        spatial (final normed spatial tokens [B,N,C]), last_decision [B,N,1] (detached),
        hard (list of [B,N] keep masks with straight-through grad), scores, y_soft."""
        x = self.embed(images)
        B, n1, _ = x.shape
        N = n1 - 1
        prev = torch.ones(B, N, 1)
        policy = torch.ones(B, N + 1, 1)         # all ones: the policy softmax is used from block 0
        hard, scores, soft = [], [], []
        stage = 0
        for i, blk in enumerate(self.blocks):
            if i in self.prune_loc:
                spatial = x[:, 1:]
                score = self.score_predictor[stage](spatial, prev)        # [B,N,2] log-probs
                keep, y_soft = gumbel_hard_keep(score, gumbel_u[stage])
                keep = keep * prev
                if self.method == "dtps":
                    pruned = (1.0 - keep) * prev
                    spatial = tps_squeeze_train(spatial, keep, pruned)
                    x = torch.cat([x[:, :1], spatial], dim=1)
                hard.append(keep.reshape(B, N))
                scores.append(score)
                soft.append(y_soft)
                policy = torch.cat([torch.ones(B, 1, 1), keep], dim=1)
                prev = keep
                stage += 1
            x = blk(x, policy)
        x = self.norm(x)
        return dict(logits=self.head(x[:, 0]), spatial=x[:, 1:], last_decision=prev.detach(),
                    hard=hard, scores=scores, y_soft=soft)

    def forward_infer(self, images):
        """Eval path. Returns logits and, per stage, the ORIGINAL patch indices kept (top-k by
        keep log-prob, descending, in that order) plus the sorted scores (for margin checks)."""
        x = self.embed(images)
        B, n1, C = x.shape
        N = n1 - 1
        prev = torch.ones(B, N, 1)
        origin = torch.arange(N).unsqueeze(0).expand(B, N)             # [B,n] original indices
        kept_list, sorted_scores = [], []
        stage = 0
        for i, blk in enumerate(self.blocks):
            if i in self.prune_loc:
                spatial = x[:, 1:]
                score = self.score_predictor[stage](spatial, prev)[:, :, 0]
                n_keep = int(N * self.keep_ratio_list[stage])
                order = torch.argsort(score, dim=1, descending=True)
                keep_idx, drop_idx = order[:, :n_keep], order[:, n_keep:]
                gather = lambda t, idx: torch.gather(t, 1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
                kept = gather(spatial, keep_idx)
                if self.method == "dtps" and drop_idx.shape[1] > 0:
                    kept = tps_squeeze_infer(kept, gather(spatial, drop_idx))
                x = torch.cat([x[:, :1], kept], dim=1)
                origin = torch.gather(origin, 1, keep_idx)
                prev = torch.gather(prev, 1, keep_idx.unsqueeze(-1))
                kept_list.append(origin.clone())
                sorted_scores.append(torch.gather(score, 1, order))
                stage += 1
            x = blk(x)
        x = self.norm(x)
        return dict(logits=self.head(x[:, 0]), kept=kept_list, sorted_scores=sorted_scores)


def teacher_from(student, cfg):
    """Dense ViT sharing the student's backbone weights (attr teacher="student-backbone")."""
    t = ViT(**cfg)
    missing, unexpected = t.load_state_dict(student.state_dict(), strict=False)
    assert not missing and all(k.startswith("score_predictor") for k in unexpected)
    t.eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def keep_ratio_loss(hard, ratios):
    """Official losses.KeepRatioLoss WITHOUT its weight: mean over stages of
    mean_b (mean_i hard[b,i] - ratio_s)^2; hard masks span all N original tokens."""
    total = 0.0
    for mask, r in zip(hard, ratios):
        total = total + ((mask.mean(dim=1) - r) ** 2).mean()
    return total / len(ratios)


def cls_kl_loss(logits, logits_t):
    """Official DistillKLLoss cls term: F.kl_div(log_softmax(s), log_softmax(t), batchmean,
    log_target) = (1/B) sum_b sum_k p_t (log p_t - log p_s), i.e. KL(teacher || student)."""
    return F.kl_div(F.log_softmax(logits, dim=-1), F.log_softmax(logits_t, dim=-1),
                    reduction="batchmean", log_target=True)


def token_kl_loss(spatial, spatial_t, last_decision):
    """Official DistillKLLoss token term: rows = final-normed spatial tokens whose LAST hard
    keep decision > 0.5 (over the whole batch), KL over the channel softmax, batchmean =
    divided by the number of selected rows; 0 if none is kept."""
    B, N, C = spatial.shape
    sel = last_decision.reshape(B * N) > 0.5
    if last_decision.sum() < 0.1:
        return spatial.new_zeros(())
    s = spatial.reshape(B * N, C)[sel]
    t = spatial_t.reshape(B * N, C)[sel]
    return F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1),
                    reduction="batchmean", log_target=True)


# ----------------------------------------------------------------------------- EViT / eTPS
def complement_sorted(idx, n):
    """Indices 0..n-1 not in idx (per row), ascending, as EViT's helpers.complement_idx."""
    taken = torch.zeros(idx.shape[0], n, dtype=torch.bool).scatter_(1, idx, True)
    return torch.stack([torch.nonzero(~row).squeeze(1) for row in taken])


class EVitModel(ViT):
    """EViT (youweiliang/evit evit.py, Block/Attention with fuse_token=True) and eTPS on the
    same backbone. In blocks `prune_loc`, after the attention residual and before the MLP, keep
    the ceil(rho * n) spatial tokens with the largest head-averaged cls attention (topk order,
    descending); EViT appends one fused token sum_i a_i x_i over the rest (a_i = cls attention,
    not renormalised), eTPS squeezes the rest into their hosts with the TPS eval rule instead.
    Training and eval are the same computation here (no dropout, tokens really removed)."""

    def __init__(self, method="evit", prune_loc=(1, 2, 3), keep_rate=0.7, **cfg):
        super().__init__(**cfg)
        assert method in ("evit", "etps")
        self.method = method
        self.prune_loc = list(prune_loc)
        self.keep_rate = keep_rate

    def forward_kept(self, images):
        x = self.embed(images)
        B, n1, C = x.shape
        origin = torch.arange(n1 - 1).unsqueeze(0).expand(B, -1)      # -1 = EViT's fused token
        kept_list, sorted_attn = [], []
        for i, blk in enumerate(self.blocks):
            if i not in self.prune_loc:
                x = blk(x)
                continue
            x = x + blk.attn(blk.norm1(x))
            attn = blk.attn.last_attn                                  # [B,H,1+n,1+n]
            n = x.shape[1] - 1
            left = math.ceil(self.keep_rate * n)
            cls_attn = attn[:, :, 0, 1:].mean(dim=1)                   # [B,n]
            top, idx = torch.topk(cls_attn, left, dim=1, largest=True, sorted=True)
            rest = complement_sorted(idx, n)
            spatial = x[:, 1:]
            gather = lambda t, ix: torch.gather(t, 1, ix.unsqueeze(-1).expand(-1, -1, C))
            kept, dropped = gather(spatial, idx), gather(spatial, rest)
            origin_kept = torch.gather(origin, 1, idx)
            if self.method == "evit":
                weight = torch.gather(cls_attn, 1, rest).unsqueeze(-1)
                fused = (dropped * weight).sum(dim=1, keepdim=True)
                x = torch.cat([x[:, :1], kept, fused], dim=1)
                origin = torch.cat([origin_kept, torch.full((B, 1), -1)], dim=1)
            else:
                x = torch.cat([x[:, :1], tps_squeeze_infer(kept, dropped)], dim=1)
                origin = origin_kept
            kept_list.append(origin_kept.clone())
            k_next = min(left + 1, n)
            sorted_attn.append(torch.topk(cls_attn, k_next, dim=1, sorted=True)[0].detach())
            x = x + blk.mlp(blk.norm2(x))
        x = self.norm(x)
        return dict(logits=self.head(x[:, 0]), kept=kept_list, sorted_attn=sorted_attn)

    def forward(self, images):
        return self.forward_kept(images)["logits"]
