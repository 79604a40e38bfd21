"""Checkpoints: what a training epoch saves, and the model a saved state rebuilds.

A checkpoint holds plain tensors, numbers and strings only (the config as a
dict), so ``torch.load(path, weights_only=True)`` reads it, with no pickle of
ours to trust. ``score --model`` finds one in a compare output folder or takes
its path; a bad one is the user's one-line error.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from hdr_dist import models, storage
from hdr_dist.config import TrainConfig
from hdr_dist.errors import UserError, one_line

CHECKPOINT_FILE = "model.pt"


def save(folder: str, model, opt, sched, cfg: TrainConfig, epoch: int, history: list[dict]) -> None:
    module = getattr(model, "module", model)  # unwrap DDP
    torch.save({"model": module.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "epoch": epoch, "config": cfg.as_dict(), "history": history},
               os.path.join(folder, CHECKPOINT_FILE))


def load(path: str | Path) -> dict:
    """A checkpoint file, or the folder Ray Train keeps it in."""
    path = Path(path)
    return torch.load(path / CHECKPOINT_FILE if path.is_dir() else path, map_location="cpu", weights_only=True)


def load_ray(checkpoint) -> dict:
    """A Ray Train ``Checkpoint``'s state, wherever its storage is."""
    with checkpoint.as_directory() as folder:
        return load(folder)


def uri(checkpoint) -> str:
    """A Ray Train checkpoint's model file, so ``torch.load(row["checkpoint"], weights_only=True)`` works."""
    fs = checkpoint.filesystem.type_name
    path = f"{checkpoint.path}/{CHECKPOINT_FILE}"
    return path if fs == "local" else f"{fs}://{path}"


def set_calibration(location: str, temperature: float, val_curve: dict | None = None) -> None:
    """Store the fitted temperature, and the validation risk-coverage curve a reject threshold is
    read from, in a checkpoint file (here or behind a URI), so whatever loads the model later
    (``hdr score``) calibrates and rejects the same way."""
    state = torch.load(io.BytesIO(storage.read_bytes(location)), map_location="cpu", weights_only=True)
    state |= {"temperature": float(temperature)}
    if val_curve is not None:
        state["val_risk_coverage"] = {k: [float(v) for v in values] for k, values in val_curve.items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    storage.write_bytes(location, buffer.getvalue())


def model_from_state(state: dict) -> tuple[torch.nn.Module, TrainConfig]:
    """The trained model a checkpoint's state describes, with its config."""
    cfg = TrainConfig.from_dict(state["config"])
    model = models.from_config(cfg)
    model.load_state_dict(state["model"])
    return model, cfg


def resolve(path: str, name: str | None) -> str:
    """``--model`` (a compare output folder, a checkpoint folder or file, a URI) -> the checkpoint file.
    In a compare output, ``--model-name`` picks the model, else the most accurate digit model."""
    import pyarrow.parquet as pq

    if name is not None and "," in name:
        raise UserError(f"--model-name {name}: names one model; averaging several did not raise the coverage at a "
                        "fixed error on the validation split (README, Ensembles), so score takes one")
    if storage.is_uri(path):
        return path
    where = Path(path).expanduser()
    if not where.exists():
        raise UserError(f"--model {path}: no such file or folder")
    if where.is_dir() and (where / "metrics.parquet").is_file():
        rows = pq.read_table(where / "metrics.parquet").to_pylist()
        if name is not None:
            rows = [r for r in rows if r["model"] == name]
            if not rows:
                raise UserError(f"--model-name {name}: not in {where / 'metrics.parquet'}")
        rows = [r for r in rows if r["checkpoint"]]  # the classical models keep none
        if not rows:
            raise UserError(f"--model {path}: {where / 'metrics.parquet'} names no model with a checkpoint "
                            "(score takes the deep models)")
        # A field model's accuracy is per character, not per image: it is taken when named, or alone.
        digits = [r for r in rows if r.get("field_accuracy") is None]
        return max(digits or rows, key=lambda r: r["accuracy"])["checkpoint"]
    return str(where / CHECKPOINT_FILE) if where.is_dir() else str(where)


def for_scoring(path: str, name: str | None) -> tuple[dict, TrainConfig, str]:
    """``--model`` -> (the weights and history, the config, the checkpoint's path); any problem is one line.

    The state also carries the model's size and the checkpoint's identity (path and
    sha256), which a resumed output must match.
    """
    checkpoint = resolve(path, name)
    try:
        raw = storage.read_bytes(checkpoint)
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        model, cfg = model_from_state(state)
    except Exception as e:  # noqa: BLE001 - missing, corrupt or foreign: all the user's --model
        raise UserError(f"--model {path}: {checkpoint} is not a readable hdr-dist checkpoint "
                        f"({one_line(e)})") from None
    if name is not None and cfg.model != name:
        raise UserError(f"--model-name {name}: the checkpoint holds model {cfg.model}")
    state = {"model": state["model"], "config": cfg.as_dict(), "history": state.get("history", []),
             "params": models.count_params(model),
             # None: written before calibration; its confidences are the plain softmax (temperature 1)
             "temperature": state.get("temperature"),
             "val_risk_coverage": state.get("val_risk_coverage"),
             "identity": {"model": cfg.model, "checkpoint": checkpoint,
                          "checkpoint_sha256": hashlib.sha256(raw).hexdigest()}}
    return state, cfg, checkpoint
