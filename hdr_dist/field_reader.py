"""A field model at work: strips of any width -> each step's logits -> the digit string, each digit's
confidence and the whole field's (the probability of its string), at the model's temperature.

compare's test and score's inference actors both read fields through here, so a
field is read the same way wherever its figures come from.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_softmax

from hdr_dist import ctc, fields
from hdr_dist.train import autocast

BATCH = 128  # strips per forward pass; each batch holds strips of similar width, so little is padding


@torch.no_grad()
def step_logits(model: torch.nn.Module, strips: list[np.ndarray], mean: float, std: float,
                device=torch.device("cpu")) -> list[np.ndarray]:
    """Each strip's (steps, classes + blank) logits; strips are white ink on black, on [0, 1]."""
    model.eval()
    out: list[np.ndarray | None] = [None] * len(strips)
    order = sorted(range(len(strips)), key=lambda i: strips[i].shape[1])
    for start in range(0, len(order), BATCH):
        take = order[start:start + BATCH]
        xb, widths = fields.pad([strips[i] for i in take])
        with autocast(device):
            z = model((xb.to(device) - mean) / std, widths).float().cpu().numpy()
        for i, row, width in zip(take, z, widths.tolist()):
            out[i] = row[:width // fields.WIDTH_STEP]
    return out


def text_log_probs(logits: list[np.ndarray], temperature: float, blank: int) -> np.ndarray:
    """Each field's log-probability of the string it reads, at ``temperature`` (``ctc.string_log_probs``).
    The string is the best path's, which no temperature changes: every step's most likely class
    stays the most likely."""
    scaled = [log_softmax(z / temperature, axis=1) for z in logits]
    return ctc.string_log_probs(scaled, [ctc.best_path(lp, len(lp), blank)[0] for lp in scaled], blank)


def read(logits: list[np.ndarray], temperature: float, labels: list[str]) -> list[tuple[str, list[float], float]]:
    """Each field's digit string, each digit's confidence (the surest of its steps), and the field's
    (the probability of its string), calibrated at ``temperature``; the blank is the class after ``labels``."""
    blank = len(labels)
    scaled = [log_softmax(z / temperature, axis=1) for z in logits]
    paths = [ctc.best_path(lp, len(lp), blank) for lp in scaled]
    fields = np.exp(ctc.string_log_probs(scaled, [classes for classes, _, _ in paths], blank))
    return [("".join(labels[c] for c in classes), confidences, float(p))
            for (classes, confidences, _), p in zip(paths, fields)]
