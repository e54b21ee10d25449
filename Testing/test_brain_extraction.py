"""Brain extraction (deepbet) through BrainAgeLib.brain_extraction: the partial-sort percentiles are
torch.quantile's values bit for bit, and the brain probability is deepbet's own on a real head."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from BrainAgeLib import brain_extraction as be
from BrainAgeLib.preprocessing import _resample_isotropic

T1 = Path(__file__).resolve().parent / "data" / "IXI014-HH-1236_T1.nii.gz"


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.integers(1, 3000),
              elements=st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False)),
       st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3))
def test_torch_quantiles_are_torch_quantile_bit_for_bit(values, qs):
    x = torch.from_numpy(values)
    for q, got in zip(qs, be.torch_quantiles(x, tuple(qs))):
        assert torch.equal(got, x.quantile(q)), (q, got, x.quantile(q))


def test_brain_probability_is_deepbets_own():
    """deepbet's run_model (its torch.quantile) and brain_probability give the same probabilities
    and the same bounding box on a real IXI head's 2 mm working copy."""
    from deepbet import BrainExtraction
    import nibabel as nib
    img = sitk.Cast(sitk.ReadImage(str(T1)), sitk.sitkFloat32)
    work = sitk.Cast(_resample_isotropic(sitk.DICOMOrient(img, "LPS"), 2.0), sitk.sitkFloat32)
    x = nib.as_closest_canonical(be.sitk_to_nibabel(work)).get_fdata(dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = BrainExtraction(no_gpu=True)
    ours = be._brain_extractor()
    assert ours.run_model.__name__ == "<lambda>" and ours is not theirs
    expected = theirs.run_model(x.copy(), shape=(be.BET_SHAPE,) * 3)
    got = be.brain_probability(ours, x.copy())
    assert np.array_equal(got, expected)
    assert ours.bbox == theirs.bbox
    assert 900 < (got > 0.5).sum() * 8 / 1000 < 2000          # a brain's volume (ml) at 2 mm
