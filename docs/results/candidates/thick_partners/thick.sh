#!/bin/bash
# After the chain: the thick-slice measurement of the candidate, resumable, into the committed candidate folder.
cd /work/main
while pgrep -f bthick/chain.sh > /dev/null; do sleep 20; done
grep -q "chain done" runs/bthick/chain.log || { echo "chain did not finish"; exit 1; }
date
.venv/bin/python scripts/candidate_models.py docs/results/candidates/thick_partners/models runs/bthick/models-thick \
  --note "B with thick-slice consistency partners" || exit 1
BRAINAGE_MODELS_DIR=runs/bthick/models-thick .venv/bin/brainage train-thick-slice-weights --resume \
  --out docs/results/candidates/thick_partners/thick_slices
date
