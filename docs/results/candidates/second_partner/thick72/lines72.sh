#!/bin/bash
# b2p's thick-slice lines on all 72 subjects, read from the kept maps of the shipped ResUNet
cd /work/main
date
BRAINAGE_MODELS_DIR=runs/b2p/models .venv/bin/brainage train-thick-slice-weights --from-arrays runs/thick72/arrays \
  --out runs/b2p/thick72 > runs/b2p/lines72.log 2>&1
echo "exit $?"; date
