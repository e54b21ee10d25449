"""How far B moves when the same brain is larger or smaller in model space: the Cam-CAN `test`
CNN inputs of release 18's cache zoomed about the grid centre by 0.95 and 1.05
(``training.cnn.zoom_input``), read by the shipped CNN, or by a ``train-cnn`` run's weights
(RUN_DIR/age_cnn.safetensors; raw ages, mirror-averaged; the shipped bias correction's slope divides
the change). Years: mean and SD of the change against the input as it is.

    .venv/bin/python docs/results/candidates/zoom_augmentation/shipped_zoom_sensitivity.py [RUN_DIR]
"""
import json
import sys

import numpy as np
import torch

from BrainAgeLib import models
from BrainAgeLib.cnn import AgeCNN, predict_age
from BrainAgeLib.training.cnn import zoom_input


def main() -> None:
    from safetensors.torch import load_file
    f = np.load("runs/features/features.npz")
    test = np.flatnonzero(f["split"] == "test")
    x = torch.from_numpy(f["cnn"][test].astype(np.float32))
    m = json.loads((models.models_dir() / "age_model.json").read_text())
    slope = m["cnn"]["bias"]["slope"]
    if len(sys.argv) > 1:
        from BrainAgeLib.training.age_model import load_run_cnn
        net = load_run_cnn(f"{sys.argv[1]}/age_cnn.safetensors")
    else:
        net = AgeCNN()
        net.load_state_dict(load_file(str(models.models_dir() / "age_cnn.safetensors")))
        net.eval()
    print("weights:", sys.argv[1] if len(sys.argv) > 1 else "shipped")
    with torch.no_grad():
        base = predict_age(net, x, True).numpy()
        for z in (0.95, 1.05):
            moved = predict_age(net, torch.stack([zoom_input(v, z) for v in x]), True).numpy()
            d = (moved - base) / slope
            print(f"zoom {z}: corrected age change {d.mean():+.2f} ± {d.std():.2f} years (n {len(d)})", flush=True)


if __name__ == "__main__":
    main()
