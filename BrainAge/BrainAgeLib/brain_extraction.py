"""Brain extraction of whole-head T1s with deepbet (its weights ship in its package).

deepbet runs two networks: one finds the brain's bounding box on a 128³ copy of the head, the
other segments the box resampled to a cube (:data:`BET_SHAPE`). Both read the head scaled by its
0.5th and 99.5th intensity percentiles; deepbet finds them with ``torch.quantile``, a full sort
of 2 million voxels that took 0.5 s of a 10 s prediction. :func:`brain_probability` runs the
same steps with the same percentiles found by a partial sort (:func:`torch_quantiles`, bit for
bit ``torch.quantile``'s values), in 0.05 s.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

BET_SHAPE = 192                # deepbet's cube (default 256): same Dice on ixi10 at half the time
BET_SMALL_SHAPE = 128          # deepbet's bounding-box network's cube
BET_MARGIN = 0.1               # deepbet's margin around the box (fraction of its size per side)

_BET = None


def torch_quantiles(x: torch.Tensor, qs: tuple[float, ...]) -> list[torch.Tensor]:
    """``torch.quantile(x, q)`` (linear interpolation, all elements, no NaN) for each ``q``, the
    same values bit for bit, from a partial sort (``numpy.partition``) instead of a full one.

    torch computes the rank ``q * (n - 1)`` in ``x``'s dtype and interpolates with ``torch.lerp``
    between the order statistics below and above it; so does this.
    """
    flat = x.detach().reshape(-1).cpu()
    n = flat.numel()
    ranks = [torch.tensor(q, dtype=flat.dtype) * (n - 1) for q in qs]
    below = [int(r.floor()) for r in ranks]
    above = [int(r.ceil()) for r in ranks]
    part = np.partition(flat.numpy(), sorted(set(below + above)))
    return [torch.lerp(torch.tensor(part[lo]), torch.tensor(part[hi]), r - r.floor())
            for r, lo, hi in zip(ranks, below, above)]


def brain_probability(bet, x: np.ndarray, shape: int = BET_SHAPE) -> np.ndarray:
    """deepbet's probability of brain (float32, the grid of ``x``) for a head array ``x``
    (x, y, z, RAS, float32), by the steps of deepbet 1.0's ``BrainExtraction.run_model`` with the
    intensity percentiles of :func:`torch_quantiles`: the bounding-box network on a 128³ copy,
    its largest component's box widened by :data:`BET_MARGIN`, then the brain network on the box
    resampled to ``shape``³ and resampled back. Sets ``bet.bbox``, which deepbet's
    post-processing reads."""
    import torch.nn.functional as F
    from deepbet.utils import keep_largest_connected_component, normalize
    device = next(bet.model.parameters()).device
    x = torch.nan_to_num(torch.from_numpy(x).to(device))
    prob = torch.zeros_like(x)
    small = F.interpolate(x[None, None], (BET_SMALL_SHAPE,) * 3, mode="nearest-exact")[0, 0]
    low, high = (q.to(device) for q in torch_quantiles(small, (0.005, 0.995)))
    with torch.no_grad():
        box_prob = bet.bbox_model(normalize(small, low, high)[None, None])[0, 1]
    box_mask = keep_largest_connected_component((box_prob > 0.5).float().cpu().numpy())
    bet.bbox = box = bet.get_bbox_with_margin(torch.from_numpy(box_mask).to(device), prob.shape, BET_MARGIN)
    cube = F.interpolate(x[box][None, None], (shape,) * 3, mode="nearest-exact")[0, 0]
    with torch.no_grad():
        p = bet.model(normalize(cube, low, high)[None, None])[0, 1]
    prob[box] = F.interpolate(p[None, None], prob[box].shape, mode="nearest-exact")[0, 0]
    return prob.cpu().numpy()


def _brain_extractor():
    """deepbet's ``BrainExtraction`` (loaded once), reading its cube at :data:`BET_SHAPE` through
    :func:`brain_probability`; deepbet's own steps where its internals are not those of 1.0."""
    global _BET
    if _BET is None:
        try:
            from deepbet import BrainExtraction
        except ImportError as e:
            raise RuntimeError("brain extraction needs the 'deepbet' package (pip install deepbet), "
                               "or pass skull_stripped=True for brain-extracted inputs") from e
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # torch.jit.load deprecation
            bet = BrainExtraction(no_gpu=True)
        if all(hasattr(bet, a) for a in ("model", "bbox_model", "get_bbox_with_margin")):
            bet.run_model = lambda x, **kw: brain_probability(bet, x)
        else:
            run_model = bet.run_model
            bet.run_model = lambda x, **kw: run_model(x, shape=(BET_SHAPE,) * 3)
        _BET = bet
    return _BET


def sitk_to_nibabel(image: sitk.Image):
    """A nibabel image (RAS affine) holding the voxels of a SimpleITK image (LPS)."""
    import nibabel as nib
    arr = sitk.GetArrayFromImage(image).transpose(2, 1, 0)        # (x, y, z)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing())[None]
    affine[:3, 3] = image.GetOrigin()
    affine = np.diag([-1, -1, 1, 1]) @ affine                      # LPS -> RAS
    return nib.Nifti1Image(arr.astype(np.float32), affine)


def extract_brain(image: sitk.Image) -> sitk.Image:
    """Brain mask (uint8, same grid) of a whole-head T1 with deepbet.

    Run it on a copy of at most 2 mm (``preprocessing._resample_isotropic``): deepbet resamples
    the head's bounding box to a fixed cube anyway, so finer inputs only cost time.
    """
    import warnings
    bet = _brain_extractor()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, mask, _ = bet.run(sitk_to_nibabel(image))
    m = np.asarray(mask.dataobj).astype(np.uint8).transpose(2, 1, 0)
    out = sitk.GetImageFromArray(np.ascontiguousarray(m))
    out.CopyInformation(image)
    return out
