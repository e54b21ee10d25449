#!/usr/bin/env bash
# After ship_chain.sh: the zoom candidate's thick-slice lines (72 subjects, ~1.5 min each, their
# model-space arrays kept for later refits), then its whole robustness run with those lines in
# place. Resumable: each stage continues or is skipped when done.
#   bash docs/results/candidates/zoom_augmentation/finish_chain.sh runs/zoomship
# A later candidate with the same ResUNet and template reads the lines from the arrays kept then
# (minutes instead of ~1.5 hours), and evaluate-ixi reads the ixi10 heads end to end:
#   THICK_ARGS="--from-arrays runs/thick72/arrays" bash .../finish_chain.sh runs/zoom24ship
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=${1:-runs/zoomship}
B=.venv/bin/brainage
P=.venv/bin/python
THICK_ARGS=${THICK_ARGS:---arrays runs/thick72/arrays --resume}
export BRAINAGE_MODELS_DIR=$W/models
[ -f $W/thick/thick_slice_weights.json ] || $B train-thick-slice-weights $THICK_ARGS --out $W/thick \
  >> $W/thick.log 2>&1
cp $W/thick/thick_slice_weights.json $W/files/
PYTHONPATH=BrainAge $P scripts/candidate_models.py $W/files $W/models-lines \
  --note "B trained with zoom 0.1 ($W), A and the thick-slice lines refitted" --cnn-config $W/cnn-both/cnn_config.json
export BRAINAGE_MODELS_DIR=$W/models-lines
[ -f $W/robustness/summary.json ] || $B evaluate-robustness --n-camcan 6 --n-ixi 6 --out $W/robustness > $W/robustness.log 2>&1
[ -f $W/evaluate-ixi/summary.json ] || $B evaluate-ixi --out $W/evaluate-ixi > $W/evaluate-ixi.log 2>&1
echo "finish chain done: $W"
