#!/bin/bash
# Release 15's recipe, IXI-only CNN with the default seed, on the cache the candidates used
# (runs/features_noharm): does it reproduce release 15's training log and IXI -> Cam-CAN 5.70?
cd /work/main
C=runs/features_noharm/features.npz
W=runs/r15seed2
B=.venv/bin/brainage
date
$B train-cnn --epochs 80 --sites ixi --contrast-consistency 0.01 --copies contrast,motion --cache $C \
  --out $W/cnn-ixi-seed1 > $W/cnn-ixi-seed1.log 2>&1 || exit 1
date
$B evaluate-sites --cache $C --age-dir runs/b2p/age --cnn-camcan runs/b2p/cnn-camcan --cnn-ixi $W/cnn-ixi-seed1 \
  --out $W/evaluate-sites-seed1 > $W/evaluate-sites-seed1.log 2>&1 || exit 1
date
echo done
