"""Training approach B's CNN (``brainage train-cnn``)."""
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

from .checkpoints import check_resumable, end_epoch, load_checkpoint
from .data import seed_everything
from .features import model_space_features


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
    from ..cnn import AgeCNN, expected_age, soft_labels
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
    ckpt = out / "cnn_checkpoint.safetensors"
    if resume and ckpt.exists():
        st = load_checkpoint(ckpt)
        check_resumable(ckpt, st, sched)
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
        end_epoch(metrics, line, ckpt,
                   {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "gen": gen.get_state(), "epoch": epoch + 1},
                   out / "age_cnn.safetensors", ema.module.state_dict(), cfg.widths, epoch + 1)
    return out / "age_cnn.safetensors"


