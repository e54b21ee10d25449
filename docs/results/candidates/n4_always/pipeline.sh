#!/bin/bash
# N4 on template-grid inputs (Cam-CAN training scans too), landmarks recomputed: new feature cache, CNNs, approach A, normative curves, evaluations
set -x
cd /work/main
B=.venv/bin/brainage
date
$B train-cnn --init runs/release5/age_cnn.safetensors --epochs 12 --lr 1e-3 --sites camcan,ixi --out runs/cnn-both --ship > runs/cnn-both.log 2>&1
date
$B train-age-model --cnn-dir runs/cnn-both --out runs/age --ship > runs/age.log 2>&1
date
$B train-cnn --init runs/age_cnn_previous.safetensors --epochs 8 --lr 1e-3 --sites camcan --out runs/cnn-camcan > runs/cnn-camcan.log 2>&1
$B train-cnn --epochs 80 --sites ixi --out runs/cnn-ixi > runs/cnn-ixi.log 2>&1
date
$B evaluate-sites > runs/evaluate-sites.log 2>&1
date
$B evaluate-age --out runs/evaluate-age > runs/evaluate-age.log 2>&1
date
$B train-normative --ship > runs/normative.log 2>&1
$B evaluate-ixi > runs/evaluate-ixi.log 2>&1
date
$B evaluate-segmentation > runs/evaluate-segmentation.log 2>&1
date
$B evaluate-robustness --out runs/evaluate-robustness > runs/robustness.log 2>&1
date
echo ALL DONE
