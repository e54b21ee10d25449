#!/usr/bin/env bash
# Release 19 (once ship_chain.sh and finish_chain.sh have finished and the robustness run does
# not reject it): ship the zoom candidate. Every model file is re-exported by its own brainage
# command with --ship (the same bytes as the candidate folder its held-out figures came from,
# checked at the end), so the manifest records how each was made. B's run started from release
# 18's CNN (SHA256 8e052f71..., commit 52ed036); --resume re-exports the finished run.
#   bash docs/results/candidates/zoom_augmentation/release.sh [models|figures|all]
# Release 20 (B and the Cam-CAN-only CNN fine-tuned 24 epochs, from the same starting points):
#   W=runs/zoom24ship EPOCHS=24 RELEASE=20 Z=docs/results/candidates/zoom_augmentation/release20_candidate \
#     bash docs/results/candidates/zoom_augmentation/release.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=${W:-runs/zoomship}
EPOCHS=${EPOCHS:-16}
RELEASE=${RELEASE:-19}
C=runs/release18/features/features.npz
B=.venv/bin/brainage
R=docs/results
Z=${Z:-docs/results/candidates/zoom_augmentation/release_candidate}
STEP=${1:-all}
need() { for f in "$@"; do [ -f $f ] || { echo "the candidate chains have not finished: $f missing"; exit 1; }; done; }
if [ $STEP != figures ]; then
need $W/cnn-both/cnn_export.json $W/thick/thick_slice_weights.json $W/robustness/summary.json
# 1. B and A, as ship_chain.sh trained them (B re-exported by its rule; A is deterministic). B's
#    starting point kept out of the models folder that --ship rewrites: release 18's CNN from git
bash docs/results/candidates/zoom_augmentation/release18_cnn.sh $W/age_cnn_release18.safetensors
$B train-cnn --resume --init $W/age_cnn_release18.safetensors --epochs $EPOCHS --lr 1e-3 --max-zoom 0.1 \
  --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-both --ship
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight $Z/sites_summary_seed1.json --out $W/age-release --ship
cp $W/age-release/regressor_comparison.csv $R/regressor_comparison.csv
cp $W/cnn-both/cnn_metrics.csv $R/cnn_training_log.csv
cp $W/cnn-both/cnn_export.json $R/cnn_export.json
# 2. the thick-slice lines from the candidate's 72-subject measurement (finish_chain.sh)
$B train-thick-slice-weights --from-csv $W/thick/thick_slices.csv --out $W/thick-release --ship
cp $W/thick-release/thick_slices.csv $R/thick_slice_weights_fit.csv
# 3. the centile curves of the new ensemble (the ResUNet and the tissue definition are unchanged)
$B train-normative --table $W/age-release/normative_table.csv --ship
cp $W/age-release/normative_table.csv $R/normative_table.csv
# 4. the shipped files are the ones measured (a re-export may order the safetensors header differently;
#    the weight's provenance names the copy of the same sites summary, and the lines refitted from
#    the CSV's 3 decimals may move a reported residual SD in its last digit)
.venv/bin/python scripts/shipped_equals_measured.py $W/models-lines --networks age_cnn.safetensors \
  --json age_model.json feature_reference.json thick_slice_weights.json --tolerance 0.001 --ignore ensemble.weight_rule
fi
[ $STEP = models ] && exit 0
need $W/evaluate-age/metrics.json $W/evaluate-ixi/summary.json $W/robustness/summary.json $W/evaluate-sites/sites_summary.json
# 5. held-out figures of those files, into docs/results
cp $W/evaluate-age/metrics.json $R/age_test_metrics.json
cp $W/evaluate-age/predictions.csv $R/age_test_predictions.csv
cp $W/evaluate-age/scatter.png $R/age_test_scatter.png
.venv/bin/python scripts/chart_reference_cohort.py $R/age_test_predictions.csv
cp $W/evaluate-ixi/ixi.csv $R/ixi_native.csv
cp $W/evaluate-ixi/summary.json $R/ixi_native_summary.json
cp $W/robustness/robustness.csv $R/robustness_release$RELEASE.csv
cp $W/robustness/summary.json $R/robustness_release$RELEASE.json
cp $W/evaluate-sites/sites_summary.json $R/sites_summary.json
cp $W/evaluate-sites/calibration.csv $R/site_calibration.csv
echo "release $RELEASE shipped; now the README and docs/generalisation.md"
