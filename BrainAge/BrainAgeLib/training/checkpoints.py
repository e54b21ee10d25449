"""Resumable training checkpoints without pickle: tensors in safetensors, the rest in JSON.

A checkpoint is any nest of dicts, lists, numbers, strings and tensors (model, optimiser and
scheduler state dicts, the random generator's state). :func:`save_checkpoint` writes the
tensors to ``<path>`` (safetensors) and the structure to ``<path>.json``; loading them runs no
code, unlike ``torch.load`` of a pickle.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

_TENSOR = "__tensor__"


def _flatten(obj, prefix: str, tensors: dict):
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, f"{prefix}.k{i}", tensors), _flatten(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__":
                [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _unflatten(obj, tensors: dict):
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if "__dict__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_unflatten(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    return obj


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` as ``path`` (safetensors) + ``path.json``, each replaced atomically."""
    from safetensors.torch import save_file
    path = Path(path)
    tensors: dict = {}
    structure = _flatten(state, "s", tensors)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    tmp_json = path.with_name(path.name + ".json.tmp")
    tmp_json.write_text(json.dumps(structure))
    os.replace(tmp_json, path.with_name(path.name + ".json"))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The state written by :func:`save_checkpoint` (no pickle involved)."""
    from safetensors.torch import load_file
    path = Path(path)
    structure = json.loads(path.with_name(path.name + ".json").read_text())
    return _unflatten(structure, load_file(str(path)))


def check_resumable(checkpoint, state: dict, sched) -> None:
    """A checkpoint continues only the schedule it was made with (same epochs and batches)."""
    made, now = state["sched"].get("total_steps"), getattr(sched, "total_steps", None)
    if made != now:
        raise ValueError(f"{checkpoint} belongs to a run of {made} steps, this one has {now}: "
                         "resume with the settings (--epochs) of the run that made it")


def end_epoch(metrics_path, line: str, checkpoint, state: dict, weights_path, weights: dict,
              widths, epoch: int) -> None:
    """Append the epoch's metrics line, save the resumable checkpoint and the weights so far."""
    from safetensors.torch import save_file
    with open(metrics_path, "a") as f:
        f.write(line + "\n")
    save_checkpoint(state, checkpoint)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(weights_path),
              metadata={"widths": json.dumps(list(widths)), "epoch": str(epoch)})
