#!/usr/bin/env bash
# Leave-one-site-out of B trained with a random isotropic zoom (train-cnn --max-zoom 0.1), on
# release 18's feature cache: the one-site CNNs of loso_release.sh's recipe plus the zoom, then
# evaluate-sites with the shipped A's recipe. Why: the IXI-only CNN reads Cam-CAN test scans
# zoomed to IXI's mean extent 4-6 years older (zoom_probe.py), so it reads brain size in model
# space as age; Cam-CAN came affinely normalised, IXI (and every user's scan) rigidly.
#   bash docs/results/candidates/zoom_augmentation/loso.sh runs/zoom [SEED...]
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=${1:-runs/zoom}; shift || true
C=runs/release18/features/features.npz
B=.venv/bin/brainage
mkdir -p $W
[ -f $W/cnn-ixi/cnn_export.json ] || $B train-cnn --resume --epochs 80 --max-zoom 0.1 --sites ixi --contrast-consistency 0.01 \
  --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-ixi > $W/cnn-ixi.log 2>&1
[ -f $W/cnn-camcan/cnn_export.json ] || $B train-cnn --resume --init runs/age_cnn_previous.safetensors --epochs 8 --lr 1e-3 \
  --max-zoom 0.1 --sites camcan --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C \
  --out $W/cnn-camcan > $W/cnn-camcan.log 2>&1
[ -f $W/evaluate-sites/sites_summary.json ] || $B evaluate-sites --cache $C --age-dir BrainAge/Resources/Models \
  --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi --out $W/evaluate-sites > $W/evaluate-sites.log 2>&1
for SEED in "$@"; do
  [ -f $W/cnn-ixi-seed$SEED/cnn_export.json ] || $B train-cnn --resume --epochs 80 --max-zoom 0.1 --seed $SEED --sites ixi \
    --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-ixi-seed$SEED \
    > $W/cnn-ixi-seed$SEED.log 2>&1
  [ -f $W/evaluate-sites-seed$SEED/sites_summary.json ] || $B evaluate-sites --cache $C --age-dir BrainAge/Resources/Models \
    --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi-seed$SEED --out $W/evaluate-sites-seed$SEED > $W/evaluate-sites-seed$SEED.log 2>&1
done
echo "done: $W"
