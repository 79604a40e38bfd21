"""Checkpoints: what a training epoch saves, and the model a saved state rebuilds.

A checkpoint holds plain tensors, numbers and strings only (the config as a
dict), so ``torch.load(path, weights_only=True)`` reads it, with no pickle of
ours to trust. ``score --model`` finds one in a compare output folder or takes
its path; a bad one is the user's one-line error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from hdr_dist import models
from hdr_dist.common import storage
from hdr_dist.common.errors import JOB, VALUE_LIMIT, SettingError, one_line, quoted
from hdr_dist.models import shipped
from hdr_dist.models.config import TrainConfig

CHECKPOINT_FILE = "model.pt"
# What a plausible checkpoint stays within; a file past these is refused before anything is built from it.
# Ours are 1-10 MB, their pickled part (config, history, the validation curve) under 0.5 MB; unpickling
# a crafted pickle can take some 30 times its size in memory, so its part is bounded on its own.
MAX_CHECKPOINT_BYTES = 1 << 30
MAX_PICKLE_BYTES = 8 << 20
MAX_CONFIG_CHARS = 64 << 10  # the config as JSON: a few hundred characters in ours
MAX_HISTORY = 10_000  # epochs


def save(folder: str, model, opt, sched, cfg: TrainConfig, epoch: int, history: list[dict]) -> None:
    module = getattr(model, "module", model)  # unwrap DDP
    torch.save(
        {
            "model": module.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "config": cfg.as_dict(),
            "history": history,
        },
        os.path.join(folder, CHECKPOINT_FILE),
    )


def load(path: str | Path) -> dict:
    """A checkpoint file, or the folder Ray Train keeps it in."""
    path = Path(path)
    return torch.load(
        path / CHECKPOINT_FILE if path.is_dir() else path, map_location="cpu", weights_only=True
    )


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


def model_from_state(state: dict | ModelState) -> tuple[torch.nn.Module, TrainConfig]:
    """The trained model a checkpoint's state describes (a ``ModelState``, or a checkpoint's dict as
    training saves it), with its config."""
    weights, config = (
        (state.weights, state.config) if isinstance(state, ModelState) else (state["model"], state["config"])
    )
    cfg = TrainConfig.from_dict(config)
    check_fit(cfg, weights)
    model = models.from_config(cfg)
    model.load_state_dict(weights)
    return model, cfg


class Misfit(ValueError):
    """Weights that are not the model their config describes."""


def check_fit(cfg: TrainConfig, weights: dict) -> None:
    """Refuse weights that do not fit the model ``cfg`` describes, by its tensors' names and shapes alone:
    built on torch's meta device, a model holds no memory, so a config that claims a far larger model
    than its weights (a cnn of width 50: 542 million parameters, 2.7 GB built) costs nothing to refuse.
    Raises ``Misfit`` naming the first tensor that differs."""
    with torch.device("meta"):
        wanted = models.from_config(cfg).state_dict()
    described = (
        f"the model its config describes ({quoted(cfg.model, 40, plain=True)}, width {quoted(cfg.width)})"
    )
    for name, tensor in wanted.items():
        have = weights.get(name)
        if not isinstance(have, torch.Tensor):
            what = "lack" if have is None else "hold as no tensor"
            raise Misfit(f"{described} has {quoted(name)}, which its weights {what}")
        if have.shape != tensor.shape:
            raise Misfit(
                f"its weights do not fit {described}: {quoted(name)} is {shape(have)} in the weights, "
                f"{shape(tensor)} in that model"
            )
    extra = next((name for name in weights if name not in wanted), None)
    if extra is not None:
        raise Misfit(f"its weights hold {quoted(extra)}, which {described} has not")


def shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "a scalar"


def resolve(path: str | None, name: str | None) -> str:
    """The ``model`` setting (a compare output folder, a checkpoint folder or file, a URI; None: the
    shipped readers) -> the checkpoint file. In a compare output, ``model_name`` picks the model, else
    the most accurate digit model; among the shipped readers, the digit reader. An error names the two
    settings, which each job shows as its own flags (export's path is an argument, forms has two model
    names), and the job that takes the model."""
    import pyarrow.parquet as pq

    if path is None:
        return shipped.checkpoint(name or shipped.DEFAULT["digit"])

    if name is not None and "," in name:
        raise SettingError(
            "model_name",
            name,
            "names one model; averaging several did not raise the coverage at a fixed error on the "
            f"validation split (README, Ensembles), so {JOB} takes one",
        )
    if storage.is_uri(path):
        return path
    where = Path(path).expanduser()
    if not where.exists():
        raise SettingError("model", path, "no such file or folder")
    table = where / "metrics.parquet"
    if where.is_dir() and table.is_file():
        rows = pq.read_table(table).to_pylist()
        kept = [r for r in rows if r["checkpoint"]]  # the classical models keep none
        if name is not None and name not in {r["model"] for r in kept}:
            has = f"{quoted(', '.join(r['model'] for r in kept) or 'no model', plain=True)} to {JOB}"
            if name in {r["model"] for r in rows}:
                raise SettingError(
                    "model_name", name, f"a classical model, which keeps no checkpoint; {table} has {has}"
                )
            raise SettingError("model_name", name, f"{table} has no such model; it has {has}")
        rows = [r for r in kept if name is None or r["model"] == name]
        if not rows:
            raise SettingError(
                "model", path, f"{table} names no model with a checkpoint ({JOB} takes the deep models)"
            )
        # A field model's accuracy is per character, not per image: it is taken when named, or alone.
        digits = [r for r in rows if r.get("field_accuracy") is None]
        return max(digits or rows, key=lambda r: r["accuracy"])["checkpoint"]
    return str(where / CHECKPOINT_FILE) if where.is_dir() else str(where)


def vet(raw: bytes) -> None:
    """Refuse a checkpoint file by its size and structure before unpickling anything: torch saves a
    zip of one pickle (``data.pkl``) and stored tensors, so the pickle's size and the whole's are known
    from the zip's directory. Raises ValueError with the reason."""
    try:
        entries = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    except zipfile.BadZipFile:
        raise ValueError("not a torch checkpoint (not a zip archive)") from None
    pickles = [e for e in entries if e.filename.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise ValueError("not a torch checkpoint (no data.pkl)")
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise ValueError(
            f"its config and history take {pickles[0].file_size:,} bytes (limit {MAX_PICKLE_BYTES:,}): "
            "not a checkpoint hdr-dist wrote"
        )
    if sum(e.file_size for e in entries) > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"its parts unpack to more than {MAX_CHECKPOINT_BYTES:,} bytes")


def vet_state(state) -> None:
    """What the unpickled state must look like before a model is built from it."""
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError("no model weights in it")
    config = state.get("config")
    if not isinstance(config, dict):
        raise ValueError("no config in it")
    if len(json.dumps(config, default=str)) > MAX_CONFIG_CHARS:
        raise ValueError(f"its config is larger than {MAX_CONFIG_CHARS:,} characters: not one hdr-dist wrote")
    if len(state.get("history") or ()) > MAX_HISTORY:
        raise ValueError(f"its history has more than {MAX_HISTORY:,} epochs")


@dataclass(frozen=True)
class Identity:
    """Which checkpoint (by content) an output's rows come from: a resumed output must match it."""

    model: str
    checkpoint: str
    checkpoint_sha256: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelState:
    """A checkpoint read for inference: the weights and the config to rebuild the model, its training
    history and size, its calibration (a temperature, and the validation curve a reject threshold is
    read from; None in a checkpoint from before calibration, whose confidences are the plain softmax),
    its identity, and, for ``score --runtime onnx``, the model exported for onnxruntime."""

    weights: dict
    config: dict
    history: list
    params: int
    temperature: float | None
    val_risk_coverage: dict | None
    identity: Identity
    onnx: bytes | None = None

    def lean(self) -> ModelState:
        """What the inference actors need, and nothing they do not: sent once to the object store."""
        return dataclasses.replace(self, history=[], val_risk_coverage=None)


def for_scoring(path: str | None, name: str | None) -> tuple[ModelState, TrainConfig, str]:
    """The ``model`` setting (None: the shipped readers) -> (the checkpoint as ``ModelState``, the
    config, the checkpoint's path); any problem is one line naming the setting that chose the file."""
    checkpoint = resolve(path, name)
    shown = quoted(checkpoint, VALUE_LIMIT, plain=True)  # a metrics.parquet row names it
    # A shipped reader is chosen by its name; its model is what its card says, not a recipe's name.
    setting, value = ("model", path) if path is not None else ("model_name", name or shipped.DEFAULT["digit"])
    name = name if path is not None else None
    try:
        size = storage.size_of(checkpoint)
    except ValueError as e:
        raise SettingError(setting, value, f"{shown}: {e}") from None
    except OSError as e:
        raise SettingError(setting, value, f"{shown}: cannot read ({e.strerror or one_line(e)})") from None
    if size > MAX_CHECKPOINT_BYTES:
        raise SettingError(
            setting,
            value,
            f"{shown} is {size:,} bytes, more than a checkpoint holds (limit {MAX_CHECKPOINT_BYTES:,})",
        )
    try:
        raw = storage.read_bytes(checkpoint)
        vet(raw)
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        vet_state(state)
        model, cfg = model_from_state(state)
    except Misfit as e:
        raise SettingError(setting, value, f"{shown}: {one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - missing, corrupt or foreign: all the user's model setting
        raise SettingError(
            setting, value, f"{shown} is not a readable hdr-dist checkpoint ({one_line(e)})"
        ) from None
    if name is not None and cfg.model != name:
        raise SettingError("model_name", name, f"the checkpoint holds model {cfg.model}")
    read = ModelState(
        weights=state["model"],
        config=cfg.as_dict(),
        history=state.get("history", []),
        params=models.count_params(model),
        temperature=state.get("temperature"),
        val_risk_coverage=state.get("val_risk_coverage"),
        identity=Identity(cfg.model, checkpoint, hashlib.sha256(raw).hexdigest()),
    )
    return read, cfg, checkpoint
