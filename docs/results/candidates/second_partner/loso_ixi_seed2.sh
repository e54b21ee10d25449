#!/bin/bash
# Is b2p's IXI -> Cam-CAN 6.76 (release 15: 5.70) the thick partner or the seed? The IXI-only CNN
# again with another seed (same validation draw), then evaluate-sites with it.
cd /work/main
C=runs/features_noharm/features.npz
W=runs/b2p
B=.venv/bin/brainage
date
$B train-cnn --epochs 80 --seed 2 --sites ixi --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C \
  --out $W/cnn-ixi-seed2 > $W/cnn-ixi-seed2.log 2>&1 || exit 1
date
$B evaluate-sites --cache $C --age-dir $W/age --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi-seed2 \
  --out $W/evaluate-sites-seed2 > $W/evaluate-sites-seed2.log 2>&1 || exit 1
date
echo seed2 done
