"""A model at work on a device: evaluation mode and memory layout, the autocast choice, and the pixels'
scaling, the same for training's validation, compare's test and score's inference actors."""

from __future__ import annotations

import numpy as np
import torch

from hdr_dist.imaging import preprocess

CPU = torch.device("cpu")  # where a model runs unless told otherwise


def for_inference(model: torch.nn.Module, device: torch.device = CPU) -> torch.nn.Module:
    """Eval mode, on ``device``, channels-last: oneDNN's convolutions run faster in that layout on a
    CPU (the measured gain is in docs/decisions.md)."""
    return model.eval().to(device, memory_format=torch.channels_last)


def autocast(device: torch.device):
    """bf16 on GPUs; on CPUs fp32 is both faster and exact for models this small."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def normalise(x_u8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28), scaled to [0, 1] then standardised."""
    return ((x_u8.float() / 255.0) - mean).div_(std).unsqueeze(1)


def pad(strips: list[np.ndarray], columns: int = 1, rows: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Strips of any width -> (N, 1, STRIP_HEIGHT, widest) float, zero-padded on the right (paper), and
    the widths; the width rounded up to a multiple of ``columns``, and blank strips as wide added up to
    a multiple of ``rows`` (``SHAPE_STEP``, ``STRIP_STEP``)."""
    widths = [s.shape[1] for s in strips]
    width = -(-max(widths) // columns) * columns
    widths += [width] * (-(-len(strips) // rows) * rows - len(strips))
    batch = torch.zeros(len(widths), 1, preprocess.STRIP_HEIGHT, width)
    for i, s in enumerate(strips):
        batch[i, 0, :, : s.shape[1]] = torch.from_numpy(s)
    return batch, torch.tensor(widths)


# oneDNN keeps what it builds for each input shape it meets: an inference actor reading batches of every
# size grew from 0.6 to 1.7 GiB over 2,000 forms. With each batch's images and a strip batch's width
# rounded up to multiples of 64, and its strips to a multiple of 16, a process that read 600 batches of
# each stayed within 0.86-0.89 GiB (3.0 GiB and growing without).
SHAPE_STEP = 64
STRIP_STEP = 16


def padded(x_u8: np.ndarray, step: int = SHAPE_STEP) -> np.ndarray:
    """(N, 28, 28) images with blank ones added up to a multiple of ``step``."""
    extra = -(-len(x_u8) // step) * step - len(x_u8)
    return np.concatenate([x_u8, np.zeros((extra, *x_u8.shape[1:]), x_u8.dtype)]) if extra else x_u8
