"""3D residual U-Net for GM/WM/CSF segmentation.

Each block is two 3x3x3 convolutions with ReLU, plus a residual 1x1x1 convolution of the
block's input added to its output; 2x2x2 max pooling between encoder levels, transposed
convolutions up, and skip connections by concatenation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

N_CLASSES = 4  # 0 background, 1 CSF, 2 GM, 3 WM


def pad_to_multiple(array: np.ndarray, divisor: int) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Zero-pad the last three axes up to a multiple of ``divisor``; return the crop back."""
    pads, crop = [], []
    for n in array.shape[-3:]:
        total = (-n) % divisor
        pads.append((total // 2, total - total // 2))
        crop.append(slice(total // 2, total // 2 + n))
    full = [(0, 0)] * (array.ndim - 3) + pads
    return np.pad(array, full), tuple(crop)


class ResBlock(nn.Module):
    """conv3-norm-ReLU-conv3-norm (+ 1x1x1 conv of the input) then ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm3d(cout)
        self.skip = nn.Conv3d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.skip(x), inplace=True)


class ResUNet3D(nn.Module):
    """3D ResUNet. ``widths`` are the channels per level; input size must divide by 2**(levels-1)."""

    def __init__(self, in_channels: int = 1, n_classes: int = N_CLASSES,
                 widths: tuple[int, ...] = (8, 16, 32, 64)):
        super().__init__()
        self.widths = tuple(widths)
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(ResBlock(cin, w))
            cin = w
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for w_hi, w_lo in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.upconv.append(nn.ConvTranspose3d(w_lo, w_hi, 2, stride=2))
            self.up.append(ResBlock(2 * w_hi, w_hi))
        self.head = nn.Conv3d(widths[0], n_classes, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    @property
    def divisor(self) -> int:
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool3d(x, 2)
            x = block(x)
            skips.append(x)
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips[:-1])):
            x = block(torch.cat([upconv(x), skip], dim=1))
        return self.head(x)


def load_resunet_weights(path) -> "ResUNet3D":
    """A ResUNet from a safetensors file of ``train-segmentation`` (its widths in the file's
    metadata), in eval mode on the CPU. No checksum: :func:`~BrainAgeLib.models.load_resunet`
    verifies the shipped network before it calls this."""
    import json
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), "pt") as fh:
        widths = tuple(json.loads(fh.metadata()["widths"]))
    net = ResUNet3D(widths=widths)
    net.load_state_dict(load_file(str(path)))
    return net.eval()
