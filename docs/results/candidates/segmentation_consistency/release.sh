#!/bin/bash
# Release 18: ship w3 (the teacher-consistency ResUNet) with the A, B and thick-slice lines that
# release_chain.sh retrained on its maps. Every model file is re-exported by its own brainage
# command with --ship (identical bytes to the candidate folder the held-out figures came from,
# checked at the end), so the manifest records how each was made. A keeps release 17's share in
# the ensemble (0.15, docs/results/sites_summary.json), the share the figures were measured with.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=runs/segcons/w3
C=$W/features/features.npz
M=$W/models
B=.venv/bin/brainage
R=docs/results
STEP=${1:-all}    # models: steps 1-5 (while release_chain.sh still measures); figures: step 6; all
need() { for f in "$@"; do [ -f $f ] || { echo "release_chain.sh has not finished: $f missing"; exit 1; }; done; }
if [ $STEP != figures ]; then
need $W/evaluate-age-release/metrics.json $W/thick/thick_slices.csv
# 1. the ResUNet: its finished run re-exported from the last checkpoint (no epoch is trained)
$B train-segmentation --resume --init runs/segcons/resunet_r17.safetensors --epochs 3 --lr 5e-4 \
  --p-real 0.45 --p-synth 0.3 --consistency-cache runs/features_noharm/ixi_model_space.npz \
  --consistency-weight 3 --out $W --ship
# 2. B and A, as release_chain.sh trained them (B re-exported by its rule; A is deterministic)
$B train-cnn --resume --init runs/bthick/release5/age_cnn.safetensors --epochs 12 --lr 1e-3 \
  --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-both --ship
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight $R/sites_summary.json --out $W/age-release --ship
cp $W/age-release/regressor_comparison.csv $R/regressor_comparison.csv
cp $W/cnn-both/cnn_metrics.csv $R/cnn_training_log.csv
cp $W/cnn-both/cnn_export.json $R/cnn_export.json
# 3. thick-slice lines from the 72 subjects' maps read by the new ResUNet (release_chain.sh step 4)
$B train-thick-slice-weights --from-csv $W/thick/thick_slices.csv --out $W/thick-release --ship
cp $W/thick-release/thick_slices.csv $R/thick_slice_weights_fit.csv
# 4. what reads the ResUNet's maps: the DLMUSE tissue definition and the centile curves
$B train-tissue-definition --out $W/tissue --ship
$B train-normative --table $W/age-release/normative_table.csv --ship
cp $W/age-release/normative_table.csv $R/normative_table.csv
# 5. the shipped files are the ones measured: the same tensors (a re-export may order the
#    safetensors header differently) and the same JSON but for the SHA256 the lines record
.venv/bin/python scripts/shipped_equals_measured.py runs/segcons/w3/models --networks resunet.safetensors age_cnn.safetensors \
  --json age_model.json feature_reference.json thick_slice_weights.json
fi
[ $STEP = models ] && exit 0
need $W/evaluate-age-release/metrics.json $W/evaluate-ixi/summary.json $W/robustness/summary.json
# 6. held-out figures of those files (release_chain.sh), into docs/results
cp $W/evaluate-age-release/metrics.json $R/age_test_metrics.json
cp $W/evaluate-age-release/predictions.csv $R/age_test_predictions.csv
cp $W/evaluate-age-release/scatter.png $R/age_test_scatter.png
.venv/bin/python scripts/chart_reference_cohort.py $R/age_test_predictions.csv
cp $W/evaluate-ixi/ixi.csv $R/ixi_native.csv
cp $W/evaluate-ixi/summary.json $R/ixi_native_summary.json
cp $W/robustness/robustness.csv $R/robustness_release18.csv
cp $W/robustness/summary.json $R/robustness_release18.json
if [ -f $W/evaluate-sites/sites_summary.json ]; then
  cp $W/evaluate-sites/sites_summary.json $R/sites_summary.json
  cp $W/evaluate-sites/calibration.csv $R/site_calibration.csv
fi
echo "release 18 shipped; now the README and docs/generalisation.md"
