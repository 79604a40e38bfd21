"""A trained model as one file a serving stack runs without this project: ONNX or TorchScript, the
metadata it needs inside.

The graph is the very function ``score`` calls: its input is the tensor score's torch path feeds
the model, already scaled and standardised, so the exported logits match score's and
``score --runtime onnx`` swaps only the forward pass. What a caller does to an image first is in
the metadata, the same keys in both formats, each value a JSON text:

``model``        the recipe name (``cnn``, ``crnn``, ...), ``kind``: ``digit`` or ``field``
``labels``       the character of each class index
``temperature``  divide the logits by it before the softmax for calibrated confidences (1: none fitted)
``scale``, ``mean``, ``std``   ``x = (pixels * scale - mean) / std``, pixels white ink on black
``input``        the inputs' names, shapes and dtypes; ``output`` what the logits are and how to read them
``blank``, ``step``  (field models) CTC's blank index, and the strip columns each output step covers
``recipe``       the whole training config

ONNX keeps them in ``metadata_props`` (onnxruntime: ``session.get_modelmeta().custom_metadata_map``);
TorchScript as extra files (``torch.jit.load(path, _extra_files=...)``, or ``extra/<key>`` in its zip).

ONNX comes from torch's TorchScript-based exporter (``dynamo=False``): it turns the field model's
packed BiLSTM into ONNX's LSTM with ``sequence_lens``, so a batch of strips of different widths reads
as score reads it, and the width stays dynamic; the dynamo exporter fails on the packing
(``pack_padded_sequence``). Its logits match torch's to about 1e-5 (``tests/test_export.py``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import torch

from hdr_dist.common.errors import SettingError, UserError, setting
from hdr_dist.imaging.preprocess import STRIP_HEIGHT
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig

FORMATS = ("onnx", "torchscript")
OPSET = 17
INSTALL = "pip install 'hdr-dist[onnx]'"
# The metadata's keys; a field model's file has all of them, a digit model's all but the last two.
KEYS = (
    "model",
    "kind",
    "labels",
    "temperature",
    "scale",
    "mean",
    "std",
    "input",
    "output",
    "recipe",
    "blank",
    "step",
)


def metadata(cfg: TrainConfig, temperature: float | None, step: int = 1) -> dict[str, str]:
    """What a serving stack needs besides the graph, each value as JSON text (``module`` docstring)."""
    field = cfg.kind == "field"
    shape = [None, 1, STRIP_HEIGHT, None] if field else [None, 1, 28, 28]
    inputs = {"x": {"shape": shape, "dtype": "float32", "layout": "NCHW, one channel, white ink on black"}}
    if field:
        inputs["x"]["padding"] = "strips of different widths share a batch zero-padded on the right (paper)"
        inputs["widths"] = {"shape": [None], "dtype": "int64", "meaning": "each strip's own width in columns"}
        output = {
            "logits": [None, "steps = width // step", len(cfg.labels) + 1],
            "read": "a strip's first widths[i] // step steps are its own; softmax(logits / temperature) "
            "per step; best path: each step's argmax, repeats collapsed, blanks dropped",
        }
    else:
        output = {
            "logits": [None, len(cfg.labels)],
            "read": "softmax(logits / temperature); argmax is the class",
        }
    meta = {
        "model": cfg.model,
        "kind": cfg.kind,
        "labels": list(cfg.labels),
        "temperature": float(temperature or 1.0),
        "scale": 1 / 255,
        "mean": float(cfg.mean),
        "std": float(cfg.std),
        "input": inputs,
        "output": output,
        "recipe": cfg.as_dict(),
    }
    if field:
        meta |= {"blank": len(cfg.labels), "step": step}
    return {key: json.dumps(value) for key, value in meta.items()}


def example(cfg: TrainConfig) -> tuple[torch.Tensor, ...]:
    """The inputs the graph is traced with; a field model's two strips differ in width, so the trace
    keeps the packing by width rather than one width's shortcut. Tracing records operations, not values."""
    if cfg.kind == "field":
        return torch.zeros(2, 1, STRIP_HEIGHT, 64), torch.tensor([64, 40])
    return (torch.zeros(2, 1, 28, 28),)


def onnx_bytes(model: torch.nn.Module, args: tuple, meta: dict[str, str]) -> bytes:
    try:
        import onnx
    except ImportError:
        raise UserError(f"{setting('format')} onnx needs the onnx package: {INSTALL}") from None
    names = ["x", "widths"][: len(args)]
    axes = {"x": {0: "batch"}, "logits": {0: "batch"}}
    if len(args) == 2:  # strips: any width, any number of steps
        axes = {"x": {0: "batch", 3: "width"}, "widths": {0: "batch"}, "logits": {0: "batch", 1: "steps"}}
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        args,
        buffer,
        dynamo=False,
        input_names=names,
        output_names=["logits"],
        dynamic_axes=axes,
        opset_version=OPSET,
    )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def torchscript_bytes(model: torch.nn.Module, args: tuple, meta: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(model, args, check_trace=False), buffer, _extra_files=meta)
    return buffer.getvalue()


WRITERS = {"onnx": onnx_bytes, "torchscript": torchscript_bytes}


@contextlib.contextmanager
def quiet():
    """Tracing warns about what it cannot see (Python ints from shapes, the exporters' own
    deprecation); the parity tests check the file instead."""
    with warnings.catch_warnings():
        for category in (torch.jit.TracerWarning, FutureWarning, DeprecationWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        yield


def exported(state: checkpoints.ModelState, fmt: str) -> tuple[bytes, dict[str, str]]:
    """A checkpoint's state (``checkpoints.for_scoring``) -> the file's bytes in ``fmt``, and its metadata."""
    if fmt not in WRITERS:
        raise SettingError("format", fmt, f"choose from {', '.join(FORMATS)}")
    model, cfg = checkpoints.model_from_state(state)
    model.eval()
    meta = metadata(cfg, state.temperature, getattr(model, "step", 1))
    with torch.no_grad(), quiet():
        return WRITERS[fmt](model, example(cfg), meta), meta


def write(state: checkpoints.ModelState, path: str | Path, fmt: str) -> dict[str, str]:
    """``exported`` to ``path``, whole or not at all: a half-written model must not look like one."""
    data, meta = exported(state, fmt)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return meta


def read_metadata(path: str | Path) -> dict:
    """An exported file's metadata, decoded, whichever the format (TorchScript's is a zip)."""
    data = Path(path).read_bytes()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            raw = {
                name.rsplit("/extra/", 1)[1]: z.read(name).decode()
                for name in z.namelist()
                if "/extra/" in name
            }
    else:
        import onnx

        raw = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    return {key: json.loads(value) for key, value in raw.items()}
