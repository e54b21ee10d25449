#!/bin/bash
# Release 18's leave-one-site-out from a fresh checkout (~75 min on 2 cores, ~20 min more a seed):
# the feature cache read by the shipped ResUNet (w3), the two one-site CNNs by the shipped recipe,
# then evaluate-sites with the shipped A's recipe (regressor, invariance, weight:
# BrainAge/Resources/Models/age_model.json); each SEED after the folder trains the IXI-only CNN again
# with that seed (its runs spread by about a year between seeds) into cnn-ixi-seedN and
# evaluate-sites-seedN. release_chain.sh's stages 1 and 6 without the candidate's models folder (w3
# is the shipped network now). Each stage is skipped when its output exists; an unfinished CNN run
# continues (--resume).
#   bash docs/results/candidates/segmentation_consistency/loso_release.sh runs/release18 2 3
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=${1:-runs/release18}
shift || true
B=.venv/bin/brainage
P=.venv/bin/python
C=$W/features/features.npz
mkdir -p $W/features
# the previous release's CNN, which the Cam-CAN-only run starts from (as the README's recipe does)
[ -f runs/age_cnn_previous.safetensors ] || git show 846d360:BrainAge/Resources/Models/age_cnn.safetensors > runs/age_cnn_previous.safetensors
[ -f $W/features/thick_copies.npz ] || $P scripts/build_feature_cache.py --cache $C --copies contrast motion thick > $W/cache.log 2>&1
[ -f $W/cnn-camcan/cnn_export.json ] || $B train-cnn --resume --init runs/age_cnn_previous.safetensors --epochs 8 --lr 1e-3 \
  --sites camcan --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-camcan > $W/cnn-camcan.log 2>&1
# the IXI-only CNN (SUFFIX "" with the default seed, "-seedN" with seed N), then evaluate-sites with it
ixi_side() {
  local suffix=$1; shift
  [ -f $W/cnn-ixi$suffix/cnn_export.json ] || $B train-cnn --resume --epochs 80 "$@" --sites ixi --contrast-consistency 0.01 \
    --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-ixi$suffix > $W/cnn-ixi$suffix.log 2>&1
  [ -f $W/evaluate-sites$suffix/sites_summary.json ] || $B evaluate-sites --cache $C --age-dir BrainAge/Resources/Models \
    --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi$suffix --out $W/evaluate-sites$suffix > $W/evaluate-sites$suffix.log 2>&1
  echo "leave-one-site-out done: $W/evaluate-sites$suffix/sites_summary.json"
}
ixi_side ""
for SEED in "$@"; do ixi_side "-seed$SEED" --seed "$SEED"; done
