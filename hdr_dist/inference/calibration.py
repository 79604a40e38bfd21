"""Calibrated confidence: temperature scaling, its expected calibration error, and the
risk-coverage curve an error target is read from.

A softmax output is not a probability one can act on: deep models are
overconfident. One temperature ``T``, fitted on the validation hold-out by
minimising the negative log-likelihood of ``softmax(logits / T)`` (Guo et al.,
2017), fixes most of that without moving any prediction. The risk-coverage
curve then says, for each confidence threshold, what share of answers is
accepted and how many of those are wrong: the curve an operations team picks
its reject threshold on.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)
# The error targets compare reports the coverage at, as fractions.
ERROR_TARGETS = (0.01, 0.005, 0.001)


def calibrated(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Class probabilities at ``temperature``; 1 is the plain softmax."""
    return softmax(np.asarray(logits, np.float64) / temperature, axis=1)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true classes at ``temperature``."""
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(y)), y].mean())


def class_nll(logits: np.ndarray, y: np.ndarray):
    """A digit model's temperature loss: the NLL of the true classes, as a function of T."""
    return lambda t: nll(logits, y, t)


def right_or_wrong(log_probs_at, right: np.ndarray):
    """A field model's temperature loss: how well the probability of each string it reads, at T
    (``log_probs_at(T)``), predicts whether the field was read right (the likelihood of right/wrong)."""

    def loss(t: float) -> float:
        p = np.clip(np.exp(log_probs_at(t)), 1e-12, 1 - 1e-12)
        return float(-np.where(right, np.log(p), np.log1p(-p)).mean())

    return loss


def fit_temperature(loss, count: int) -> float:
    """The temperature that minimises ``loss(T)`` on ``count`` validation answers (``class_nll`` or
    ``right_or_wrong``); 1 when there are none, or when no T does better than 1."""
    if count == 0:
        return 1.0
    # Searched on log T: the likelihood is far smoother there, and T stays positive.
    found = minimize_scalar(
        lambda t: loss(float(np.exp(t))),
        method="bounded",
        bounds=tuple(np.log(TEMPERATURE_RANGE)),
        options={"xatol": 1e-4},
    )
    best = float(np.exp(found.x))
    return best if loss(best) <= loss(1.0) else 1.0


def answers(logits: np.ndarray, y: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """A digit model's answers as every calibration measure takes them: the top label's calibrated
    confidence, and whether it was right."""
    probs = calibrated(logits, temperature)
    return probs.max(1), probs.argmax(1) == y


def ece(confidence: np.ndarray, right: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of answers of any kind (a digit, a whole field): the confidence-weighted
    gap between confidence and accuracy over equal-width confidence bins."""
    if len(right) == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, confidence, bins) - np.bincount(which, right.astype(np.float64), bins))
    return float(gap.sum() / count.sum())


def risk_coverage(confidence: np.ndarray, right: np.ndarray) -> dict[str, np.ndarray]:
    """For each distinct confidence, as a threshold (accept when confidence >= it), highest first:
    the share of answers accepted (coverage) and the error among them (risk)."""
    order = np.argsort(-confidence, kind="stable")
    wrong = np.cumsum(~right[order])
    accepted = np.arange(1, len(right) + 1)
    sorted_conf = confidence[order]
    # Ties accept together: keep the last position of each run of equal confidences.
    last = np.r_[sorted_conf[1:] != sorted_conf[:-1], True] if len(right) else np.zeros(0, bool)
    return {
        "threshold": sorted_conf[last],
        "coverage": accepted[last] / max(len(right), 1),
        "risk": wrong[last] / accepted[last],
    }


def coverage_at(curve: dict, target: float) -> tuple[float, float]:
    """The most coverage whose risk is at most ``target``, and its threshold (1.0 with none).
    ``curve`` is ``risk_coverage``'s, or the lists a checkpoint stores of it."""
    risk, coverage = np.asarray(curve["risk"]), np.asarray(curve["coverage"])
    ok = np.flatnonzero(risk <= target)
    if len(ok) == 0:
        return 0.0, 1.0
    i = ok[np.argmax(coverage[ok])]
    return float(coverage[i]), float(curve["threshold"][i])


def accepted(confidence: np.ndarray, right: np.ndarray, threshold: float) -> tuple[float, float]:
    """Coverage and error among the accepted, accepting where the confidence is at least ``threshold``."""
    take = confidence >= threshold
    n = int(take.sum())
    return n / max(len(right), 1), int((~right[take]).sum()) / n if n else 0.0


def report(
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    test_raw: np.ndarray,
    temperature: float,
) -> tuple[dict, dict]:
    """What calibration did, as metrics columns, and the risk-coverage curves of both splits, from answers
    of any kind: (confidence, right) on each split at ``temperature``, and the test split's confidences
    before calibration.

    For each error target, the threshold is read off the validation curve, as ``score
    --target-error`` reads it; the test split then says what that threshold really accepts,
    and how many of those answers are wrong.
    """
    curves = {"val": risk_coverage(*val), "test": risk_coverage(*test)}
    row = {"temperature": temperature, "ece_before": ece(test_raw, test[1]), "ece_after": ece(*test)}
    for target in ERROR_TARGETS:
        _, threshold = coverage_at(curves["val"], target)
        coverage, risk = accepted(*test, threshold)
        row |= {f"coverage_at_{target:g}": coverage, f"test_error_at_{target:g}": risk}
    return row, curves


def at_threshold(curve: dict, threshold: float) -> tuple[float, float]:
    """What a curve says accepting at ``threshold`` does: its coverage and its error among the accepted."""
    clears = np.flatnonzero(np.asarray(curve["threshold"]) >= threshold)
    if len(clears) == 0:
        return 0.0, 0.0
    i = clears[-1]  # thresholds run highest first: the last one to clear accepts the most
    return float(curve["coverage"][i]), float(curve["risk"][i])
