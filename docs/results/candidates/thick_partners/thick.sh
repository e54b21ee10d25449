#!/bin/bash
cd /work/main
date
BRAINAGE_MODELS_DIR=runs/bthick/models-thick .venv/bin/brainage train-thick-slice-weights --resume \
  --out docs/results/candidates/thick_partners/thick_slices
date
