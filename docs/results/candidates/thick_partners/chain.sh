#!/bin/bash
# Release candidate: B with thick-slice consistency partners (docs/generalisation.md, "B taught that thick maps are the same brain").
cd /work/main
C=runs/features_noharm/features.npz
W=runs/bthick
B=.venv/bin/brainage
D=docs/results/candidates/thick_partners
mkdir -p $D/models
while pgrep -f build_feature_cache.py > /dev/null; do sleep 20; done
grep -q "thick copies done" runs/build_cache.log || { echo "cache build did not finish"; exit 1; }
date
$B train-cnn --init runs/age_cnn_previous.safetensors --epochs 12 --lr 1e-3 --cache $C --out $W/release5 > $W/release5.log 2>&1 || exit 1
date
$B train-cnn --init $W/release5/age_cnn.safetensors --epochs 12 --lr 1e-3 --contrast-consistency 0.01 \
  --copies contrast,motion,thick --cache $C --out $W/cnn-both > $W/cnn-both.log 2>&1 || exit 1
date
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight docs/results/sites_summary.json --out $W/age > $W/age.log 2>&1 || exit 1
date
.venv/bin/python - <<'PY' > $W/make_models.log 2>&1 || exit 1
import shutil
from pathlib import Path
import sys; sys.path.insert(0, "BrainAge")
from BrainAgeLib import models
dst = Path("runs/bthick/models")
if dst.exists():
    shutil.rmtree(dst)
shutil.copytree("BrainAge/Resources/Models", dst)
keep = Path("docs/results/candidates/thick_partners/models")
for name, src in (("age_cnn.safetensors", "runs/bthick/cnn-both/age_cnn.safetensors"),
                  ("age_model.json", "runs/bthick/age/age_model.json"),
                  ("feature_reference.json", "runs/bthick/age/feature_reference.json")):
    shutil.copy(src, dst / name)
    shutil.copy(src, keep / name)
    models.update_manifest(name, {"candidate": "B with thick-slice consistency partners"}, dst)
print("candidate models in", dst)
PY
cp $W/cnn-both/*.csv $W/cnn-both/*.json $D/ 2>/dev/null
date
$B train-cnn --init runs/age_cnn_previous.safetensors --epochs 8 --lr 1e-3 --sites camcan --contrast-consistency 0.01 \
  --copies contrast,motion,thick --cache $C --out $W/cnn-camcan > $W/cnn-camcan.log 2>&1 || exit 1
date
$B train-cnn --epochs 80 --sites ixi --contrast-consistency 0.01 --copies contrast,motion,thick --cache $C \
  --out $W/cnn-ixi > $W/cnn-ixi.log 2>&1 || exit 1
date
$B evaluate-sites --cache $C --age-dir $W/age --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi \
  --out $W/evaluate-sites > $W/evaluate-sites.log 2>&1 || exit 1
date
BRAINAGE_MODELS_DIR=$W/models $B evaluate-age --out $W/evaluate-age > $W/evaluate-age.log 2>&1 || exit 1
date
echo chain done
