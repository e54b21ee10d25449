#!/bin/bash
# b2p's leave-one-site-out CNNs, evaluate-sites, evaluate-age (release steps 2-3).
cd /work/main
C=runs/features_noharm/features.npz
W=runs/b2p
B=.venv/bin/brainage
date
BRAINAGE_MODELS_DIR=$W/models $B evaluate-age --out $W/evaluate-age > $W/evaluate-age.log 2>&1 || exit 1
date
$B train-cnn --init runs/age_cnn_previous.safetensors --epochs 8 --lr 1e-3 --sites camcan --contrast-consistency 0.01 \
  --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-camcan > $W/cnn-camcan.log 2>&1 || exit 1
date
$B train-cnn --epochs 80 --sites ixi --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C \
  --out $W/cnn-ixi > $W/cnn-ixi.log 2>&1 || exit 1
date
$B evaluate-sites --cache $C --age-dir $W/age --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi \
  --out $W/evaluate-sites > $W/evaluate-sites.log 2>&1 || exit 1
date
echo loso done
