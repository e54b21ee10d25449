"""Reproducible training of the shipped networks on the Cam-CAN set (CPU friendly).

``brainage train-segmentation`` and ``brainage train-cnn`` call the functions here; every
setting is logged next to the weights so that one command reproduces them.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from .preprocessing import normalize_intensity
from .resunet import N_CLASSES, ResUNet3D, pad_to_multiple


# --------------------------------------------------------------------------- data

def read_camcan_subjects(data_dir: str | os.PathLike) -> list[dict]:
    """Rows of ``camcan/subjects.csv`` (subject_id, age (years), sex, split)."""
    with open(Path(data_dir) / "subjects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["age"] = float(r["age"])
    return rows


def camcan_paths(data_dir: str | os.PathLike, subject_id: str) -> dict[str, Path]:
    d = Path(data_dir)
    return {"image": d / "images" / f"{subject_id}_T1w.nii.gz",
            "mask": d / "masks" / f"{subject_id}_brain_mask.nii.gz",
            "seg": d / "segs" / f"{subject_id}_seg.nii.gz"}


def load_camcan_volumes(data_dir, subject_ids, divisor=8):
    """Normalised images (float16) and reference labels (uint8), padded, as numpy arrays."""
    images, labels = [], []
    for sid in subject_ids:
        p = camcan_paths(data_dir, sid)
        img = normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(p["image"]))))
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(p["seg"]))).astype(np.uint8)
        img, _ = pad_to_multiple(img, divisor)
        seg, _ = pad_to_multiple(seg, divisor)
        images.append(img.astype(np.float16))
        labels.append(seg)
    return np.stack(images), np.stack(labels)


# --------------------------------------------------------------------------- augmentation

def augment_intensity(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Scanner-like intensity changes on a batch (B,1,D,H,W) of normalised T1s.

    Random gamma, global scale, a smooth multiplicative bias field and Gaussian noise;
    background (0) stays 0.
    """
    b = x.shape[0]
    fg = (x > 0).to(x.dtype)
    r = lambda *s: torch.rand(*s, generator=gen)
    gamma = torch.exp((r(b) - 0.5) * 0.8).view(b, 1, 1, 1, 1)          # ~0.67 .. 1.5
    scale = (0.85 + 0.3 * r(b)).view(b, 1, 1, 1, 1)
    coarse = 1 + 0.3 * (r(b, 1, 3, 3, 3) - 0.5)
    field = F.interpolate(coarse, size=x.shape[2:], mode="trilinear", align_corners=True)
    noise = 0.03 * r(b).view(b, 1, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    y = (x.clamp(min=0) ** gamma) * scale * field + noise * fg
    return (y * fg).clamp(0, 2)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (1, 1, D, H, W) blurred by a separable Gaussian of ``sigma`` voxels."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = 2 * r + 1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = r
        x = F.conv3d(F.pad(x, pad, mode="replicate"), k.view(shape))
    return x


def augment_blur(x: torch.Tensor, gen: torch.Generator, prob: float, max_sigma: float) -> torch.Tensor:
    """With probability ``prob`` per image of a batch (B, 1, D, H, W), a Gaussian blur of sigma
    ~ U(0.2, ``max_sigma``) voxels: the softness that interpolation and other scanners leave.
    Half of the blurred images are masked again to their foreground, half keep the blurred edge."""
    out = x.clone()
    for i in range(x.shape[0]):
        if float(torch.rand(1, generator=gen)) >= prob:
            continue
        sigma = 0.2 + (max_sigma - 0.2) * float(torch.rand(1, generator=gen))
        b = gaussian_blur(x[i:i + 1].contiguous(), sigma)
        if float(torch.rand(1, generator=gen)) < 0.5:
            b = b * (x[i:i + 1] > 0)
        out[i:i + 1] = b
    return out


def random_crops(images, labels, idx, crop, gen: torch.Generator, flip=True):
    """Random crops (with left-right flips) of the subjects ``idx`` as torch tensors."""
    xs, ys = [], []
    shape = images.shape[1:]
    for i in idx:
        starts = [int(torch.randint(0, s - c + 1, (1,), generator=gen)) for s, c in zip(shape, crop)]
        sl = tuple(slice(s, s + c) for s, c in zip(starts, crop))
        x = torch.from_numpy(images[i][sl].astype(np.float32))
        y = torch.from_numpy(labels[i][sl].astype(np.int64))
        if flip and torch.rand(1, generator=gen) < 0.5:   # last axis is left-right (LPS)
            x, y = x.flip(-1), y.flip(-1)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs)[:, None], torch.stack(ys)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss over the tissue classes (1..3)."""
    prob = logits.softmax(1)
    onehot = F.one_hot(target, N_CLASSES).permute(0, 4, 1, 2, 3).to(prob.dtype)
    dims = (0, 2, 3, 4)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    return 1 - dice[1:].mean()


def dice_scores(pred: np.ndarray, ref: np.ndarray, labels=(1, 2, 3)) -> list[float]:
    """Dice per label between two integer label arrays."""
    out = []
    for lab in labels:
        a, b = pred == lab, ref == lab
        denom = a.sum() + b.sum()
        out.append(float(2 * np.logical_and(a, b).sum() / denom) if denom else 1.0)
    return out


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- segmentation

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
    blur_prob: float = 0.0                  # share of crops blurred (augment_blur)
    max_blur_sigma: float = 1.0             # voxels (2 mm)
    init_weights: str | None = None         # fine-tune these safetensors instead of starting afresh


def _net_to_cl(net):
    return net.to(memory_format=torch.channels_last_3d)


def _check_resumable(checkpoint, state: dict, sched) -> None:
    """A checkpoint continues only the schedule it was made with (same epochs and batches)."""
    made, now = state["sched"].get("total_steps"), getattr(sched, "total_steps", None)
    if made != now:
        raise ValueError(f"{checkpoint} belongs to a run of {made} steps, this one has {now}: "
                         "resume with the settings (--epochs) of the run that made it")


def _end_epoch(metrics_path, line: str, checkpoint, state: dict, weights_path, weights: dict,
               widths, epoch: int) -> None:
    """Append the epoch's metrics line, save the resumable checkpoint and the weights so far."""
    import torch
    from safetensors.torch import save_file
    with open(metrics_path, "a") as f:
        f.write(line + "\n")
    torch.save(state, checkpoint)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(weights_path),
              metadata={"widths": json.dumps(list(widths)), "epoch": str(epoch)})


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
    log(f"loaded {len(train_ids)} training and {len(val_ids)} validation subjects "
        f"in {time.time() - t0:.0f} s")
    net = ResUNet3D(widths=cfg.widths)
    if cfg.init_weights:
        from safetensors.torch import load_file
        net.load_state_dict(load_file(str(cfg.init_weights)))
        log(f"fine-tuning {cfg.init_weights}")
    net = _net_to_cl(net)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                pct_start=0.1)
    start_epoch = 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        _check_resumable(ckpt, state, sched)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        start_epoch = state["epoch"]
        log(f"resumed after epoch {start_epoch}")
    (out / "segmentation_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    metrics_path = out / "segmentation_metrics.csv"
    if start_epoch == 0:
        metrics_path.write_text("epoch,seconds,lr,train_loss,val_dice_csf,val_dice_gm,val_dice_wm\n")
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        te = time.time()
        order = torch.randperm(len(train_ids), generator=gen).tolist()
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x, y = random_crops(images, labels, idx, cfg.crop, gen)
            if cfg.blur_prob > 0:
                x = augment_blur(x, gen, cfg.blur_prob, cfg.max_blur_sigma)
            x = augment_intensity(x, gen).contiguous(memory_format=torch.channels_last_3d)
            logits = net(x)
            loss = F.cross_entropy(logits, y) + dice_loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if (s + 1) % 50 == 0:
                log(f"  epoch {epoch + 1} step {s + 1}/{steps_per_epoch} loss {np.mean(losses[-50:]):.4f}")
        net.eval()
        dices = []
        with torch.no_grad():
            for img, lab in zip(vimages, vlabels):
                x = torch.from_numpy(img.astype(np.float32))[None, None]
                pred = net(x.contiguous(memory_format=torch.channels_last_3d)).argmax(1)[0].numpy()
                dices.append(dice_scores(pred, lab))
        d = np.mean(dices, axis=0)
        line = (f"{epoch + 1},{time.time() - te:.0f},{sched.get_last_lr()[0]:.2e},"
                f"{np.mean(losses):.4f},{d[0]:.4f},{d[1]:.4f},{d[2]:.4f}")
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.4f} "
            f"val Dice CSF {d[0]:.3f} GM {d[1]:.3f} WM {d[2]:.3f} ({time.time() - te:.0f} s)")
        _end_epoch(metrics_path, line, ckpt,
                   {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": gen.get_state(), "epoch": epoch + 1},
                   out / "resunet.safetensors", net.state_dict(), cfg.widths, epoch + 1)
    return out / "resunet.safetensors"


# --------------------------------------------------------------------------- template

def build_template(data_dir, out_path, splits=("seg_train", "reg_train")) -> Path:
    """Mean normalised T1 of the training subjects: the registration template (model space)."""
    rows = [r for r in read_camcan_subjects(data_dir) if r["split"] in splits]
    acc = None
    ref = None
    for r in rows:
        img = sitk.ReadImage(str(camcan_paths(data_dir, r["subject_id"])["image"]))
        arr = normalize_intensity(sitk.GetArrayFromImage(img)).astype(np.float64)
        acc = arr if acc is None else acc + arr
        ref = ref or img
    mean = sitk.GetImageFromArray((acc / len(rows)).astype(np.float32))
    mean.CopyInformation(ref)
    sitk.WriteImage(mean, str(out_path), useCompression=True)
    return Path(out_path)


# --------------------------------------------------------------------------- model-space features

def tissue_intensity_landmarks(data_dir, split: str = "seg_train") -> dict[str, float]:
    """Mean over ``split`` of the median normalised GM and WM intensity under the shipped
    ResUNet's labels: the targets of :func:`~BrainAgeLib.preprocessing.harmonize_intensities`
    (``preprocessing.TISSUE_LANDMARKS``)."""
    from .models import load_resunet
    from .segmentation import segment_array
    net = load_resunet()
    meds = []
    for r in read_camcan_subjects(data_dir):
        if r["split"] != split:
            continue
        arr = normalize_intensity(sitk.GetArrayFromImage(sitk.ReadImage(str(camcan_paths(data_dir, r["subject_id"])["image"]))))
        lab = segment_array(net, arr).argmax(0)
        meds.append([float(np.median(arr[lab == c])) for c in (2, 3)])
    gm, wm = np.mean(meds, axis=0)
    return {"gm": round(float(gm), 4), "wm": round(float(wm), 4)}


REGIONAL_CELLS = (4, 6)   # cell sizes (2 mm voxels: 8 and 12 mm) compared for approach A


CACHE_BLUR_SIGMA = (0.3, 1.0)   # voxels (2 mm) of the blurred copy each subject gets in the cache


def model_space_features(data_dir, cache_path, log=print, splits=("reg_train", "test")) -> dict:
    """Segment every subject of ``splits`` with the shipped ResUNet and cache what the age
    models learn from: regional/global tissue fractions (approach A) and CNN inputs (B).

    The cache is an ``.npz`` keyed by subject; it is rebuilt when missing.
    """
    from .cnn import cnn_input
    from .models import load_resunet
    from .segmentation import segment_array
    from .volumes import global_fractions, regional_fractions
    cache_path = Path(cache_path)
    if cache_path.exists():
        cached = dict(np.load(cache_path))
        if all(f"regional_c{c}" in cached for c in REGIONAL_CELLS) and "global_blur" in cached:
            return cached
        log(f"{cache_path} predates the current feature set: rebuilding it")
    rows = [r for r in read_camcan_subjects(data_dir) if r["split"] in splits]
    net = load_resunet()
    blur_rng = np.random.default_rng(20261125)
    out = {k: [] for k in ("subject_id", "age", "split", "global", "global_blur", "cnn", "cnn_blur",
                           "blur_sigma")}
    out.update({f"regional_c{c}{v}": [] for c in REGIONAL_CELLS for v in ("", "_blur")})
    t0 = time.time()
    for i, r in enumerate(rows):
        img = sitk.ReadImage(str(camcan_paths(data_dir, r["subject_id"])["image"]))
        arr = normalize_intensity(sitk.GetArrayFromImage(img))
        prob = segment_array(net, arr)
        out["subject_id"].append(r["subject_id"])
        out["age"].append(r["age"])
        out["split"].append(r["split"])
        for c in REGIONAL_CELLS:
            out[f"regional_c{c}"].append(regional_fractions(prob, c))
        out["global"].append(global_fractions(prob))
        out["cnn"].append(cnn_input(arr, prob).astype(np.float16))
        # the same scan softer (as after interpolation or from another scanner), segmented again:
        # approach B learns that blur is not age
        sigma = float(blur_rng.uniform(*CACHE_BLUR_SIGMA))
        soft = gaussian_blur(torch.from_numpy(arr.astype(np.float32))[None, None], sigma)[0, 0].numpy()
        soft = soft * (arr > 0) if blur_rng.random() < 0.5 else soft
        prob_soft = segment_array(net, soft)
        out["cnn_blur"].append(cnn_input(soft, prob_soft).astype(np.float16))
        out["global_blur"].append(global_fractions(prob_soft))
        for c in REGIONAL_CELLS:
            out[f"regional_c{c}_blur"].append(regional_fractions(prob_soft, c))
        out["blur_sigma"].append(sigma)
        if (i + 1) % 50 == 0:
            log(f"segmented {i + 1}/{len(rows)} subjects ({time.time() - t0:.0f} s)")
    arrays = {k: np.asarray(v) for k, v in out.items()}
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_path, **arrays)
    return arrays


# --------------------------------------------------------------------------- approach B

@dataclass
class CNNConfig:
    """Settings of ``brainage train-cnn`` (logged with the weights)."""
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)
    n_val: int = 60                 # subjects of reg_train held out for validation/ensembling
    epochs: int = 60
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-3
    ema_decay: float = 0.995
    sigma: float = 1.0              # soft-label width (years)
    max_shift: int = 2              # random translation (4 mm voxels)
    blur_prob: float = 0.5          # share of samples drawn from the blurred, re-segmented copy
    seed: int = 20261123
    threads: int = 2


def split_reg_train(ids: list[str], n_val: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded shuffle of reg_train subject IDs into (train, validation)."""
    ids = sorted(ids)
    random.Random(seed).shuffle(ids)
    return ids[n_val:], ids[:n_val]


def _augment_cnn(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    b = x.shape[0]
    out = torch.empty_like(x)
    for i in range(b):
        xi = x[i]
        if torch.rand(1, generator=gen) < 0.5:
            xi = xi.flip(-1)
        shifts = [int(s) for s in torch.randint(-max_shift, max_shift + 1, (3,), generator=gen)]
        xi = torch.roll(xi, shifts=shifts, dims=(1, 2, 3))
        t1 = xi[0:1]
        gamma = float(torch.exp((torch.rand(1, generator=gen) - 0.5) * 0.6))
        scale = float(0.9 + 0.2 * torch.rand(1, generator=gen))
        xi = torch.cat([(t1.clamp(min=0) ** gamma) * scale, xi[1:]])
        out[i] = xi
    return out


def train_cnn(data_dir, out_dir, config: CNNConfig | None = None, cache_path=None,
              resume: bool = False, log=print) -> Path:
    """Train approach B's CNN on reg_train (minus a seeded validation part); never on test."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from .cnn import AgeCNN, expected_age, soft_labels
    cfg = config or CNNConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    gen = seed_everything(cfg.seed)
    feats = model_space_features(data_dir, cache_path or out / "features.npz", log=log)
    ids = list(feats["subject_id"])
    split = feats["split"]
    reg = [s for s, sp in zip(ids, split) if sp == "reg_train"]
    train_ids, val_ids = split_reg_train(reg, cfg.n_val, cfg.seed)
    index = {s: i for i, s in enumerate(ids)}
    tr = np.array([index[s] for s in train_ids])
    va = np.array([index[s] for s in val_ids])
    X = torch.from_numpy(feats["cnn"].astype(np.float32))
    X_blur = torch.from_numpy(feats["cnn_blur"].astype(np.float32)) if cfg.blur_prob > 0 else None
    y = torch.from_numpy(feats["age"].astype(np.float32))
    net = AgeCNN(widths=cfg.widths).to(memory_format=torch.channels_last_3d)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(tr) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps * cfg.epochs,
                                                pct_start=0.15)
    start = 0
    ckpt = out / "cnn_checkpoint.pt"
    if resume and ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        _check_resumable(ckpt, st, sched)
        net.load_state_dict(st["net"]); ema.load_state_dict(st["ema"])
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

    for epoch in range(start, cfg.epochs):
        net.train()
        t0 = time.time()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        losses, maes = [], []
        for s in range(steps):
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            xb = X[idx]
            if X_blur is not None:
                use = torch.rand(len(idx), generator=gen) < cfg.blur_prob
                xb = torch.where(use.view(-1, 1, 1, 1, 1), X_blur[idx], xb)
            xb = _augment_cnn(xb, gen, cfg.max_shift).contiguous(memory_format=torch.channels_last_3d)
            logits = net(xb)
            target = soft_labels(y[idx], cfg.sigma)
            loss = F.kl_div(logits.log_softmax(-1), target, reduction="batchmean")
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
            f"val MAE {v:.2f} (EMA {ve:.2f}) ({time.time() - t0:.0f} s)")
        _end_epoch(metrics, line, ckpt,
                   {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "gen": gen.get_state(), "epoch": epoch + 1},
                   out / "age_cnn.safetensors", ema.module.state_dict(), cfg.widths, epoch + 1)
    return out / "age_cnn.safetensors"


# --------------------------------------------------------------------------- approach A + ensemble

def candidate_regressors(seed: int) -> dict:
    """The regressors compared by cross-validation for approach A:
    name -> (estimator, features), features "global" or "c<cell>" (regional + global)."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler
    from sklearn.svm import SVR
    from .regression import VolumeAgeRegressor, VolumeFeatureTransform
    out = {
        "polynomial (deg 3) on global fractions [seed]":
            (make_pipeline(PolynomialFeatures(3), LinearRegression()), "global"),
        "ridge on global fractions": (VolumeAgeRegressor(alpha=1e-3, power=1.0), "global"),
        "gradient boosting on PCA(30) of regional 8 mm": (make_pipeline(
            VolumeFeatureTransform(), StandardScaler(), PCA(30, random_state=seed),
            HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=seed)), "c4"),
        "linear SVR on regional 8 mm": (make_pipeline(VolumeFeatureTransform(), StandardScaler(),
                                                      SVR(kernel="linear", C=1e-3, epsilon=1.0)), "c4"),
        "ridge on regional 8 mm, no transform, alpha 1e-2":
            (VolumeAgeRegressor(alpha=1e-2, power=1.0, cell=4), "c4"),
    }
    for cell in REGIONAL_CELLS:
        for alpha in ("1e-2", "3e-2", "1e-1"):
            out[f"ridge on regional {2 * cell} mm, sqrt, alpha {alpha}"] = (
                VolumeAgeRegressor(alpha=float(alpha), cell=cell), f"c{cell}")
    return out


def age_metrics(pred, age) -> dict:
    """MAE, RMSE (years), R², Pearson r, and r between the gap and age."""
    pred, age = np.asarray(pred, float), np.asarray(age, float)
    err = pred - age
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "r2": float(1 - (err ** 2).sum() / ((age - age.mean()) ** 2).sum()),
            "r": float(np.corrcoef(pred, age)[0, 1]), "r_gap_age": float(np.corrcoef(err, age)[0, 1])}


def fit_age_model(data_dir, out_dir, cache_path, cnn_weights=None, seed: int = 20261123,
                  blur_augment: bool = True, log=print) -> Path:
    """Select and fit approach A on reg_train (5-fold shuffled CV), calibrate it, and, when CNN
    weights are given, calibrate B and the ensemble on the CNN's validation subjects.
    ``blur_augment``: A also learns from each subject's blurred copy (same age).

    Writes ``age_model.json`` and ``regressor_comparison.csv`` into ``out_dir``.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold
    from .regression import AgeBiasCorrection, best_ensemble_weight, conformal_halfwidth
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    f = model_space_features(data_dir, cache_path, log=log)
    tr = f["split"] == "reg_train"
    X_glob = f["global"][tr].astype(np.float64)
    X_cells = {f"c{c}": np.concatenate([f[f"regional_c{c}"][tr], X_glob], axis=1).astype(np.float64)
               for c in REGIONAL_CELLS}
    y = f["age"][tr].astype(np.float64)
    ids = list(f["subject_id"][tr])
    cv = KFold(5, shuffle=True, random_state=seed)
    # each subject's blurred, re-segmented copy (the feature cache's): with ``blur_augment`` the
    # regressors also learn from it (same age), and the CV reports how far blur moves the age
    X_glob_blur = f["global_blur"][tr].astype(np.float64)
    X_blur = {"global": X_glob_blur}
    X_blur.update({f"c{c}": np.concatenate([f[f"regional_c{c}_blur"][tr], X_glob_blur], axis=1).astype(np.float64)
                   for c in REGIONAL_CELLS})

    def fit(est, X, X_soft, y):
        """A fresh ``est`` fitted on ``X`` (and, with ``blur_augment``, the blurred copies too)."""
        if blur_augment:
            X, y = np.concatenate([X, X_soft]), np.concatenate([y, y])
        return clone(est).fit(X, y)

    rows, oof = [], {}
    for name, (est, feats) in candidate_regressors(seed).items():
        t0 = time.time()
        X = X_glob if feats == "global" else X_cells[feats]
        p, p_blur = np.zeros_like(y), np.zeros_like(y)
        for fit_idx, val_idx in cv.split(X):
            m_ = fit(est, X[fit_idx], X_blur[feats][fit_idx], y[fit_idx])
            p[val_idx] = m_.predict(X[val_idx])
            p_blur[val_idx] = m_.predict(X_blur[feats][val_idx])
        oof[name] = p
        m = age_metrics(p, y)
        rows.append({"regressor": name, "features": feats, **{k: round(v, 3) for k, v in m.items()},
                     "blur_shift": round(float(np.mean(p_blur - p)), 2), "seconds": round(time.time() - t0, 1)})
        log(f"  {name}: CV MAE {m['mae']:.2f} R2 {m['r2']:.3f}, blurred copy {np.mean(p_blur - p):+.2f} y "
            f"({time.time() - t0:.0f} s)")
    with open(out / "regressor_comparison.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    ridge_rows = [r for r in rows if r["regressor"].startswith("ridge on regional")]
    best = min(ridge_rows, key=lambda r: r["mae"])   # the JSON-exportable family
    est, feats = candidate_regressors(seed)[best["regressor"]]
    log(f"approach A: {best['regressor']} (CV MAE {best['mae']})")
    final = fit(est, X_cells[feats], X_blur[feats], y)
    p_oof = oof[best["regressor"]]
    bias_a = AgeBiasCorrection().fit(p_oof, y)
    model = {"created": time.strftime("%Y-%m-%d"), "seed": seed,
             "training": {"data": "camcan reg_train", "n": int(tr.sum()), "blur_augment": blur_augment},
             "volumes": {"regressor": final.to_dict(), "selected": best["regressor"],
                         "cv": {k: best[k] for k in ("mae", "rmse", "r2", "r")},
                         "bias": bias_a.to_dict(),
                         "interval_halfwidth": conformal_halfwidth(bias_a(p_oof) - y)}}
    if cnn_weights is not None:
        import torch
        from safetensors.torch import load_file
        from .cnn import AgeCNN, expected_age
        cfg = CNNConfig(**json.loads((Path(cnn_weights).parent / "cnn_config.json").read_text()))
        net = AgeCNN(widths=tuple(cfg.widths))
        net.load_state_dict(load_file(str(cnn_weights)))
        net.eval()
        _, val_ids = split_reg_train(ids, cfg.n_val, cfg.seed)
        index = {s: i for i, s in enumerate(ids)}
        va = np.array([index[s] for s in val_ids])
        xv = torch.from_numpy(f["cnn"][tr][va].astype(np.float32))
        with torch.no_grad():
            pb = expected_age(net(xv)).numpy().astype(np.float64)
        pa, yv = p_oof[va], y[va]
        bias_b = AgeBiasCorrection().fit(pb, yv)
        wgt = best_ensemble_weight(pa, pb, yv)
        pe = wgt * pa + (1 - wgt) * pb
        bias_e = AgeBiasCorrection().fit(pe, yv)
        model["cnn"] = {"bias": bias_b.to_dict(), "validation_n": len(va),
                        "validation": age_metrics(pb, yv),
                        "interval_halfwidth": conformal_halfwidth(bias_b(pb) - yv)}
        model["ensemble"] = {"weight_volumes": wgt, "bias": bias_e.to_dict(), "validation_n": len(va),
                             "validation": age_metrics(pe, yv),
                             "interval_halfwidth": conformal_halfwidth(bias_e(pe) - yv)}
        log(f"ensemble weight of A {wgt:.2f}; validation MAE A {age_metrics(pa, yv)['mae']:.2f} "
            f"B {age_metrics(pb, yv)['mae']:.2f} ensemble {age_metrics(pe, yv)['mae']:.2f}")
    path = out / "age_model.json"
    path.write_text(json.dumps(model))
    return path


# --- tissue definitions (DLMUSE's, learnt on ixi10) -------------------------------------------

def read_dlmuse_tissues(dlmuse_path, tissue_map_csv) -> np.ndarray:
    """DLMUSE parcellation -> tissue labels (0 bg, 1 CSF, 2 GM, 3 WM) via the tissue map."""
    code = {"CSF": 1, "GM": 2, "WM": 3}
    with open(tissue_map_csv, newline="") as f:
        mapping = {int(r["dlmuse_label"]): code[r["tissue"]] for r in csv.DictReader(f)}
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(dlmuse_path))).astype(np.int64)
    lut = np.zeros(max(arr.max(), max(mapping)) + 1, np.uint8)
    for k, v in mapping.items():
        lut[k] = v
    return lut[arr]


def dlmuse_case(ixi_dir, subject_id: str, **predict_kwargs):
    """One ixi10 subject through :func:`~BrainAgeLib.pipeline.predict`: returns ``(result,
    reference, reference_in_model_space)``, DLMUSE's tissue labels on the input grid and
    carried (nearest neighbour) into model space with the result's registration."""
    from .models import load_template
    from .pipeline import predict
    d = Path(ixi_dir)
    result = predict(str(d / "t1" / f"{subject_id}_T1.nii.gz"), **predict_kwargs)
    ref = read_dlmuse_tissues(d / "dlmuse" / f"{subject_id}_DLMUSE.nii.gz", d / "dlmuse_tissue_map.csv")
    ref_img = sitk.GetImageFromArray(ref)
    ref_img.CopyInformation(result.labels)
    in_model = sitk.Resample(ref_img, load_template(), result.model_to_input,
                             sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return result, ref, sitk.GetArrayFromImage(in_model)


def fit_tissue_definition(ixi_dir, out_path, log=print) -> Path:
    """Fit the :class:`~BrainAgeLib.segmentation.TissueDefinitionMap` to DLMUSE's tissues on
    all ixi10 subjects and write it as JSON (its leave-one-subject-out Dice comes from
    ``brainage evaluate-ixi``)."""
    from .segmentation import TissueDefinitionMap
    with open(Path(ixi_dir) / "subjects.csv", newline="") as f:
        ids = [r["subject_id"] for r in csv.DictReader(f)]
    probs, targets = [], []
    for i, sid in enumerate(ids):
        result, _, target = dlmuse_case(ixi_dir, sid, approach="volumes")
        probs.append(result.model_space_probabilities)
        targets.append(target)
        log(f"[{i + 1}/{len(ids)}] {sid}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    m = TissueDefinitionMap("dlmuse").fit(probs, targets)
    out.write_text(json.dumps(m.to_dict()) + "\n")
    log(f"wrote {out}")
    return out
