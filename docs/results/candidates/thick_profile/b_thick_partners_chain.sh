#!/bin/bash
# Candidate: B's consistency partners include thick-slice copies (release 15's recipe otherwise), A refitted with it;
# read on the 24-subject thick-slice set of scripts/segmentation_thick_profile.py against the shipped models.
cd /work/main
C=runs/features_noharm/features.npz
W=runs/bthick
B=.venv/bin/brainage
date
$B train-cnn --init runs/cand-noharm/release5/age_cnn.safetensors --epochs 12 --lr 1e-3 --contrast-consistency 0.01 \
  --copies contrast,motion,thick --cache $C --out $W/cnn-both > $W/cnn-both.log 2>&1 || exit 1
date
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight docs/results/sites_summary.json --out $W/age > $W/age.log 2>&1 || exit 1
date
.venv/bin/python - <<'PY' > $W/make_models.log 2>&1
import shutil
from pathlib import Path
import sys; sys.path.insert(0, "BrainAge")
from BrainAgeLib import models
dst = Path("runs/bthick/models")
if dst.exists():
    shutil.rmtree(dst)
shutil.copytree("BrainAge/Resources/Models", dst)
for name, src in (("age_cnn.safetensors", "runs/bthick/cnn-both/age_cnn.safetensors"),
                  ("age_model.json", "runs/bthick/age/age_model.json"),
                  ("feature_reference.json", "runs/bthick/age/feature_reference.json")):
    shutil.copy(src, dst / name)
    models.update_manifest(name, {"candidate": "B with thick-slice consistency partners"}, dst)
print("candidate models in", dst)
PY
date
echo chain done
