"""Augmentations of training crops and images: what other scanners and acquisitions do to a T1.

Two families, mixed per crop by :func:`augment_batch`:

- **acquisition-realistic** (:func:`acquisition_transform`): TorchIO's models of thick slices
  (``RandomAnisotropy``), noise, bias fields, contrast (gamma), blur, motion, ghosting and small
  affine changes, applied to the real image (labels follow the spatial ones);
- **domain randomisation** (:func:`synthesize_from_labels`, SynthSeg's recipe): a new image drawn
  from the label map, each tissue with a random mean intensity and texture, then blurred, biased,
  resampled and noised, so that the network learns the tissues' shapes, not one scanner's contrast.

Images are normalised model-space T1s (2 mm voxels, 0 outside the brain, ~[0, 1.2]).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


@lru_cache(maxsize=1)
def _thick_slices_class():
    """TorchIO's transform class for :func:`random_thick_slices`, built on first use (TorchIO is
    imported only when training needs it)."""
    import torchio as tio

    class RandomThickSlices(tio.transforms.augmentation.RandomTransform):
        def __init__(self, downsampling, profile, **kwargs):
            super().__init__(**kwargs)
            self.downsampling, self.profile = downsampling, profile

        def apply_transform(self, subject):
            axis = int(torch.randint(0, 3, (1,)))
            factor = float(torch.empty(1).uniform_(*self.downsampling))
            fwhm = factor * float(torch.empty(1).uniform_(*self.profile))
            std = [0.0, 0.0, 0.0]
            std[axis] = math.sqrt(max(fwhm ** 2 - 1.0, 0.0)) / 2.355 * float(subject.spacing[axis])
            subject = tio.Blur(std=tuple(std), include=["image"])(subject)
            return tio.RandomAnisotropy(axes=(axis,), downsampling=(factor, factor),
                                        include=["image"])(subject)
    return RandomThickSlices


def random_thick_slices(p: float = 0.35, downsampling: tuple[float, float] = (1.5, 3.0),
                        profile: tuple[float, float] = (0.7, 1.0)):
    """TorchIO transform: thick slices as a scanner acquires them. Along one random axis, the
    image is first averaged over the slice (a Gaussian slice profile of FWHM ``profile`` times
    the slice thickness, in voxels of the input), then TorchIO's ``RandomAnisotropy`` keeps one
    sample per slice and interpolates back. ``RandomAnisotropy`` alone picks thin slices out of
    the volume (nearest neighbour), sharp and aliased, which no scanner writes: a real thick
    slice mixes the tissues of its whole slab (partial volume), as ``degrade.thick_slices`` does.
    Thickness: ``downsampling`` times the voxel size. Labels are left as they are."""
    return _thick_slices_class()(downsampling=downsampling, profile=profile, p=p)


def acquisition_transform(spatial: bool = True, thick_slice_profile: bool = False):
    """TorchIO transform of one subject (``image``: ScalarImage, ``label``/``mask``: LabelMaps)
    that simulates another acquisition. Thick slices up to 3 voxels (6 mm at 2 mm), Gaussian
    noise up to 5 % of the WM intensity, bias fields, gamma 0.7-1.4, blur up to 1 voxel, and,
    more rarely, motion and ghosting artefacts and (``spatial``) small affine changes.
    ``thick_slice_profile``: thick slices averaged over their slab (:func:`random_thick_slices`)
    rather than TorchIO's thin samples (``RandomAnisotropy``, the recipe up to release 15)."""
    import torchio as tio
    parts = []
    if spatial:
        parts.append(tio.RandomAffine(scales=0.08, degrees=8, translation=2, p=0.3,
                                      label_interpolation="nearest"))
    parts += [
        random_thick_slices(p=0.35) if thick_slice_profile else
        tio.RandomAnisotropy(axes=(0, 1, 2), downsampling=(1.5, 3.0), p=0.35),
        tio.RandomBlur(std=(0.0, 1.0), p=0.3),
        tio.RandomMotion(degrees=4, translation=4, num_transforms=2, p=0.1,
                         include=["image"]),
        tio.RandomGhosting(num_ghosts=(2, 6), intensity=(0.2, 0.6), p=0.1, include=["image"]),
        tio.RandomBiasField(coefficients=0.4, order=3, p=0.5, include=["image"]),
        tio.RandomGamma(log_gamma=(-0.36, 0.34), p=0.6, include=["image"]),   # gamma ~0.7 .. 1.4
        tio.RandomNoise(std=(0.0, 0.05), p=0.5, include=["image"]),
    ]
    return tio.Compose(parts)


def contrast_transform():
    """TorchIO transform of an image alone that changes its contrast and nothing else: gamma
    0.67-1.5 (most crops), a bias field, a little Gaussian noise. For the teacher-consistency
    crops of :func:`~BrainAgeLib.training.segmentation.train_segmentation`, whose target is the
    teacher's reading of the same crop unchanged, so no tissue may move."""
    import torchio as tio
    return tio.Compose([
        tio.RandomGamma(log_gamma=(-0.4, 0.4), p=0.9),
        tio.RandomBiasField(coefficients=0.4, order=3, p=0.5),
        tio.RandomNoise(std=(0.0, 0.03), p=0.3),
    ])


def change_contrast(x: torch.Tensor) -> torch.Tensor:
    """Crops ``x`` (B, 1, D, H, W; 0 outside the brain) each through :func:`contrast_transform`,
    background kept 0. Draws from torch's global generator (seeded by the training run)."""
    import torchio as tio
    transform = contrast_transform()
    out = [transform(tio.ScalarImage(tensor=xi.float())).data for xi in x]
    return (torch.stack(out) * (x > 0)).clamp(0, 2)


def synthesize_from_labels(labels: torch.Tensor, foreground: torch.Tensor,
                           gen: torch.Generator) -> torch.Tensor:
    """A synthetic image (1, D, H, W) from a label map (D, H, W; 0 bg, 1 CSF, 2 GM, 3 WM).

    Each tissue gets a mean intensity drawn from U(0.05, 1) (any contrast, T1-like or not) and a
    Gaussian texture of up to 10 % of it; the image is then smoothed a little (partial volume)
    and kept inside ``foreground`` (the skull-stripped brain), as the real inputs are.
    """
    r = lambda *s: torch.rand(*s, generator=gen)
    means = torch.cat([torch.zeros(1), 0.05 + 0.95 * r(3)])
    stds = means * 0.1 * r(4)
    img = means[labels] + stds[labels] * torch.randn(labels.shape, generator=gen)
    img = gaussian_blur(img[None, None], 0.3 + 0.5 * float(r(1)))[0]
    return (img * foreground[None]).clamp(0, 2)


def augment_batch(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, p_real: float = 0.45,
                  p_synth: float = 0.3, thick_slice_profile: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of crops ``x`` (B, 1, D, H, W) with labels ``y`` (B, D, H, W).

    Per crop: with probability ``p_synth`` a domain-randomised image from its labels (then the
    acquisition transform too), with ``p_real`` the acquisition transform of the real image, else
    the crop as it is (so the network keeps its accuracy on Cam-CAN-like scans). Background
    stays 0 in 80 % of the transformed crops (skull-stripped inputs); the others keep the
    soft edge that blur and resampling leave. Returns new tensors.
    """
    import torchio as tio
    xs, ys = [], []
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]
        u = float(torch.rand(1, generator=gen))
        if u >= p_real + p_synth:
            xs.append(xi)
            ys.append(yi)
            continue
        fg = (xi[0] > 0)
        if u < p_synth:
            xi = synthesize_from_labels(yi, fg.to(xi.dtype), gen)
        subject = tio.Subject(image=tio.ScalarImage(tensor=xi.float()),
                              label=tio.LabelMap(tensor=yi[None].to(torch.int16)),
                              mask=tio.LabelMap(tensor=fg[None].to(torch.int16)))
        out = acquisition_transform(thick_slice_profile=thick_slice_profile)(subject)
        xi = out["image"].data.float()
        yi = out["label"].data[0].long()
        if float(torch.rand(1, generator=gen)) < 0.8:
            xi = xi * (out["mask"].data > 0)
        xs.append(xi.clamp(0, 2))
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys)


def degrade_image(array: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """A whole model-space T1 (D, H, W) as another acquisition might give it (no spatial change),
    for the feature cache's degraded copy of each subject: the age models learn that acquisition is
    not age."""
    import torchio as tio
    x = torch.from_numpy(np.asarray(array, np.float32))[None]
    fg = x > 0
    out = acquisition_transform(spatial=False)(tio.ScalarImage(tensor=x)).data
    if float(torch.rand(1, generator=gen)) < 0.8:
        out = out * fg
    return out[0].clamp(0, 2).numpy()


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


def random_crops(images, labels, idx, crop, gen: torch.Generator, flip=True):
    """Random crops (with left-right flips) of the subjects ``idx`` as torch tensors
    ``(x (B, 1, D, H, W), y (B, D, H, W))``; ``labels`` None (unlabelled images): ``y`` is None."""
    xs, ys = [], []
    shape = images.shape[1:]
    for i in idx:
        starts = [int(torch.randint(0, s - c + 1, (1,), generator=gen)) for s, c in zip(shape, crop)]
        sl = tuple(slice(s, s + c) for s, c in zip(starts, crop))
        x = torch.from_numpy(images[i][sl].astype(np.float32))
        y = None if labels is None else torch.from_numpy(labels[i][sl].astype(np.int64))
        if flip and torch.rand(1, generator=gen) < 0.5:   # last axis is left-right (LPS)
            x, y = x.flip(-1), None if y is None else y.flip(-1)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs)[:, None], None if labels is None else torch.stack(ys)
