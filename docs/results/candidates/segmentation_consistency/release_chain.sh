#!/bin/bash
# The whole release recipe on a teacher-consistency ResUNet (~4 h on 2 cores, so across sessions;
# run on w3 for release 18, steps 1-5). Each stage is skipped when its output exists, so the
# script goes on where it stopped; a CNN run writes its weights every epoch, so its stage is done
# when cnn_export.json exists, and an unfinished run continues from its checkpoint (--resume). A and B learn from the new network's maps instead of reading them with models
# trained on the old ones (the candidates' clean readings moved 0.5-1.3 years, see summary.md).
#   bash docs/results/candidates/segmentation_consistency/release_chain.sh runs/segcons/w5a
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=$1
B=.venv/bin/brainage
P=.venv/bin/python
C=$W/features/features.npz
M=$W/models                          # the shipped models with the candidate's files in place
mkdir -p $W/files $W/features
cp -n $W/resunet.safetensors $W/files/
[ -d $M ] || PYTHONPATH=BrainAge $P scripts/candidate_models.py $W/files $M --note "teacher-consistency ResUNet ($W)"
export BRAINAGE_MODELS_DIR=$M
# 1. feature cache read by the new ResUNet (~1 h; the IXI heads' model-space T1s do not depend on it)
cp -n runs/features_noharm/ixi_model_space.npz $W/features/
[ -f $W/features/thick_copies.npz ] || $P scripts/build_feature_cache.py --cache $C --copies contrast motion thick > $W/cache.log 2>&1
# 2. B (the shipped recipe: from the same first-step network, 12 epochs with both partners) and A
[ -f $W/cnn-both/cnn_export.json ] || $B train-cnn --resume --init runs/bthick/release5/age_cnn.safetensors --epochs 12 \
  --lr 1e-3 --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-both > $W/cnn-both.log 2>&1
[ -f $W/age/age_model.json ] || $B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight docs/results/sites_summary.json --out $W/age > $W/age.log 2>&1
# 3. first look, which decides whether the rest is worth its hours: the candidate's A and B in its
#    models folder, the Cam-CAN test split and the gamma conditions (shipped lines until step 4)
cp $W/cnn-both/age_cnn.safetensors $W/age/age_model.json $W/age/feature_reference.json $W/files/
PYTHONPATH=BrainAge $P scripts/candidate_models.py $W/files $M --note "teacher-consistency ResUNet ($W), A and B retrained" \
  --cnn-config $W/cnn-both/cnn_config.json
[ -f $W/evaluate-age-release/metrics.json ] || $B evaluate-age --out $W/evaluate-age-release > $W/evaluate-age-release.log 2>&1
[ -f $W/robustness-gamma-release/summary.json ] || $B evaluate-robustness --n-camcan 6 --n-ixi 6 \
  --conditions gamma_0.7 gamma_1.4 --out $W/robustness-gamma-release > $W/robustness-gamma-release.log 2>&1
[ -n "${FIRST_LOOK_ONLY:-}" ] && { echo "first look done"; exit 0; }
# 4. thick-slice lines from the 72 subjects' kept T1s
[ -f $W/thick/thick_slice_weights.json ] || $B train-thick-slice-weights --resegment-from runs/thick72/arrays \
  --from-arrays $W/thick72-arrays --out $W/thick > $W/thick.log 2>&1
cp $W/thick/thick_slice_weights.json $W/files/
PYTHONPATH=BrainAge $P scripts/candidate_models.py $W/files $M --note "teacher-consistency ResUNet ($W), A, B and lines retrained" \
  --cnn-config $W/cnn-both/cnn_config.json
# 5. held out, end to end: ixi10 and the whole robustness run (Dice is the ResUNet's, measured already)
[ -f $W/evaluate-ixi/summary.json ] || $B evaluate-ixi --out $W/evaluate-ixi > $W/evaluate-ixi.log 2>&1
[ -f $W/robustness/summary.json ] || $B evaluate-robustness --n-camcan 6 --n-ixi 6 --out $W/robustness > $W/robustness.log 2>&1
# 6. one-site CNNs and leave-one-site-out (judge IXI -> Cam-CAN on three seeds, as release 16 was)
[ -f $W/cnn-camcan/cnn_export.json ] || $B train-cnn --resume --init runs/age_cnn_previous.safetensors --epochs 8 --lr 1e-3 \
  --sites camcan --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-camcan > $W/cnn-camcan.log 2>&1
[ -f $W/cnn-ixi/cnn_export.json ] || $B train-cnn --resume --epochs 80 --sites ixi --contrast-consistency 0.01 --copies contrast,motion \
  --second-copies thick --cache $C --out $W/cnn-ixi > $W/cnn-ixi.log 2>&1
[ -f $W/evaluate-sites/sites_summary.json ] || $B evaluate-sites --cache $C --age-dir $W/age --cnn-camcan $W/cnn-camcan \
  --cnn-ixi $W/cnn-ixi --out $W/evaluate-sites > $W/evaluate-sites.log 2>&1
echo "release chain done: compare with release 17 (README), then ship as release.sh of second_partner did"
