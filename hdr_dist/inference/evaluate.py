"""A digit model's predictions and their speed, and the classification metrics.

The metrics come from scikit-learn, so compare (in memory) and bulk scoring (from
Parquet rows) report the same figures the same way.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hdr_dist.inference.device import CPU, autocast, for_inference, normalise


def logits(model: torch.nn.Module, x_u8: torch.Tensor, mean: float, std: float, device) -> torch.Tensor:
    with autocast(device):
        x = normalise(x_u8.to(device), mean, std).contiguous(memory_format=torch.channels_last)
        return model(x).float()


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    x_u8: np.ndarray,
    mean: float,
    std: float,
    device: torch.device = CPU,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Logits and predictions for uint8 images, and the images/s it ran at."""
    model = for_inference(model, device)
    x = torch.from_numpy(x_u8)
    logits(model, x[:8], mean, std, device)  # warm-up: first-call allocations are not speed
    out = []
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        out.append(logits(model, x[i : i + batch_size], mean, std, device).cpu())
    seconds = time.perf_counter() - start
    z = torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
    return z, z.argmax(1) if len(z) else np.zeros(0, np.int64), len(x) / max(seconds, 1e-9)


def metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Accuracy, the confusion matrix, per-class and macro/weighted precision, recall and F1,
    all from scikit-learn. An undefined ratio (no predictions, no support) counts as 0; the
    averages run over the classes present in the labels or the predictions (scikit-learn's
    default), the per-class figures over every class of the model."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = np.arange(num_classes)
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    out = {
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "confusion": cm,
        "per_class": {"precision": precision, "recall": recall, "f1": f1, "support": support},
    }
    for average in ("macro", "weighted"):
        figures = (
            precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)[:3]
            if len(y_true)
            else (0.0, 0.0, 0.0)
        )
        for name, value in zip(("precision", "recall", "f1"), figures):
            out[f"{name}_{average}"] = float(value)
    return out
