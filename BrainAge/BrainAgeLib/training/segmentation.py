"""Training the ResUNet (``brainage train-segmentation``)."""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..resunet import N_CLASSES, ResUNet3D
from .augmentation import augment_batch, change_contrast, degrade_image, random_crops
from .checkpoints import check_resumable, end_epoch, load_checkpoint
from .data import (dice_scores, load_camcan_volumes, load_unlabelled_ixi, read_camcan_subjects,
                   seed_everything)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over the tissue classes (1..3)."""
    prob = logits.softmax(1)
    onehot = F.one_hot(target, N_CLASSES).permute(0, 4, 1, 2, 3).to(prob.dtype)
    dims = (0, 2, 3, 4)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[1:].mean()


def teacher_consistency_loss(student_logits: torch.Tensor, teacher_prob: torch.Tensor,
                             brain: torch.Tensor) -> torch.Tensor:
    """KL divergence from the teacher's tissue probabilities (B, C, D, H, W) to the student's,
    summed over classes and averaged over the ``brain`` voxels (B, D, H, W; bool) of the crops
    (0 when a crop holds no brain). The student reads the crop with another contrast, the
    teacher the crop as it is: the student learns to segment it the same."""
    logp = student_logits.log_softmax(1)
    kl = (teacher_prob * (teacher_prob.clamp_min(1e-8).log() - logp)).sum(1)
    n = brain.sum()
    return (kl * brain).sum() / n if n > 0 else kl.sum() * 0


def teacher_consistency_term(net, teacher, unlabelled: np.ndarray, crop, n_crops: int, anchor: bool,
                             gen: torch.Generator) -> torch.Tensor:
    """One step's teacher-consistency loss: ``n_crops`` random crops of the ``unlabelled``
    model-space T1s, read by the frozen ``teacher`` as they are and by ``net`` with another
    contrast (:func:`~.augmentation.change_contrast`); with ``anchor`` half as many crops, each
    read by ``net`` both ways (the clean reading held to the teacher's too)."""
    n = max(n_crops // 2 if anchor else n_crops, 1)
    pick = torch.randint(0, len(unlabelled), (n,), generator=gen).tolist()
    xu, _ = random_crops(unlabelled, None, pick, crop, gen)
    with torch.no_grad():
        tprob = teacher(xu.contiguous(memory_format=torch.channels_last_3d)).softmax(1)
    xa = change_contrast(xu)
    if anchor:
        xa, xu, tprob = torch.cat([xa, xu]), torch.cat([xu, xu]), torch.cat([tprob, tprob])
    return teacher_consistency_loss(net(xa.contiguous(memory_format=torch.channels_last_3d)), tprob, xu[:, 0] > 0)


@dataclass
class SegmentationConfig:
    """Settings of ``brainage train-segmentation`` (logged with the weights)."""
    widths: tuple[int, ...] = (8, 16, 32, 64)
    train_splits: tuple[str, ...] = ("seg_train", "reg_train")
    val_splits: tuple[str, ...] = ("seg_val",)
    epochs: int = 14
    batch_size: int = 2
    crop: tuple[int, int, int] = (64, 64, 64)
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 20261123
    threads: int = 2
    max_train_subjects: int | None = None   # for quick trials only
    p_real: float = 0.0                     # share of crops given another acquisition (TorchIO)
    p_synth: float = 0.0                    # share of crops drawn from their labels (domain randomisation)
    init_weights: str | None = None         # fine-tune these safetensors instead of starting afresh
    thick_slice_profile: bool = False       # thick slices averaged over their slab (augmentation.random_thick_slices)
    consistency_cache: str | None = None    # ixi_model_space.npz: unlabelled ixi120 heads for the teacher term
    consistency_weight: float = 0.0         # weight of the teacher-consistency term (needs init_weights)
    consistency_crops: int = 2              # unlabelled crops per step
    consistency_anchor: bool = False        # half of them read as they are too (the clean reading kept)


def _net_to_cl(net):
    return net.to(memory_format=torch.channels_last_3d)



def train_segmentation(data_dir, out_dir, config: SegmentationConfig | None = None,
                       resume: bool = False, log=print) -> Path:
    """Train the ResUNet on Cam-CAN (never on ``test``); write weights, config and a log.

    Returns the path of the final safetensors weights.
    """
    cfg = config or SegmentationConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    gen = seed_everything(cfg.seed)
    rows = read_camcan_subjects(data_dir)
    train_ids = [r["subject_id"] for r in rows if r["split"] in cfg.train_splits]
    val_ids = [r["subject_id"] for r in rows if r["split"] in cfg.val_splits]
    assert not any(r["split"] == "test" and r["subject_id"] in train_ids for r in rows)
    rng = random.Random(cfg.seed)
    rng.shuffle(train_ids)
    if cfg.max_train_subjects:
        train_ids = train_ids[: cfg.max_train_subjects]
    t0 = time.time()
    images, labels = load_camcan_volumes(data_dir, train_ids)
    vimages, vlabels = load_camcan_volumes(data_dir, val_ids)
    # the validation subjects once more as another acquisition (fixed draw): invariance, per epoch
    vgen = torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    vdegraded = np.stack([degrade_image(v.astype(np.float32), vgen) for v in vimages])
    torch.manual_seed(cfg.seed)
    log(f"loaded {len(train_ids)} training and {len(val_ids)} validation subjects "
        f"in {time.time() - t0:.0f} s")
    net = ResUNet3D(widths=cfg.widths)
    if cfg.init_weights:
        from safetensors.torch import load_file
        net.load_state_dict(load_file(str(cfg.init_weights)))
        log(f"fine-tuning {cfg.init_weights}")
    net = _net_to_cl(net)
    teacher, unlabelled = None, None
    if cfg.consistency_weight > 0:
        if not (cfg.init_weights and cfg.consistency_cache):
            raise ValueError("the teacher-consistency term needs init_weights (the teacher) and "
                             "consistency_cache (ixi_model_space.npz)")
        teacher = ResUNet3D(widths=cfg.widths)
        teacher.load_state_dict(net.state_dict())
        teacher = _net_to_cl(teacher).eval().requires_grad_(False)
        from .cnn import CNNConfig   # leave out the heads that approach B validates on
        unlabelled = load_unlabelled_ixi(cfg.consistency_cache, CNNConfig.n_val_ixi, CNNConfig.split_seed)
        log(f"teacher consistency on {len(unlabelled)} unlabelled ixi120 heads, "
            f"weight {cfg.consistency_weight}")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                pct_start=0.1)
    start_epoch = 0
    ckpt = out / "checkpoint.safetensors"
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        check_resumable(ckpt, state, sched)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        start_epoch = state["epoch"]
        log(f"resumed after epoch {start_epoch}")
    (out / "segmentation_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    metrics_path = out / "segmentation_metrics.csv"
    if start_epoch == 0:
        metrics_path.write_text("epoch,seconds,lr,train_loss,val_dice_csf,val_dice_gm,val_dice_wm,"
                                "degraded_dice_csf,degraded_dice_gm,degraded_dice_wm\n")
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        te = time.time()
        order = torch.randperm(len(train_ids), generator=gen).tolist()
        losses, cons_losses = [], []
        for s in range(steps_per_epoch):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x, y = random_crops(images, labels, idx, cfg.crop, gen)
            if cfg.p_real + cfg.p_synth > 0:
                x, y = augment_batch(x, y, gen, p_real=cfg.p_real, p_synth=cfg.p_synth,
                                     thick_slice_profile=cfg.thick_slice_profile)
            x = x.contiguous(memory_format=torch.channels_last_3d)
            logits = net(x)
            loss = F.cross_entropy(logits, y) + dice_loss(logits, y)
            if teacher is not None:
                cons = teacher_consistency_term(net, teacher, unlabelled, cfg.crop, cfg.consistency_crops,
                                                cfg.consistency_anchor, gen)
                loss = loss + cfg.consistency_weight * cons
                cons_losses.append(cons.item())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if (s + 1) % 50 == 0:
                log(f"  epoch {epoch + 1} step {s + 1}/{steps_per_epoch} loss {np.mean(losses[-50:]):.4f}"
                    + (f" consistency {np.mean(cons_losses[-50:]):.4f}" if cons_losses else ""))
        net.eval()

        def val_dice(images):
            dices = []
            with torch.no_grad():
                for img, lab in zip(images, vlabels):
                    x = torch.from_numpy(img.astype(np.float32))[None, None]
                    pred = net(x.contiguous(memory_format=torch.channels_last_3d)).argmax(1)[0].numpy()
                    dices.append(dice_scores(pred, lab))
            return np.mean(dices, axis=0)
        d, dd = val_dice(vimages), val_dice(vdegraded)
        line = (f"{epoch + 1},{time.time() - te:.0f},{sched.get_last_lr()[0]:.2e},"
                f"{np.mean(losses):.4f},{d[0]:.4f},{d[1]:.4f},{d[2]:.4f},{dd[0]:.4f},{dd[1]:.4f},{dd[2]:.4f}")
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.4f} "
            f"val Dice CSF {d[0]:.3f} GM {d[1]:.3f} WM {d[2]:.3f}; degraded {dd[0]:.3f} {dd[1]:.3f} "
            f"{dd[2]:.3f}" + (f"; teacher consistency {np.mean(cons_losses):.4f}" if cons_losses else "")
            + f" ({time.time() - te:.0f} s)")
        end_epoch(metrics_path, line, ckpt,
                   {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": gen.get_state(), "epoch": epoch + 1},
                   out / "resunet.safetensors", net.state_dict(), cfg.widths, epoch + 1)
    return out / "resunet.safetensors"


