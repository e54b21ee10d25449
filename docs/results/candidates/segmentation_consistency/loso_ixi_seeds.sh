#!/bin/bash
# IXI -> Cam-CAN on more seeds of the IXI-only CNN (its runs spread by about a year between seeds,
# release 17: 6.76 / 6.28 / 6.63), after loso_release.sh: the same validation draw, evaluate-sites
# with each seed's CNN (~20 min a seed).
#   bash docs/results/candidates/segmentation_consistency/loso_ixi_seeds.sh runs/release18 2 3
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=$1; shift
B=.venv/bin/brainage
C=$W/features/features.npz
for SEED in "$@"; do
  [ -f $W/cnn-ixi-seed$SEED/cnn_export.json ] || $B train-cnn --resume --epochs 80 --seed $SEED --sites ixi \
    --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-ixi-seed$SEED \
    > $W/cnn-ixi-seed$SEED.log 2>&1
  [ -f $W/evaluate-sites-seed$SEED/sites_summary.json ] || $B evaluate-sites --cache $C --age-dir BrainAge/Resources/Models \
    --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi-seed$SEED --out $W/evaluate-sites-seed$SEED > $W/evaluate-sites-seed$SEED.log 2>&1
  echo "seed $SEED done"
done
