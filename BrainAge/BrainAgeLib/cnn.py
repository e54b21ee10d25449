"""Approach B's network: a small SFCN-style fully convolutional age regressor.

Input: 4 channels at 4 mm in model space — the normalised T1 and the ResUNet's CSF, GM and
WM probabilities (each 2 mm map averaged over 2x2x2 voxels). Output: a probability over
1-year age bins (SFCN's soft-label formulation); the predicted age is its expectation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

AGE_MIN, AGE_MAX = 10.0, 100.0   # years; bins of 1 year centred on 10.5 .. 99.5
N_BINS = int(AGE_MAX - AGE_MIN)
CNN_SHAPE = (48, 58, 50)          # 4 mm grid (z, y, x) of the CNN input


def _block(cin, cout, pool=True):
    layers = [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool3d(2))
    return nn.Sequential(*layers)


class AgeCNN(nn.Module):
    """SFCN-lite: conv-BN-ReLU-pool blocks, 1x1 conv, global average pooling, age-bin logits."""

    def __init__(self, in_channels: int = 4, widths: tuple[int, ...] = (16, 32, 64, 128, 128),
                 dropout: float = 0.3):
        super().__init__()
        self.widths = tuple(widths)
        blocks, cin = [], in_channels
        for i, w in enumerate(widths):
            blocks.append(_block(cin, w, pool=i < len(widths) - 1))
            cin = w
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv3d(cin, 64, 1), nn.BatchNorm3d(64), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(64, N_BINS)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 64-feature representation the age bins are read from (B, 64)."""
        return F.adaptive_avg_pool3d(self.head(self.features(x)), 1).flatten(1)

    def read(self, emb: torch.Tensor) -> torch.Tensor:
        """Age-bin logits (B, N_BINS) from the pooled features of :meth:`embed`."""
        return self.out(self.dropout(emb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.read(self.embed(x))


def bin_centers() -> torch.Tensor:
    return torch.arange(N_BINS, dtype=torch.float32) + AGE_MIN + 0.5


def expected_age(logits: torch.Tensor) -> torch.Tensor:
    """Expectation of the age-bin distribution (years)."""
    return (logits.softmax(-1) * bin_centers().to(logits.device)).sum(-1)


def predict_age(net: nn.Module, x: torch.Tensor, mirror: bool = True) -> torch.Tensor:
    """Approach B's ages (years) of a batch (B, 4, z, y, x): the expectation of the age bins,
    averaged over each scan and its left-right mirror when ``mirror`` (a flip that training
    draws, so both are inputs the network knows; the average is steadier than either)."""
    age = expected_age(net(x))
    if mirror:
        age = 0.5 * (age + expected_age(net(x.flip(-1))))
    return age


def soft_labels(age: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian soft labels over the age bins (SFCN)."""
    c = bin_centers().to(age.device)
    p = torch.exp(-0.5 * ((c[None] - age[:, None]) / sigma) ** 2)
    return p / p.sum(-1, keepdim=True)


def cnn_input(image: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """The 4 mm, 4-channel CNN input (4, *CNN_SHAPE) from a model-space T1 (z, y, x) and
    class probabilities (4, z, y, x) at 2 mm."""
    x = np.concatenate([np.asarray(image, np.float32)[None], np.asarray(prob[1:4], np.float32)])
    target = [2 * s for s in CNN_SHAPE]
    pads = [(0, 0)]
    for n, t in zip(x.shape[1:], target):
        if n > t:
            raise ValueError(f"model-space array {x.shape[1:]} larger than the CNN grid")
        pads.append(((t - n) // 2, t - n - (t - n) // 2))
    x = np.pad(x, pads)
    c, z, y, w = x.shape
    return x.reshape(c, z // 2, 2, y // 2, 2, w // 2, 2).mean(axis=(2, 4, 6)).astype(np.float32)
