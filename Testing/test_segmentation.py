"""The ResUNet, tissue segmentation and volumes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BrainAgeLib import models
from BrainAgeLib.preprocessing import normalize_intensity
from BrainAgeLib.resunet import ResBlock, ResUNet3D, pad_to_multiple
from BrainAgeLib.segmentation import segment_array
from BrainAgeLib.training import augment_intensity, dice_loss, dice_scores
from BrainAgeLib.volumes import regional_fractions, tissue_volumes_ml, volume_qc


def test_resunet_architecture():
    net = ResUNet3D(widths=(4, 8, 16))
    blocks = [m for m in net.modules() if isinstance(m, ResBlock)]
    assert len(blocks) == 5                           # 3 down, 2 up
    for b in blocks:
        assert b.conv1.kernel_size == (3, 3, 3) and b.skip.kernel_size == (1, 1, 1)
    x = torch.randn(1, 1, 16, 24, 8)
    assert net(x).shape == (1, 4, 16, 24, 8)


def test_pad_to_multiple_round_trip():
    a = np.arange(5 * 7 * 9, dtype=np.float32).reshape(5, 7, 9)
    p, crop = pad_to_multiple(a, 8)
    assert p.shape == (8, 8, 16)
    assert np.array_equal(p[crop], a)


def test_shipped_resunet_segments_template():
    template = models.load_template()
    arr = sitk.GetArrayFromImage(template)
    prob = segment_array(models.load_resunet(), normalize_intensity(arr))
    assert prob.shape == (4,) + arr.shape and prob.dtype == np.float32
    assert np.allclose(prob.sum(0), 1, atol=1e-4)
    lab = prob.argmax(0)
    brain = arr > 0.2
    # inside the brain nearly everything is tissue; far outside, nothing is
    assert (lab[brain] > 0).mean() > 0.99
    assert (lab[:, :, :3] == 0).all()
    # white matter is the brightest tissue on a T1
    assert arr[lab == 3].mean() > arr[lab == 2].mean() > arr[lab == 1].mean()


def test_dice_scores_and_loss():
    ref = np.zeros((10, 10, 10), np.uint8)
    ref[2:8, 2:8, 2:8] = 2
    assert dice_scores(ref, ref) == [1.0, 1.0, 1.0]
    shifted = np.roll(ref, 1, axis=0)
    assert 0.7 < dice_scores(shifted, ref)[1] < 0.9
    target = torch.from_numpy(ref.astype(np.int64))[None]
    perfect = torch.nn.functional.one_hot(target, 4).permute(0, 4, 1, 2, 3).float() * 50
    assert float(dice_loss(perfect, target)) < 0.01
    assert float(dice_loss(torch.zeros_like(perfect), target)) > 0.3


def test_augmentation_keeps_background():
    x = torch.zeros(2, 1, 16, 16, 16)
    x[:, :, 4:12, 4:12, 4:12] = torch.rand(2, 1, 8, 8, 8) + 0.1
    y = augment_intensity(x, torch.Generator().manual_seed(0))
    assert (y[x == 0] == 0).all()
    assert not torch.allclose(y, x)


def test_volumes_ml_use_spacing():
    lab = np.zeros((10, 20, 30), np.uint8)
    lab[:5] = 1
    lab[5:8] = 2
    lab[8:] = 3
    img = sitk.GetImageFromArray(lab)
    img.SetSpacing((2.0, 1.0, 0.5))          # 1 mm^3 per voxel
    v = tissue_volumes_ml(img)
    assert v["csf"] == pytest.approx(3.0) and v["gm"] == pytest.approx(1.8)
    assert v["wm"] == pytest.approx(1.2) and v["tiv"] == pytest.approx(6.0)
    assert any("TIV" in w for w in volume_qc(v))      # 6 ml is not a head


def test_regional_fractions_sum_to_one():
    rng = np.random.default_rng(0)
    prob = rng.random((4, 16, 16, 16)).astype(np.float32)
    f = regional_fractions(prob, cell=4)
    assert f.shape == (3 * 4 * 4 * 4,)
    assert f.sum() == pytest.approx(1.0, rel=1e-5)


def _toy_probabilities(rng, shape=(12, 14, 10)):
    """Smooth random class probabilities (4, z, y, x) with a certain-background border."""
    from scipy.ndimage import gaussian_filter
    logits = np.stack([gaussian_filter(rng.normal(size=shape), 1.5) * 8 for _ in range(4)])
    logits[0, :2] = 50
    p = np.exp(logits - logits.max(0))
    return (p / p.sum(0)).astype(np.float32)


def test_tissue_definition_map_fits_round_trips_and_keeps_background():
    from BrainAgeLib.segmentation import TissueDefinitionMap
    rng = np.random.default_rng(3)
    probs = [_toy_probabilities(rng) for _ in range(3)]
    # a definition that calls the network's CSF "GM": the map must learn it
    targets = [np.where(p.argmax(0) == 1, 2, p.argmax(0)).astype(np.uint8) for p in probs]
    for t in targets:
        t[-1, -1, :4] = (0, 1, 2, 3)   # every class present
    m = TissueDefinitionMap("toy", n_per_subject=2000).fit(probs, targets)
    test = _toy_probabilities(rng)
    out = m.predict_proba(test)
    assert out.shape == test.shape and out.dtype == np.float32
    assert np.allclose(out.sum(0), 1, atol=1e-5)
    assert np.array_equal(out[:, :2], test[:, :2])          # certain background untouched
    was_csf = test.argmax(0) == 1
    assert (out.argmax(0)[was_csf] == 2).mean() > 0.9
    again = TissueDefinitionMap.from_dict(json.loads(json.dumps(m.to_dict())))
    assert np.array_equal(again.predict_proba(test), out)
    with pytest.raises(ValueError, match="background, CSF, GM and WM"):
        TissueDefinitionMap().fit(probs[:1], [np.zeros_like(targets[0])])
    with pytest.raises(ValueError, match="TissueDefinitionMap"):
        TissueDefinitionMap.from_dict({"kind": "VolumeAgeRegressor"})


def test_unknown_tissue_definition_is_refused():
    assert models.load_tissue_definition("camcan") is None
    with pytest.raises(ValueError, match="tissues must be one of"):
        models.load_tissue_definition("freesurfer")


def test_blur_augmentation():
    from BrainAgeLib.training import augment_blur, gaussian_blur
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 1, 16, 16, 16)
    x[:, :, 4:12, 4:12, 4:12] = torch.rand(3, 1, 8, 8, 8) + 0.5
    assert torch.equal(gaussian_blur(x[:1], 0.0), x[:1])
    b = gaussian_blur(x[:1], 1.0)
    assert b.shape == x[:1].shape
    assert b.sum().item() == pytest.approx(x[:1].sum().item(), rel=1e-4)     # mass kept
    inner = (slice(None), slice(None), slice(6, 10), slice(6, 10), slice(6, 10))
    assert b[inner].std() < 0.6 * x[:1][inner].std()                          # detail smoothed
    assert torch.equal(augment_blur(x, gen, 0.0, 1.0), x)
    y = augment_blur(x, gen, 1.0, 1.0)
    assert y.shape == x.shape and all(not torch.equal(y[i], x[i]) for i in range(3))
