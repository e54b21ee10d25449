"""Tissue segmentation with the trained ResUNet, in model space."""
from __future__ import annotations

import numpy as np
import torch

from .resunet import pad_to_multiple


def segment_array(net, array: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Class probabilities (4, z, y, x) float32 of a normalised model-space T1 array (z, y, x).

    Classes: 0 background, 1 CSF, 2 GM, 3 WM. The whole field of view is segmented.
    """
    x, crop = pad_to_multiple(np.asarray(array, dtype=np.float32), net.divisor)
    t = torch.from_numpy(x)[None, None].to(device)
    if device == "cpu":
        t = t.contiguous(memory_format=torch.channels_last_3d)
    net = net.to(device)
    with torch.inference_mode():
        prob = net(t).softmax(1)[0]
    prob = prob[(slice(None),) + crop]
    return prob.float().cpu().contiguous().numpy()


def labels_from_probabilities(prob: np.ndarray) -> np.ndarray:
    """Most likely class per voxel, uint8."""
    return prob.argmax(0).astype(np.uint8)
