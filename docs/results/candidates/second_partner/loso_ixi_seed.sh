#!/bin/bash
# Is b2p's IXI -> Cam-CAN 6.76 (release 15 as published: 5.70) the thick partner or the seed? The
# IXI-only CNN again with another seed (same validation draw), then evaluate-sites with it.
#   bash loso_ixi_seed.sh 2     # tenth session: 6.28
#   bash loso_ixi_seed.sh 3     # twelfth session
set -eu
SEED=$1
cd /work/main
C=runs/features_noharm/features.npz
W=runs/b2p
B=.venv/bin/brainage
date
$B train-cnn --epochs 80 --seed $SEED --sites ixi --contrast-consistency 0.01 --copies contrast,motion --second-copies thick --cache $C \
  --out $W/cnn-ixi-seed$SEED > $W/cnn-ixi-seed$SEED.log 2>&1
date
$B evaluate-sites --cache $C --age-dir $W/age --cnn-camcan $W/cnn-camcan --cnn-ixi $W/cnn-ixi-seed$SEED \
  --out $W/evaluate-sites-seed$SEED > $W/evaluate-sites-seed$SEED.log 2>&1
date
echo seed$SEED done
