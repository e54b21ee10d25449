"""Training approach B's CNN (``brainage train-cnn``)."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoints import check_resumable, end_epoch, load_checkpoint
from .data import seed_everything
from .features import model_space_features, split_validation


@dataclass
class CNNConfig:
    """Settings of ``brainage train-cnn`` (logged with the weights)."""
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)
    n_val: int = 60                 # Cam-CAN reg_train subjects held out for validation/ensembling
    n_val_ixi: int = 20             # ixi120 subjects held out likewise
    sites: tuple[str, ...] = ("camcan", "ixi")   # the sites trained on
    epochs: int = 60
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-3
    ema_decay: float = 0.995
    export: str = "best"            # the weights written: the moving average ("ema"), the last
                                    # step's ("final"), or whichever reads validation better ("best")
    sigma: float = 1.0              # soft-label width (years)
    max_shift: int = 2              # random translation (4 mm voxels)
    max_zoom: float = 0.0           # random isotropic zoom of each input by a factor in [1 - z, 1 + z]
                                    # about the grid's centre (brain size is not age; 0: off)
    degraded_prob: float = 0.5      # share of samples drawn from the degraded, re-segmented copy
    init_weights: str | None = None  # fine-tune these safetensors instead of starting afresh
    contrast_consistency: float = 0.0  # weight of the age difference (years²) between each scan and
                                       # its acquisition copy (features.acquisition_copies); 0: not used
    consistency_copies: tuple[str, ...] = ("contrast",)   # kinds of copy (features.COPY_KINDS); each
                                       # sample's partner is one of them, drawn at random
    consistency_copies_second: tuple[str, ...] = ()   # kinds of a second partner of every sample
                                       # (one drawn at random when several); (): one partner only
    consistency_second_anchored: bool = False   # the second partner only learns to read as its scan
                                       # does (the scan's age held fixed, no age loss of its own);
                                       # False: it learns as the first does (age loss and consistency)
    consistency_second_weight: float | None = None   # weight of the second partner's age difference
                                       # (years²); None: contrast_consistency
    consistency_ixi_weight: float = 1.0  # the consistency term of IXI subjects counts this many times
    site_adversarial: float = 0.0   # weight of a site classifier on the pooled features, trained
                                    # through gradient reversal (DANN): features that do not tell
                                    # the sites apart; 0: not used (needs both sites)
    seed: int = 20261123            # initialisation, order and augmentation draws
    split_seed: int = 20261123      # the validation draw (training_partition), kept apart from
                                    # ``seed`` so that runs of other seeds share their validation
    threads: int = 2


EXPORTS = ("best", "ema", "final")


def choose_weights(val_mae_final: float, val_mae_ema: float, rule: str = "best") -> str:
    """Which weights a run exports, ``"final"`` or ``"ema"``: the one ``rule`` names, or for
    ``"best"`` the lower validation MAE (years; a tie keeps the moving average)."""
    if rule not in EXPORTS:
        raise ValueError(f"export: expected one of {', '.join(EXPORTS)}, got {rule!r}")
    if rule != "best":
        return rule
    return "final" if val_mae_final < val_mae_ema else "ema"


def training_partition(feats: dict, sites, n_val: int, n_val_ixi: int, seed: int):
    """Indices (train, validation) into the feature cache: Cam-CAN ``reg_train`` and IXI
    ``ixi120`` subjects of ``sites``, each site's validation part a seeded draw. Never ``test``
    or ``ixi10``."""
    ids = [str(s) for s in feats["subject_id"]]
    index = {s: i for i, s in enumerate(ids)}
    train, val = [], []
    for site, split, nv in (("camcan", "reg_train", n_val), ("ixi", "ixi120", n_val_ixi)):
        if site not in sites:
            continue
        pool = [s for s, sp in zip(ids, feats["split"]) if sp == split]
        t, v = split_validation(pool, nv, seed)
        train += [index[s] for s in t]
        val += [index[s] for s in v]
    return np.array(sorted(train)), np.array(sorted(val))


class _GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient times ``-weight`` backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x, weight: float):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


def zoom_input(x: torch.Tensor, factor: float) -> torch.Tensor:
    """A CNN input (C, z, y, x) zoomed isotropically by ``factor`` about the grid's centre
    (> 1: the brain larger), trilinear, zero outside."""
    theta = torch.zeros(1, 3, 4, dtype=x.dtype)
    theta[0, 0, 0] = theta[0, 1, 1] = theta[0, 2, 2] = 1.0 / factor
    grid = F.affine_grid(theta, [1, *x.shape], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def _augment_cnn(x: torch.Tensor, gen: torch.Generator, max_shift: int,
                 partner: torch.Tensor | Sequence[torch.Tensor] | None = None, max_zoom: float = 0.0):
    """Random flip, shift and T1 gamma/scale of each CNN input (B, 4, z, y, x), and with
    ``max_zoom`` > 0 an isotropic zoom (:func:`zoom_input`, factor in [1 - max_zoom, 1 + max_zoom]).
    ``partner`` (same shape, or a list of such): each of its inputs gets the same draw as ``x``'s;
    returns ``(x, partner)`` (``partner`` a list when a list was given)."""
    b = x.shape[0]
    many = partner is not None and not isinstance(partner, torch.Tensor)
    partners = [] if partner is None else list(partner) if many else [partner]
    out = torch.empty_like(x)
    outs = [torch.empty_like(p) for p in partners]
    for i in range(b):
        flip = bool(torch.rand(1, generator=gen) < 0.5)
        shifts = [int(s) for s in torch.randint(-max_shift, max_shift + 1, (3,), generator=gen)]
        gamma = float(torch.exp((torch.rand(1, generator=gen) - 0.5) * 0.6))
        scale = float(0.9 + 0.2 * torch.rand(1, generator=gen))
        zoom = float(1 + max_zoom * (2 * torch.rand(1, generator=gen) - 1)) if max_zoom > 0 else 1.0
        for src, dst in zip([x, *partners], [out, *outs]):
            xi = src[i].flip(-1) if flip else src[i]
            if zoom != 1.0:
                xi = zoom_input(xi, zoom)
            xi = torch.roll(xi, shifts=shifts, dims=(1, 2, 3))
            dst[i] = torch.cat([(xi[0:1].clamp(min=0) ** gamma) * scale, xi[1:]])
    if partner is None:
        return out
    return out, (outs if many else outs[0])


def loss_with_partners(logits: torch.Tensor, target: torch.Tensor, weights: list[float],
                       anchored: bool = False, gap_factor: torch.Tensor | None = None) -> torch.Tensor:
    """B's loss on a batch of n scans and their consistency partners, ``logits`` stacked as
    (scans, first partners, second partners...), each n rows: the mean age loss (KL to the soft
    labels ``target``) of the scans and partners, plus ``weights[k]`` times the mean squared
    difference (years²) between each scan's expected age and its k-th partner's (times
    ``gap_factor`` per scan, when given). ``anchored``: the last partner has no age loss and its
    difference leaves the scan's age fixed (it learns to read as the scan does)."""
    from ..cnn import expected_age
    n = target.shape[0]
    parts = [logits[k * n:(k + 1) * n] for k in range(logits.shape[0] // n)]
    learn = len(parts) - 1 if anchored else len(parts)
    loss = sum(F.kl_div(p.log_softmax(-1), target, reduction="batchmean") for p in parts[:learn]) / learn
    age = expected_age(parts[0])
    for k, (p, weight) in enumerate(zip(parts[1:], weights), start=1):
        gap = ((age.detach() if k >= learn else age) - expected_age(p)).pow(2)
        if gap_factor is not None:
            gap = gap * gap_factor
        loss = loss + weight * gap.mean()
    return loss


def _draw_partner(copies: list[torch.Tensor], idx, gen: torch.Generator) -> torch.Tensor:
    """Each sample's consistency partner: its copy of one of ``copies``' kinds, drawn at random."""
    if len(copies) == 1:
        return copies[0][idx]
    kind = torch.randint(len(copies), (len(idx),), generator=gen)
    return torch.stack([copies[int(k)][i] for k, i in zip(kind, idx)])


def train_cnn(data_dir, out_dir, config: CNNConfig | None = None, cache_path=None,
              resume: bool = False, log=print) -> Path:
    """Train approach B's CNN on Cam-CAN reg_train and ixi120 (minus seeded validation parts,
    :func:`training_partition`); never on Cam-CAN test or ixi10."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from ..cnn import AgeCNN, expected_age, soft_labels
    cfg = config or CNNConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    gen = seed_everything(cfg.seed)
    feats = model_space_features(data_dir, cache_path or out / "features.npz", log=log,
                                 ixi_root=Path(data_dir).parent)
    tr, va = training_partition(feats, cfg.sites, cfg.n_val, cfg.n_val_ixi, cfg.split_seed)
    log(f"training on {len(tr)} subjects of {', '.join(cfg.sites)}; validating on {len(va)}")
    X = torch.from_numpy(feats["cnn"].astype(np.float32))
    X_deg = torch.from_numpy(feats["cnn_deg"].astype(np.float32)) if cfg.degraded_prob > 0 else None
    y = torch.from_numpy(feats["age"].astype(np.float32))
    is_ixi = torch.from_numpy(np.asarray(feats["site"]) == "ixi")
    partner_sets = []       # per partner of a sample: the copies it is drawn from
    second = cfg.contrast_consistency if cfg.consistency_second_weight is None else cfg.consistency_second_weight
    if cfg.contrast_consistency > 0:
        from .features import COPY_SUFFIX, acquisition_copies
        for kinds, weight in ((cfg.consistency_copies, cfg.contrast_consistency),
                              (cfg.consistency_copies_second, second)):
            if not kinds:
                continue
            partner_sets.append([torch.from_numpy(acquisition_copies(
                data_dir, feats, cache_path or out / "features.npz", kind, log=log)[
                "cnn" + COPY_SUFFIX[kind]].astype(np.float32)) for kind in kinds])
            log(f"consistency {weight} with each subject's {' or '.join(kinds)} copy"
                + (" (anchored)" if cfg.consistency_second_anchored and len(partner_sets) == 2 else ""))
    net = AgeCNN(widths=cfg.widths).to(memory_format=torch.channels_last_3d)
    if cfg.init_weights:
        from safetensors.torch import load_file
        net.load_state_dict(load_file(str(cfg.init_weights)))
        log(f"fine-tuning {cfg.init_weights}")
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    site_head, site_weight = None, None
    if cfg.site_adversarial > 0:
        if len(cfg.sites) < 2:
            raise ValueError("site-adversarial training needs both sites (--sites camcan,ixi)")
        site_head = torch.nn.Linear(net.out.in_features, 1)
        n_ixi = int(is_ixi[tr].sum())
        site_weight = torch.tensor(float(len(tr) - n_ixi) / max(n_ixi, 1))   # balance the two sites
        log(f"site-adversarial weight {cfg.site_adversarial} (gradient reversal; IXI counts {float(site_weight):.1f}x)")
    params = list(net.parameters()) + (list(site_head.parameters()) if site_head is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(tr) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps * cfg.epochs,
                                                pct_start=0.15)
    start = 0
    ckpt = out / "cnn_checkpoint.safetensors"
    if resume and ckpt.exists():
        st = load_checkpoint(ckpt)
        check_resumable(ckpt, st, sched)
        net.load_state_dict(st["net"]); ema.load_state_dict(st["ema"])
        if site_head is not None:
            site_head.load_state_dict(st["site_head"])
        opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"]); start = st["epoch"]
        log(f"resumed after epoch {start}")
    (out / "cnn_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    metrics = out / "cnn_metrics.csv"
    if start == 0:
        metrics.write_text("epoch,seconds,lr,train_loss,train_mae,val_mae,val_mae_ema\n")

    def evaluate(model):
        model.eval()
        with torch.no_grad():
            pred = torch.cat([expected_age(model(X[va[i:i + 16]].contiguous(
                memory_format=torch.channels_last_3d))) for i in range(0, len(va), 16)])
        return float((pred - y[va]).abs().mean())

    def forward(x):
        """Age-bin logits and, when site-adversarial, the pooled features."""
        if site_head is None:
            return net(x), None
        emb = net.embed(x)
        return net.read(emb), emb

    for epoch in range(start, cfg.epochs):
        net.train()
        t0 = time.time()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        losses, maes, site_losses, chance = [], [], [], []
        for s in range(steps):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            xb = X[idx]
            if X_deg is not None:
                use = torch.rand(len(idx), generator=gen) < cfg.degraded_prob
                xb = torch.where(use.view(-1, 1, 1, 1, 1), X_deg[idx], xb)
            target = soft_labels(y[idx], cfg.sigma)
            if not partner_sets:
                xb = _augment_cnn(xb, gen, cfg.max_shift, max_zoom=cfg.max_zoom).contiguous(
                    memory_format=torch.channels_last_3d)
                logits, emb = forward(xb)
                loss = F.kl_div(logits.log_softmax(-1), target, reduction="batchmean")
                site = is_ixi[idx].float()
            else:       # the scan and its acquisition copies: each the right age, and the same age
                partners = [_draw_partner(copies, idx, gen) for copies in partner_sets]
                xb, xgs = _augment_cnn(xb, gen, cfg.max_shift, partner=partners, max_zoom=cfg.max_zoom)
                n = len(idx)
                every, emb = forward(torch.cat([xb, *xgs]).contiguous(memory_format=torch.channels_last_3d))
                logits = every[:n]
                site = is_ixi[idx].float().repeat(1 + len(xgs))
                loss = loss_with_partners(
                    every, target, [cfg.contrast_consistency, second][:len(xgs)],
                    anchored=len(xgs) > 1 and cfg.consistency_second_anchored,
                    gap_factor=None if cfg.consistency_ixi_weight == 1.0
                    else torch.where(is_ixi[idx], cfg.consistency_ixi_weight, 1.0))
            if site_head is not None:      # the classifier learns the site; the features unlearn it
                site_logit = site_head(_GradientReversal.apply(emb, 1.0)).squeeze(-1)
                site_loss = F.binary_cross_entropy_with_logits(site_logit, site, pos_weight=site_weight)
                loss = loss + cfg.site_adversarial * site_loss
                site_losses.append(site_loss.item())
                chance.append(math.log(2) * float(torch.where(site > 0, site_weight, 1.0).mean()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ema.update_parameters(net)
            losses.append(loss.item())
            maes.append(float((expected_age(logits.detach()) - y[idx]).abs().mean()))
        v, ve = evaluate(net), evaluate(ema.module)
        line = (f"{epoch + 1},{time.time() - t0:.0f},{sched.get_last_lr()[0]:.2e},{np.mean(losses):.4f},"
                f"{np.mean(maes):.3f},{v:.3f},{ve:.3f}")
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.3f} train MAE {np.mean(maes):.2f} "
            f"val MAE {v:.2f} (EMA {ve:.2f})"
            + (f" site loss {np.mean(site_losses):.3f} (chance {np.mean(chance):.3f})" if site_losses else "")
            + f" ({time.time() - t0:.0f} s)")
        chosen = net if choose_weights(v, ve, cfg.export) == "final" else ema.module
        end_epoch(metrics, line, ckpt,
                   {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "gen": gen.get_state(), "epoch": epoch + 1,
                    **({"site_head": site_head.state_dict()} if site_head is not None else {})},
                   out / "age_cnn.safetensors", chosen.state_dict(), cfg.widths, epoch + 1)
    return _export(out, net, ema.module, evaluate, cfg, max(start, cfg.epochs), log)


def _export(out: Path, net, ema_net, evaluate, cfg: CNNConfig, epoch: int, log) -> Path:
    """Write the run's weights as ``cfg.export`` chooses them, and ``cnn_export.json`` saying
    which and why (also when a finished run is resumed, e.g. by ``--resume --ship``)."""
    from safetensors.torch import save_file
    v, ve = evaluate(net), evaluate(ema_net)
    which = choose_weights(v, ve, cfg.export)
    weights = (net if which == "final" else ema_net).state_dict()
    path = out / "age_cnn.safetensors"
    save_file({k: t.contiguous() for k, t in weights.items()}, str(path),
              metadata={"widths": json.dumps(list(cfg.widths)), "epoch": str(epoch), "weights": which})
    (out / "cnn_export.json").write_text(json.dumps(
        {"weights": which, "rule": cfg.export, "epoch": epoch,
         "val_mae_final": round(v, 3), "val_mae_ema": round(ve, 3)}, indent=1))
    log(f"exported the {'final' if which == 'final' else 'moving-average'} weights "
        f"(validation MAE: final {v:.2f}, moving average {ve:.2f} years)")
    return path


