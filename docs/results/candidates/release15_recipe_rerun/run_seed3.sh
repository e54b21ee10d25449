#!/bin/bash
# Release 15's recipe, IXI-only CNN with a second seed (same validation draw): how much of
# leave-one-site-out IXI -> Cam-CAN 5.70 is the random draw? Cam-CAN-only side: b2p's CNN (C->I 5.42 vs 5.40).
cd /work/main
C=runs/features_noharm/features.npz
W=runs/r15seed2
B=.venv/bin/brainage
date
$B train-cnn --epochs 80 --seed 3 --sites ixi --contrast-consistency 0.01 --copies contrast,motion --cache $C \
  --out $W/cnn-ixi-seed3 > $W/cnn-ixi-seed3.log 2>&1 || exit 1
date
$B evaluate-sites --cache $C --age-dir runs/b2p/age --cnn-camcan runs/b2p/cnn-camcan --cnn-ixi $W/cnn-ixi-seed3 \
  --out $W/evaluate-sites-seed3 > $W/evaluate-sites-seed3.log 2>&1 || exit 1
date
echo done
