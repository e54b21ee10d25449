"""The ResUNet, tissue segmentation and volumes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from BrainAgeLib import models
from BrainAgeLib.preprocessing import normalize_intensity
from BrainAgeLib.resunet import ResBlock, ResUNet3D, pad_to_multiple
from BrainAgeLib.segmentation import segment_array
from BrainAgeLib.training import (augment_batch, dice_loss, dice_scores, random_thick_slices,
                                  synthesize_from_labels)
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


def _phantom(n=2, size=24):
    """Crops of a tissue phantom: WM core, GM shell, CSF rim, background outside (0)."""
    zz, yy, xx = np.mgrid[:size, :size, :size] - (size - 1) / 2
    r = np.sqrt(zz ** 2 + yy ** 2 + xx ** 2)
    lab = np.select([r < 4, r < 7, r < 9], [3, 2, 1], 0).astype(np.int64)
    img = np.select([lab == 3, lab == 2, lab == 1], [0.9, 0.7, 0.3], 0.0).astype(np.float32)
    x = torch.from_numpy(img)[None, None].repeat(n, 1, 1, 1, 1)
    y = torch.from_numpy(lab)[None].repeat(n, 1, 1, 1)
    return x, y


@pytest.mark.parametrize("thick_slice_profile", [False, True])
def test_augmentation_changes_images_not_tissues(thick_slice_profile):
    torch.manual_seed(0)
    x, y = _phantom(4)
    gen = torch.Generator().manual_seed(0)
    xa, ya = augment_batch(x, y, gen, p_real=1.0, p_synth=0.0, thick_slice_profile=thick_slice_profile)
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == torch.int64
    assert not torch.allclose(xa, x)                          # another acquisition
    assert set(ya.unique().tolist()) <= {0, 1, 2, 3}
    assert (xa >= 0).all() and (xa <= 2).all()
    # labels move only with spatial transforms: most voxels keep their tissue
    assert (ya == y).float().mean() > 0.8
    # the input is not modified in place
    assert torch.equal(x, _phantom(4)[0])
    # p = 0: the batch comes back as it was
    x0, y0 = augment_batch(x, y, gen, p_real=0.0, p_synth=0.0)
    assert torch.equal(x0, x) and torch.equal(y0, y)


def test_thick_slices_average_their_slab_where_torchio_keeps_thin_samples():
    import torchio as tio
    i, j, k = np.indices((24, 24, 24))
    x = torch.from_numpy(((i + j + k) % 2).astype(np.float32))[None]   # detail finer than any slice
    lab = torch.from_numpy(((i + j + k) % 2 + 1).astype(np.int16))[None]
    subject = tio.Subject(image=tio.ScalarImage(tensor=x.clone()), label=tio.LabelMap(tensor=lab.clone()))
    inner = (slice(None), slice(6, 18), slice(6, 18), slice(6, 18))
    for seed in range(4):                                  # whichever axis is drawn
        torch.manual_seed(seed)
        slab = random_thick_slices(p=1.0, downsampling=(3.0, 3.0), profile=(1.0, 1.0))(subject)
        torch.manual_seed(seed)
        thin = tio.RandomAnisotropy(downsampling=(3.0, 3.0))(subject)
        # a 6 mm slab (3 voxels) averages the pattern away; thin samples keep it
        assert float(slab["image"].data[inner].std()) < 0.1 < 0.3 < float(thin["image"].data[inner].std())
        assert torch.equal(slab["label"].data, lab)        # the tissues stay where they are
    assert torch.equal(subject["image"].data, x)           # the input is not modified
    # p = 0: the subject comes back as it was
    assert torch.equal(random_thick_slices(p=0.0)(subject)["image"].data, x)


def test_domain_randomisation_draws_any_contrast_inside_the_brain():
    x, y = _phantom(1)
    fg = (x[0, 0] > 0).float()
    gen = torch.Generator().manual_seed(1)
    means = []
    for _ in range(20):
        s = synthesize_from_labels(y[0], fg, gen)
        assert s.shape == (1, *y.shape[1:])
        assert (s[0][fg == 0] == 0).all()                    # skull-stripped like the inputs
        means.append([float(s[0][y[0] == c].mean()) for c in (1, 2, 3)])
    means = np.array(means)
    # T1-like order (WM > GM > CSF) is only one of the contrasts drawn
    t1_like = ((means[:, 2] > means[:, 1]) & (means[:, 1] > means[:, 0])).mean()
    assert 0 < t1_like < 0.6
    assert means.std(axis=0).min() > 0.1


def test_training_checkpoint_round_trip_without_pickle(tmp_path):
    from BrainAgeLib.resunet import ResUNet3D
    from BrainAgeLib.training.checkpoints import load_checkpoint, save_checkpoint
    net = ResUNet3D(widths=(4, 8))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.rand(1, 1, 8, 8, 8)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(3)
    state = {"net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "epoch": 2}
    save_checkpoint(state, tmp_path / "ckpt.safetensors")
    assert (tmp_path / "ckpt.safetensors.json").exists()
    back = load_checkpoint(tmp_path / "ckpt.safetensors")
    assert back["epoch"] == 2
    assert all(torch.equal(back["net"][k], v) for k, v in net.state_dict().items())
    opt2 = torch.optim.AdamW(ResUNet3D(widths=(4, 8)).parameters(), lr=1e-3)
    opt2.load_state_dict(back["opt"])                          # the optimiser state restores
    g2 = torch.Generator()
    g2.set_state(back["gen"])
    assert torch.equal(torch.rand(3, generator=g2), torch.rand(3, generator=gen))
    # the file is plain safetensors + JSON: no pickle opcode anywhere
    assert b"\x80\x04" not in (tmp_path / "ckpt.safetensors.json").read_bytes()


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


def test_gaussian_blur_keeps_mass():
    from BrainAgeLib.training import gaussian_blur
    x = torch.zeros(1, 1, 16, 16, 16)
    x[:, :, 4:12, 4:12, 4:12] = torch.rand(1, 1, 8, 8, 8) + 0.5
    assert torch.equal(gaussian_blur(x, 0.0), x)
    b = gaussian_blur(x, 1.0)
    assert b.shape == x.shape
    assert b.sum().item() == pytest.approx(x.sum().item(), rel=1e-4)     # mass kept
    inner = (slice(None), slice(None), slice(6, 10), slice(6, 10), slice(6, 10))
    assert b[inner].std() < 0.6 * x[inner].std()                          # detail smoothed


def test_cnn_augmentation_gives_a_scan_and_its_contrast_copy_the_same_draw():
    from BrainAgeLib.training.cnn import _augment_cnn
    x = torch.rand(3, 4, 8, 10, 6)
    copy = x.clone()
    copy[:, 1:] += 1.0                          # other probabilities, same anatomy
    a, b = _augment_cnn(x, torch.Generator().manual_seed(0), 2, partner=copy)
    assert torch.allclose(b[:, 1:] - a[:, 1:], torch.ones_like(a[:, 1:]))   # same flip and shift
    assert torch.equal(b[:, :1], a[:, :1])                                   # same T1 gamma and scale
    assert not torch.equal(a, x)                                             # something was drawn
    alone = _augment_cnn(x, torch.Generator().manual_seed(0), 2)
    assert torch.equal(alone, a)                # the partner does not change the scan's own draw


def test_cnn_augmentation_gives_every_partner_of_a_scan_the_same_draw():
    from BrainAgeLib.training.cnn import _augment_cnn
    x = torch.rand(3, 4, 8, 10, 6)
    contrast, thick = x.clone(), x.clone()
    contrast[:, 1:] += 1.0
    thick[:, 1:] -= 2.0
    a, (b, c) = _augment_cnn(x, torch.Generator().manual_seed(0), 2, partner=[contrast, thick])
    assert torch.allclose(b[:, 1:] - a[:, 1:], torch.ones_like(a[:, 1:]))
    assert torch.allclose(c[:, 1:] - a[:, 1:], torch.full_like(a[:, 1:], -2.0))
    assert torch.equal(c[:, :1], a[:, :1])
    one, b1 = _augment_cnn(x, torch.Generator().manual_seed(0), 2, partner=contrast)
    assert torch.equal(one, a) and torch.equal(b1, b)   # a second partner draws nothing more


def test_cnn_zoom_augmentation_scales_the_brain_and_is_off_by_default():
    """``max_zoom``: a factor 1 is the identity, 0.8 shrinks a centred blob's extent by 0.8 (4 mm
    voxels), partners get the same zoom, and without it the draws are those of before."""
    from BrainAgeLib.training.cnn import _augment_cnn, zoom_input
    g = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in (24, 28, 20)],
                                   indexing="ij"))
    blob = (g.pow(2).sum(0) < 8.0 ** 2).float()
    x = torch.stack([blob] * 4)
    assert torch.allclose(zoom_input(x, 1.0), x, atol=1e-5)

    def extent(v):
        w = v[1]
        return float(torch.sqrt((w * g.pow(2).sum(0)).sum() / w.sum()))
    assert extent(zoom_input(x, 0.8)) == pytest.approx(0.8 * extent(x), rel=0.03)
    batch = torch.rand(3, 4, 8, 10, 6)
    plain = _augment_cnn(batch, torch.Generator().manual_seed(0), 2)
    assert torch.equal(plain, _augment_cnn(batch, torch.Generator().manual_seed(0), 2, max_zoom=0.0))
    copy = batch.clone()
    copy[:, 1:] += 1.0
    a, b = _augment_cnn(batch, torch.Generator().manual_seed(0), 2, partner=copy, max_zoom=0.1)
    assert not torch.equal(a, plain)
    assert torch.equal(b[:, :1], a[:, :1])                  # the partner's T1 got the same zoom


def test_loss_with_partners_one_partner_is_the_shipped_loss_and_an_anchored_one_leaves_the_scan():
    import torch.nn.functional as F
    from BrainAgeLib.cnn import expected_age, soft_labels
    from BrainAgeLib.training.cnn import loss_with_partners
    gen = torch.Generator().manual_seed(1)
    n, bins = 4, soft_labels(torch.tensor([30.0]), 1.0).shape[-1]
    target = soft_labels(torch.tensor([25.0, 40.0, 61.0, 77.0]), 1.0)
    scan, first, thick = (torch.randn(n, bins, generator=gen, requires_grad=True) for _ in range(3))
    one = loss_with_partners(torch.cat([scan, first]), target, [0.01])
    shipped = 0.5 * (F.kl_div(scan.log_softmax(-1), target, reduction="batchmean")
                     + F.kl_div(first.log_softmax(-1), target, reduction="batchmean")) \
        + 0.01 * (expected_age(scan) - expected_age(first)).pow(2).mean()
    assert torch.allclose(one, shipped)
    # the anchored thick partner: no age loss of its own, and its difference moves only itself
    thick_gap = loss_with_partners(torch.cat([scan, first, thick]), target, [0.0, 0.05], anchored=True) \
        - loss_with_partners(torch.cat([scan, first, thick]), target, [0.0, 0.0], anchored=True)
    assert thick_gap.item() > 0
    g_scan, g_thick = torch.autograd.grad(thick_gap, [scan, thick])
    assert torch.count_nonzero(g_scan) == 0 and torch.count_nonzero(g_thick) > 0
    both = loss_with_partners(torch.cat([scan, first, thick]), target, [0.0, 0.0], anchored=False)
    assert not torch.allclose(both, loss_with_partners(torch.cat([scan, first, thick]), target, [0.0, 0.0],
                                                       anchored=True))   # the thick age loss counts


@pytest.mark.parametrize("rule, v_final, v_ema, expected", [
    ("best", 6.4, 12.8, "final"), ("best", 5.4, 5.2, "ema"), ("best", 5.0, 5.0, "ema"),
    ("ema", 6.4, 12.8, "ema"), ("final", 5.4, 5.2, "final")])
def test_cnn_run_exports_the_weights_that_read_validation_better(tmp_path, rule, v_final, v_ema, expected):
    import json
    from safetensors.torch import load_file
    from BrainAgeLib.cnn import AgeCNN
    from BrainAgeLib.training.cnn import CNNConfig, _export
    torch.manual_seed(0)
    final, ema = AgeCNN(widths=(2, 2)), AgeCNN(widths=(2, 2))
    cfg = CNNConfig(widths=(2, 2), export=rule)
    path = _export(tmp_path, final, ema, lambda m: v_final if m is final else v_ema, cfg, 12, log=lambda m: None)
    written = load_file(str(path))
    want = (final if expected == "final" else ema).state_dict()
    assert set(written) == set(want)
    assert all(torch.equal(written[k], want[k]) for k in want)
    record = json.loads((tmp_path / "cnn_export.json").read_text())
    assert record == {"weights": expected, "rule": rule, "epoch": 12, "val_mae_final": v_final, "val_mae_ema": v_ema}


def test_cnn_export_rule_must_be_known():
    from BrainAgeLib.training.cnn import choose_weights
    with pytest.raises(ValueError, match="export"):
        choose_weights(5.0, 6.0, "swa")


def test_motion_copies_of_a_real_head_are_built_once_and_move_what_the_models_read(tmp_path):
    """training.features.ixi_model_space rebuilds a cache registered otherwise (release 8's
    affine) with the pipeline's rigid registration; motion_copies on that real IXI head in model
    space: the copy is segmented again (its features differ from the clean scan's, within
    tissue-fraction range), the cache beside it is reused as it is, and a cache of other
    subjects is rebuilt."""
    from BrainAgeLib.preprocessing import MIN_SIMILARITY
    from BrainAgeLib.training.features import copies_path, ixi_model_space, motion_copies, scan_features
    sid = "IXI014-HH-1236"
    (tmp_path / "ixi10" / "t1").mkdir(parents=True)
    (tmp_path / "ixi10" / "t1" / f"{sid}_T1.nii.gz").symlink_to(Path(__file__).parent / "data" / f"{sid}_T1.nii.gz")
    (tmp_path / "ixi10" / "subjects.csv").write_text(f"subject_id,age,sex\n{sid},35.0,F\n")
    space_path = tmp_path / "ixi_model_space.npz"
    np.savez(space_path, subject_id=np.array([sid]), image=np.zeros((1, 2, 2, 2), np.float16),
             registration=np.asarray("affine"))
    messages = []
    space = ixi_model_space(tmp_path, space_path, sets=("ixi10",), log=messages.append)
    assert messages and "registered otherwise" in messages[0]
    assert str(space["registration"]) == "rigid" and space["similarity"][0] > MIN_SIMILARITY
    assert str(np.load(space_path)["registration"]) == "rigid"
    image = space["image"][0]
    feats = {"subject_id": np.array([sid]), "site": np.array(["ixi"])}
    path = copies_path(tmp_path / "features.npz", "motion")
    copy = motion_copies(tmp_path / "camcan", feats, path, log=lambda m: None)
    clean = scan_features(models.load_resunet(), image.astype(np.float32), True)
    assert set(copy) >= {"global_mot", "regional_c4_mot", "regional_c6_mot", "cnn_mot"}
    g, g0 = copy["global_mot"][0], clean["global"]
    assert g.shape == g0.shape and np.all((g >= 0) & (g <= 1))
    assert 0 < np.abs(g - g0).max() < 0.1          # motion moves the tissue fractions, a little
    stamp = path.stat().st_mtime_ns
    again = motion_copies(tmp_path / "camcan", feats, path, log=lambda m: None)
    assert path.stat().st_mtime_ns == stamp and np.array_equal(again["global_mot"], copy["global_mot"])
    messages = []
    other = {"subject_id": np.array(["someone-else"]), "site": np.array(["ixi"])}
    with pytest.raises(RuntimeError):               # rebuilt, and someone-else has no image to read
        motion_copies(tmp_path / "camcan", other, path, log=messages.append)
    assert messages and "does not match" in messages[0]


def test_gradient_reversal_is_identity_forward_and_negates_the_gradient():
    from BrainAgeLib.training.cnn import _GradientReversal
    x = torch.randn(4, 64, requires_grad=True)
    y = _GradientReversal.apply(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.arange(64.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * torch.arange(64.0).expand(4, 64))


def test_cnn_embedding_is_what_the_age_bins_are_read_from():
    from BrainAgeLib.cnn import AgeCNN
    torch.manual_seed(0)
    net = AgeCNN(widths=(2, 4)).eval()
    x = torch.rand(2, 4, 8, 8, 8)
    emb = net.embed(x)
    assert emb.shape == (2, 64)
    assert torch.allclose(net(x), net.out(emb))


def test_teacher_consistency_changes_contrast_not_tissue_and_reads_only_the_brain():
    from BrainAgeLib.training.augmentation import change_contrast
    from BrainAgeLib.training.segmentation import teacher_consistency_loss
    torch.manual_seed(0)
    x, y = _phantom(2)
    changed = [change_contrast(x) for _ in range(4)]
    for xa in changed:
        assert xa.shape == x.shape and (xa[x == 0] == 0).all()        # background stays 0
        assert (xa >= 0).all() and (xa <= 2).all()
    assert any(not torch.allclose(xa, x, atol=1e-3) for xa in changed)   # another contrast
    assert torch.equal(x, _phantom(2)[0])                                # input not modified
    brain = x[:, 0] > 0
    logits = torch.randn(2, 4, *x.shape[2:])
    teacher = logits.softmax(1)
    assert float(teacher_consistency_loss(logits, teacher, brain)) < 1e-6
    other = logits + torch.randn_like(logits)
    loss = float(teacher_consistency_loss(other, teacher, brain))
    assert loss > 0.05
    # what the student says outside the brain does not count
    outside = other.clone()
    outside[:, :, ~brain[0]] += 5 * torch.randn_like(outside[:, :, ~brain[0]])
    assert abs(float(teacher_consistency_loss(outside, teacher, brain)) - loss) < 1e-5
    assert float(teacher_consistency_loss(other, teacher, torch.zeros_like(brain))) == 0.0


def test_unlabelled_ixi_heads_leave_out_ixi10_and_the_cnn_validation_draw(tmp_path):
    from BrainAgeLib.training.data import load_unlabelled_ixi
    from BrainAgeLib.training.features import split_validation
    ids = [f"IXI{i:03d}" for i in range(30)]
    sets = ["ixi120"] * 25 + ["ixi10"] * 5
    images = np.stack([np.full((3, 3, 3), i, np.float16) for i in range(30)])
    np.savez(tmp_path / "ixi_model_space.npz", subject_id=np.array(ids), set=np.array(sets), image=images)
    out = load_unlabelled_ixi(tmp_path / "ixi_model_space.npz", n_val_ixi=5, seed=7)
    got = {ids[int(a[0, 0, 0])] for a in out}
    train, val = split_validation(ids[:25], 5, 7)
    assert got == set(train) and len(out) == 20
    assert not got & set(val) and not got & set(ids[25:])


def test_teacher_consistency_needs_a_teacher_and_heads(tmp_path, capsys):
    from BrainAgeLib import cli
    try:
        code = cli.main(["train-segmentation", "--consistency-weight", "1", "--out", str(tmp_path / "o")])
    except SystemExit as e:
        code = e.code
    assert code == 2 and "needs --init" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("anchor", [False, True])
def test_teacher_consistency_term_reads_changed_crops_and_with_an_anchor_clean_ones_too(anchor, monkeypatch):
    from BrainAgeLib.training import segmentation as seg
    torch.manual_seed(0)
    teacher = ResUNet3D(widths=(4, 8)).eval()
    student = ResUNet3D(widths=(4, 8))
    student.load_state_dict(teacher.state_dict())
    student.eval()
    x, _ = _phantom(3, size=16)
    unlabelled = x[:, 0].numpy().astype(np.float16)        # three model-space "heads"
    seen = []
    student.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    gen = torch.Generator().manual_seed(0)
    loss = seg.teacher_consistency_term(student, teacher, unlabelled, (16, 16, 16), 2, anchor, gen)
    assert seen == [2] and float(loss.detach()) > 0   # with anchor: one crop read both ways
    # a contrast change that changes nothing: the teacher's own weights read it the same
    monkeypatch.setattr(seg, "change_contrast", lambda c: c.clone())
    assert float(seg.teacher_consistency_term(student, teacher, unlabelled, (16, 16, 16), 2, anchor, gen).detach()) < 1e-6
