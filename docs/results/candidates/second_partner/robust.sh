#!/bin/bash
cd /work/main
W=runs/b2p
date
BRAINAGE_MODELS_DIR=$W/models .venv/bin/brainage evaluate-robustness --n-camcan 6 --n-ixi 6 \
  --conditions noise_snr40 noise_snr20 noise_snr10 bias_field gamma_0.7 gamma_1.4 motion ghosting lesion_45ml wraparound_int16 offset_-1024 \
  --out $W/robustness > $W/robustness.log 2>&1 || exit 1
date
echo robust done
