#!/bin/bash
# Release 17: release 16's models with the A/B disagreement limit from the validation subjects' RMS
# (qc.disagreement_limit) instead of their 99th percentile. A and B unchanged (train-age-model is
# deterministic); the thick-slice lines refitted from the same measurement for the new age_model.json.
set -euo pipefail
cd /work/main
B=.venv/bin/brainage
C=runs/features_noharm/features.npz
W=runs/b2p
date
$B train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion --cache $C \
  --ensemble-weight $W/evaluate-sites/sites_summary.json --out runs/r17/age --ship > runs/r17/age.log 2>&1
date
$B train-thick-slice-weights --from-csv $W/thick72/thick_slices.csv --out runs/r17/thick --ship > runs/r17/thick.log 2>&1
cp runs/r17/thick/thick_slices.csv docs/results/thick_slice_weights_fit.csv
date
$B evaluate-age --out runs/r17/evaluate-age > runs/r17/evaluate-age.log 2>&1
date
echo chain done
