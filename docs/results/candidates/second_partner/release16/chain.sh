#!/bin/bash
# Release 16 (b2p): the release steps, then the 12 thick conditions of the robustness run with the shipped models.
cd /work/main
date
bash docs/results/candidates/second_partner/release.sh > runs/r16/release.log 2>&1 || { echo "release failed"; exit 1; }
date
.venv/bin/brainage evaluate-robustness --n-camcan 6 --n-ixi 6 \
  --conditions thick3mm_axial thick3mm_coronal thick3mm_sagittal thick4mm_axial thick4mm_coronal thick4mm_sagittal \
  thick5mm_axial thick5mm_coronal thick5mm_sagittal thick6mm_axial thick6mm_coronal thick6mm_sagittal \
  --out runs/r16/robustness_thick > runs/r16/robustness_thick.log 2>&1 || { echo "robustness failed"; exit 1; }
date
echo chain done
