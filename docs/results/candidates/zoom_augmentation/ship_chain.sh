#!/usr/bin/env bash
# Release 18's recipe with B trained under a random isotropic zoom (--max-zoom 0.1), as a
# release candidate: B on both sites fine-tuned 16 epochs from release 18's CNN (release 5's
# first-step network is not on this machine), a Cam-CAN-only CNN fine-tuned 20 epochs (the zoom
# trial's 8 left half the size cue), leave-one-site-out with the zoom trial's IXI-only CNNs
# (runs/zoom: seeds 1, 2), A refitted with the site weight that sweep chooses, then the Cam-CAN
# test split, the size and sex readings and the gamma conditions. Each stage skipped when done.
#   bash docs/results/candidates/zoom_augmentation/ship_chain.sh runs/zoomship
# Release 20's candidate: the same with longer fine-tunes (B 24 epochs, the Cam-CAN-only CNN 24):
#   EPOCHS=24 CAMCAN_EPOCHS=24 bash docs/results/candidates/zoom_augmentation/ship_chain.sh runs/zoom24ship
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=${1:-runs/zoomship}
C=runs/release18/features/features.npz
B=.venv/bin/brainage
P=.venv/bin/python
D=docs/results/candidates/zoom_augmentation
EPOCHS=${EPOCHS:-16}
CAMCAN_EPOCHS=${CAMCAN_EPOCHS:-20}
FLAGS="--max-zoom 0.1 --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C"
mkdir -p $W/files
[ -f $W/age_cnn_release18.safetensors ] || bash $D/release18_cnn.sh $W/age_cnn_release18.safetensors
[ -f $W/cnn-both/cnn_export.json ] || $B train-cnn --resume --init $W/age_cnn_release18.safetensors \
  --epochs $EPOCHS --lr 1e-3 $FLAGS --out $W/cnn-both > $W/cnn-both.log 2>&1
[ -f $W/cnn-camcan/cnn_export.json ] || $B train-cnn --resume --init runs/age_cnn_previous.safetensors --epochs $CAMCAN_EPOCHS --lr 1e-3 \
  --sites camcan $FLAGS --out $W/cnn-camcan > $W/cnn-camcan.log 2>&1
for S in "" -seed2; do
  [ -f $W/evaluate-sites$S/sites_summary.json ] || $B evaluate-sites --cache $C --age-dir BrainAge/Resources/Models \
    --cnn-camcan $W/cnn-camcan --cnn-ixi runs/zoom/cnn-ixi$S --out $W/evaluate-sites$S > $W/evaluate-sites$S.log 2>&1
done
[ -f $W/age/age_model.json ] || $B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight $W/evaluate-sites/sites_summary.json --out $W/age > $W/age.log 2>&1
cp $W/cnn-both/age_cnn.safetensors $W/age/age_model.json $W/age/feature_reference.json $W/files/
PYTHONPATH=BrainAge $P scripts/candidate_models.py $W/files $W/models --note "B trained with zoom 0.1 ($W), A refitted" \
  --cnn-config $W/cnn-both/cnn_config.json
export BRAINAGE_MODELS_DIR=$W/models
for R in cnn-both cnn-camcan; do
  [ -f $W/zoom_sensitivity_$R.txt ] || $P $D/shipped_zoom_sensitivity.py $W/$R > $W/zoom_sensitivity_$R.txt 2>&1
done
[ -f $W/size_and_sex.txt ] || $P $D/size_and_sex.py > $W/size_and_sex.txt 2>&1
[ -f $W/evaluate-age/metrics.json ] || $B evaluate-age --out $W/evaluate-age > $W/evaluate-age.log 2>&1
[ -f $W/robustness-gamma/summary.json ] || $B evaluate-robustness --n-camcan 6 --n-ixi 6 \
  --conditions gamma_0.7 gamma_1.4 --out $W/robustness-gamma > $W/robustness-gamma.log 2>&1
echo "ship chain done: $W"
