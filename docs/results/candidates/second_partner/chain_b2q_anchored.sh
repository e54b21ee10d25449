#!/bin/bash
# Candidate: B with an anchored thick partner (consistency only, scan's age fixed, weight 0.05) beside contrast/motion.
cd /work/main
C=runs/features_noharm/features.npz
W=runs/b2q
B=.venv/bin/brainage
while pgrep -f "segmentation_thick_profile.py --measure" > /dev/null; do sleep 20; done
date
$B train-cnn --init runs/bthick/release5/age_cnn.safetensors --epochs 12 --lr 1e-3 --contrast-consistency 0.01 \
  --copies contrast,motion --second-copies thick --second-anchored --second-weight 0.05 --cache $C --out $W/cnn-both > $W/cnn-both.log 2>&1 || exit 1
date
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight docs/results/sites_summary.json --out $W/age > $W/age.log 2>&1 || exit 1
mkdir -p $W/files && cp $W/cnn-both/age_cnn.safetensors $W/age/age_model.json $W/age/feature_reference.json $W/files/
export PYTHONPATH=BrainAge
.venv/bin/python scripts/candidate_models.py $W/files $W/models \
  --note "B with an anchored thick partner" --cnn-config $W/cnn-both/cnn_config.json > $W/make_models.log 2>&1 || exit 1
.venv/bin/python scripts/segmentation_thick_profile.py --age-models $W/models runs/thick_profile > $W/profile.log 2>&1
cp runs/thick_profile/age_models_summary.md $W/age_models_summary.md
date
echo chain done
