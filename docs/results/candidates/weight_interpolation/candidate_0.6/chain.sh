#!/bin/bash
# Candidate release: ResUNet weights 0.6 x shipped + 0.4 x release 4 (branch wise06, worktree WORKTREE).
# Every BrainAgeLib import resolves to the worktree (its Models folder holds the candidate ResUNet).
cd REPO
export PYTHONPATH=WORKTREE/BrainAge
C=runs/features_wise06/features.npz
W=runs/wise06
B=.venv/bin/brainage
while pgrep -f "build_feature_cache.py --cache REPO/runs/features_wise06" > /dev/null; do sleep 20; done
date
$B train-cnn --init runs/age_cnn_previous.safetensors --epochs 12 --lr 1e-3 --cache $C --out $W/release5 > $W/release5.log 2>&1
$B train-cnn --init $W/release5/age_cnn.safetensors --epochs 12 --lr 1e-3 --contrast-consistency 0.01 \
  --copies contrast,motion --cache $C --out $W/cnn-both > $W/cnn-both.log 2>&1
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C --ensemble-weight docs/results/sites_summary.json --out $W/age > $W/age.log 2>&1
.venv/bin/python - <<'PY' > $W/make_models.log 2>&1
import shutil
from pathlib import Path
from BrainAgeLib import models
dst = Path("runs/wise06/models")
if dst.exists():
    shutil.rmtree(dst)
shutil.copytree("WORKTREE/BrainAge/Resources/Models", dst)
for name, src in (("age_cnn.safetensors", "runs/wise06/cnn-both/age_cnn.safetensors"),
                  ("age_model.json", "runs/wise06/age/age_model.json"),
                  ("feature_reference.json", "runs/wise06/age/feature_reference.json")):
    shutil.copy(src, dst / name)
    models.update_manifest(name, {"candidate": "ResUNet weights 0.6 shipped + 0.4 release 4"}, dst)
print("candidate models in", dst)
PY
date
BRAINAGE_MODELS_DIR=$W/models $B evaluate-age --out $W/evaluate-age > $W/evaluate-age.log 2>&1
BRAINAGE_MODELS_DIR=$W/models $B evaluate-segmentation --out $W/evaluate-segmentation > $W/evaluate-segmentation.log 2>&1
date
$B train-cnn --init runs/age_cnn_previous.safetensors --epochs 8 --lr 1e-3 --sites camcan --contrast-consistency 0.01 \
  --copies contrast,motion --cache $C --out $W/cnn-camcan > $W/cnn-camcan.log 2>&1
$B train-cnn --epochs 80 --sites ixi --contrast-consistency 0.01 --copies contrast,motion --cache $C \
  --out $W/cnn-ixi > $W/cnn-ixi.log 2>&1
date
$B evaluate-sites --cache $C --age-dir $W/age --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi --out $W/sites > $W/sites.log 2>&1
BRAINAGE_MODELS_DIR=$W/models $B evaluate-ixi --out $W/evaluate-ixi > $W/evaluate-ixi.log 2>&1
date
echo chain done
