#!/bin/bash
# Candidate: B with a second consistency partner (thick) beside the contrast/motion one.
cd /work/main
C=runs/features_noharm/features.npz
W=runs/b2p
B=.venv/bin/brainage
date
$B train-cnn --init runs/bthick/release5/age_cnn.safetensors --epochs 12 --lr 1e-3 --contrast-consistency 0.01 \
  --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-both > $W/cnn-both.log 2>&1 || exit 1
date
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight docs/results/sites_summary.json --out $W/age > $W/age.log 2>&1 || exit 1
date
echo chain done
