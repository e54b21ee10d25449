#!/bin/bash
# Note: its last step (the thick-slice measurement) failed here: the candidate manifest lacked the CNN config; thick.sh reran it.
# The candidate's ensemble at its own site-level weight (evaluate-sites' sweep), as the shipped recipe does; then the
# thick-slice measurement of the final candidate, resumable, into the committed candidate folder.
cd /work/main
W=runs/bthick
D=docs/results/candidates/thick_partners
while pgrep -f bthick/chain.sh > /dev/null; do sleep 10; done
grep -q "chain done" $W/chain.log || { echo "chain did not finish"; exit 1; }
date
.venv/bin/brainage train-age-model --cnn-dir $W/cnn-both --invariance 0.3 --copies contrast,motion \
  --cache runs/features_noharm/features.npz --ensemble-weight $W/evaluate-sites/sites_summary.json \
  --out $W/age-site > $W/age-site.log 2>&1 || exit 1
cp $W/age-site/age_model.json $W/age-site/feature_reference.json $D/models/
date
.venv/bin/python scripts/candidate_models.py $D/models $W/models-thick --note "B with thick-slice consistency partners" || exit 1
BRAINAGE_MODELS_DIR=$W/models-thick .venv/bin/brainage train-thick-slice-weights --resume --out $D/thick_slices
date
