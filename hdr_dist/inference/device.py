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


def pad(strips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Strips of any width -> (N, 1, STRIP_HEIGHT, widest) float, zero-padded on the right (paper), and
    the widths."""
    widths = torch.tensor([s.shape[1] for s in strips])
    batch = torch.zeros(len(strips), 1, preprocess.STRIP_HEIGHT, int(widths.max()))
    for i, s in enumerate(strips):
        batch[i, 0, :, : s.shape[1]] = torch.from_numpy(s)
    return batch, widths
