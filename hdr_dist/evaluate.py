"""Test-split evaluation: predictions, inference speed, and the classification metrics.

The metrics are computed from one confusion matrix with numpy, so the same code
serves compare (in memory) and bulk scoring (from Parquet rows); the tests check
every figure against scikit-learn's.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hdr_dist import models
from hdr_dist.train import autocast, normalise


def for_inference(model: torch.nn.Module, device=torch.device("cpu")) -> torch.nn.Module:
    """Eval mode, on ``device``, channels-last: oneDNN's convolutions then run about 1.7x faster on a CPU."""
    return model.eval().to(device, memory_format=torch.channels_last)


def logits(model: torch.nn.Module, x_u8: torch.Tensor, mean: float, std: float, device) -> torch.Tensor:
    with autocast(device):
        x = normalise(x_u8.to(device), mean, std).contiguous(memory_format=torch.channels_last)
        return model(x).float()


@torch.no_grad()
def predict(model: torch.nn.Module, x_u8: np.ndarray, mean: float, std: float,
            device=torch.device("cpu"), batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray, float]:
    """Class probabilities and predictions for uint8 images, and the images/s it ran at."""
    model = for_inference(model, device)
    x = torch.from_numpy(x_u8)
    logits(model, x[:8], mean, std, device)  # warm-up: first-call allocations are not speed
    probs = []
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        probs.append(torch.softmax(logits(model, x[i:i + batch_size], mean, std, device), dim=1).cpu())
    seconds = time.perf_counter() - start
    p = torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32)
    return p, p.argmax(1) if len(p) else np.zeros(0, np.int64), len(x) / max(seconds, 1e-9)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """cm[t, p] = how many samples of class t were predicted as p."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, -1)


def metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    """Accuracy, per-class and macro/weighted precision, recall and F1.

    Averages run over the classes present in the labels or the predictions, and
    an undefined ratio (no predictions, no support) counts as 0: scikit-learn's
    ``precision_recall_fscore_support`` conventions, so figures match its own.
    """
    cm = confusion(np.asarray(y_true), np.asarray(y_pred), num_classes)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)

    precision, recall = ratio(tp, predicted), ratio(tp, support)
    f1 = ratio(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    weights = support / max(support.sum(), 1)
    out = {"accuracy": float(tp.sum() / max(cm.sum(), 1)), "confusion": cm,
           "per_class": {"precision": precision, "recall": recall, "f1": f1, "support": support}}
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"{name}_macro"] = float(values[present].mean()) if present.any() else 0.0
        out[f"{name}_weighted"] = float((values * weights).sum())
    return out


def evaluate_state(state: dict, x_u8: np.ndarray, y: np.ndarray, device=torch.device("cpu")) -> dict:
    """Load a checkpoint's weights and score them once on the test split."""
    cfg = state["config"]
    model = models.from_config(cfg)
    model.load_state_dict(state["model"])
    probs, pred, ips = predict(model, x_u8, cfg["mean"], cfg["std"], device)
    out = metrics(y, pred, cfg["num_classes"])
    out |= {"infer_images_per_s": ips, "params": models.count_params(model), "probs": probs, "pred": pred}
    return out
