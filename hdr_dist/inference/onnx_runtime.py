"""An exported ONNX model run by onnxruntime on the CPU, in the torch model's place.

``OnnxModel`` takes the tensors a torch model takes (a digit batch; a field model's strips and
their widths) and gives back a tensor, so the readers (``readers.DigitReader.answer``,
``FieldReader.step_logits``) run it unchanged: the exported graph is the function score's torch
path calls (``models.export``), inputs scaled and standardised the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from hdr_dist.common.errors import SettingError, UserError, setting
from hdr_dist.models import checkpoints, export


def session(model: bytes | str, threads: int = 1):
    """An onnxruntime session on the CPU with ``threads`` threads for an operator and none beside: an
    inference actor reserves that many CPUs, as torch's threads do."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(f"the onnx runtime needs the onnxruntime package: {export.INSTALL}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def for_actors(state: checkpoints.ModelState, use_gpu: bool) -> bytes:
    """``score --runtime onnx``: the checkpoint exported once, by the driver, so a missing package or a
    model that does not export is one line before anything starts, and every actor runs the same file."""
    if use_gpu:
        raise SettingError(
            "runtime",
            "onnx",
            f"runs the model on the CPU, and this cluster has GPUs; add {setting('gpu')} off",
        )
    data, _ = export.exported(state, "onnx")
    session(data)  # onnxruntime is there, and reads the file
    return data


class OnnxModel:
    """A torch model's stand-in for the readers: ``model(x)`` or ``model(x, widths)`` -> logits."""

    def __init__(self, model: bytes | str, threads: int = 1):
        self.session = session(model, threads)
        # The strip columns each output step covers (``CRNN.step``), as the export wrote it; 1 for digits.
        self.step = int(self.session.get_modelmeta().custom_metadata_map.get("step", "1"))
        self.inputs = [i.name for i in self.session.get_inputs()]

    def eval(self) -> OnnxModel:
        return self

    def __call__(self, x: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        feeds = {"x": np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)}
        if "widths" in self.inputs:  # a field model: without widths, every strip is the batch's width
            feeds["widths"] = (
                np.full(len(x), x.shape[-1], np.int64)
                if widths is None
                else widths.cpu().numpy().astype(np.int64)
            )
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])
