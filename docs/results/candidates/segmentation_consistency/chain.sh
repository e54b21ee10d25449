#!/bin/bash
# A ResUNet fine-tuned with the teacher-consistency term, judged as a release would ship it with
# A and B unchanged: test Dice, thick-slice lines refitted from the 72 subjects' kept model-space
# T1s segmented again, Cam-CAN test and ixi10 end to end, the held-out robustness run.
#   bash docs/results/candidates/segmentation_consistency/chain.sh runs/segcons/w3
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
W=$1                                   # the train-segmentation run (resunet.safetensors)
B=.venv/bin/brainage
P=.venv/bin/python
date
mkdir -p $W/files
cp $W/resunet.safetensors $W/files/
PYTHONPATH=BrainAge $P scripts/candidate_models.py $W/files $W/models --note "ResUNet with teacher consistency ($W)"
export BRAINAGE_MODELS_DIR=$W/models
$B evaluate-segmentation --out $W/evaluate-segmentation > $W/evaluate-segmentation.log 2>&1
tail -3 $W/evaluate-segmentation.log; date
$B train-thick-slice-weights --resegment-from runs/thick72/arrays --from-arrays $W/thick72-arrays \
  --out $W/thick > $W/thick.log 2>&1
tail -3 $W/thick.log; date
cp $W/thick/thick_slice_weights.json $W/files/
PYTHONPATH=BrainAge $P scripts/candidate_models.py $W/files $W/models --note "ResUNet with teacher consistency ($W); thick-slice lines refitted for it"
$B evaluate-age --out $W/evaluate-age > $W/evaluate-age.log 2>&1
tail -3 $W/evaluate-age.log; date
$B evaluate-ixi --out $W/evaluate-ixi > $W/evaluate-ixi.log 2>&1
tail -3 $W/evaluate-ixi.log; date
$B evaluate-robustness --n-camcan 6 --n-ixi 6 --out $W/robustness > $W/robustness.log 2>&1
date
echo chain done
