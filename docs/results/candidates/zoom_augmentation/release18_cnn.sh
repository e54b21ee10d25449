#!/usr/bin/env bash
# Release 18's CNN (commit 52ed036), the starting point of the zoom-trained B of releases 19 and 20,
# written to $1 from git and SHA256-checked (the shipped CNN is a later one).
#   bash docs/results/candidates/zoom_augmentation/release18_cnn.sh runs/zoom24ship/age_cnn_release18.safetensors
set -euo pipefail
git show 52ed036:BrainAge/Resources/Models/age_cnn.safetensors > "$1"
echo "8e052f7196ce6f1443936555c43c8c3ce454827ea2c3c08fd71ae34e61a2dbf4  $1" | sha256sum -c
