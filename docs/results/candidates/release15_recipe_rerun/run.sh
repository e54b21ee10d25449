#!/bin/bash
# Release 15's recipe, IXI-only CNN, on the cache the candidates used (runs/features_noharm), with
# seed SEED (20261123 is train-cnn's default; the validation draw is split_seed's, the same for all);
# then evaluate-sites with b2p's A folder and Cam-CAN-only CNN (Cam-CAN -> IXI 5.42 vs 5.40).
# Usage: run.sh SEED   (this session: 20261123, 2, 3; each ~16 min on 2 cores)
set -e
SEED=${1:?give the seed}
cd /work/main
C=runs/features_noharm/features.npz
W=runs/r15seed2
B=.venv/bin/brainage
date
$B train-cnn --epochs 80 --seed "$SEED" --sites ixi --contrast-consistency 0.01 --copies contrast,motion --cache $C \
  --out $W/cnn-ixi-seed$SEED > $W/cnn-ixi-seed$SEED.log 2>&1
date
$B evaluate-sites --cache $C --age-dir runs/b2p/age --cnn-camcan runs/b2p/cnn-camcan --cnn-ixi $W/cnn-ixi-seed$SEED \
  --out $W/evaluate-sites-seed$SEED > $W/evaluate-sites-seed$SEED.log 2>&1
date
