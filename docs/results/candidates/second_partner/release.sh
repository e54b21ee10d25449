#!/bin/bash
# Release 16: ship b2p (B with the thick copy as a second consistency partner), from the runs in
# runs/b2p/ (chain.sh, loso.sh, the thick-slice measurement with --arrays). Every step is a
# brainage command; the figures it prints go into the README and docs/generalisation.md.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=runs/b2p
C=runs/features_noharm/features.npz
B=.venv/bin/brainage
R=docs/results
# 1. B: the finished run re-exported by its rule (identical tensors) and shipped with its config.
$B train-cnn --resume --init runs/bthick/release5/age_cnn.safetensors --epochs 12 --lr 1e-3 \
  --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C --out $W/cnn-both --ship
# 2. A (deterministic) and the ensemble at the weight of b2p's own leave-one-site-out sweep.
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight $W/evaluate-sites/sites_summary.json --out $W/age-release --ship
cp $W/age-release/regressor_comparison.csv $R/regressor_comparison.csv
# 3. Thick-slice lines: refit from b2p's measurement (read from the kept arrays), its usual
#    ensemble recomputed for the age model just shipped.
$B train-thick-slice-weights --from-csv $W/thick72/thick_slices.csv --out $W/thick-release --ship
cp $W/thick-release/thick_slices.csv $R/thick_slice_weights_fit.csv
# 4. Held-out figures with the shipped models.
$B evaluate-age --out $W/evaluate-age-release
cp $W/evaluate-age-release/metrics.json $R/age_test_metrics.json
cp $W/evaluate-age-release/predictions.csv $R/age_test_predictions.csv
cp $W/evaluate-age-release/scatter.png $R/age_test_scatter.png
.venv/bin/python scripts/chart_reference_cohort.py $R/age_test_predictions.csv
$B evaluate-sites --cache $C --age-dir $W/age-release --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi \
  --out $W/evaluate-sites-release
cp $W/evaluate-sites-release/sites_summary.json $R/sites_summary.json
cp $W/evaluate-sites-release/calibration.csv $R/site_calibration.csv
$B train-normative --table $W/age-release/normative_table.csv --ship
cp $W/age-release/normative_table.csv $R/normative_table.csv
$B evaluate-ixi --out $W/evaluate-ixi-release
cp $W/evaluate-ixi-release/ixi.csv $R/ixi_native.csv
cp $W/evaluate-ixi-release/summary.json $R/ixi_native_summary.json
echo "release 16 models shipped; now evaluate-robustness and the docs"
