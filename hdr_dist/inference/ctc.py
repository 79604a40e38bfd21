"""Reading a field model's output: CTC's best path, its probability, and the edit distance
its errors are counted in.

A ``crnn`` answers, for each step along the field, a distribution over the digits
plus a blank (the last class). The best path takes each step's most likely class;
collapsing repeats and dropping blanks gives the digit string. The probability CTC
gives that string, summed over every path that spells it, is the field's
confidence: one wrong or doubtful digit anywhere makes it low, which is what a
reject option on whole fields needs. The best path's own probability is a poor
stand-in: it falls with every step of a long field even when all of them are sure
of the same string.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from rapidfuzz.distance import Levenshtein


def best_path(log_probs: np.ndarray, length: int, blank: int) -> tuple[list[int], list[float], float]:
    """One field's (steps, classes + blank) log-probabilities, of which the first ``length`` steps
    are the field's: its classes, each one's probability (the most sure of its steps), and the
    probability of the whole path."""
    lp = log_probs[:length]
    best = lp.argmax(1)
    step_lp = lp[np.arange(len(best)), best]
    classes, confidences = [], []
    previous = blank
    for k, p in zip(best, step_lp):
        if k != blank and k != previous:
            classes.append(int(k))
            confidences.append(float(np.exp(p)))
        elif k != blank and k == previous:
            confidences[-1] = max(confidences[-1], float(np.exp(p)))
        previous = k
    return classes, confidences, float(np.exp(step_lp.sum()))


def best_path_of_length(
    log_probs: np.ndarray, blank: int, low: int, high: int
) -> tuple[list[int], list[float]]:
    """The most probable path whose string has ``low`` to ``high`` classes, for a field whose length is
    known (a form's zone says it), and each class's probability (the surest of its steps).

    A Viterbi pass over (classes emitted so far, the class last emitted or a blank since): a repeat
    of the last class without a blank between collapses into it, any other class adds one. None when
    the steps cannot hold ``low`` classes (each needs a step, a repeated one two)."""
    steps, width = log_probs.shape
    neg = -np.inf
    # score[k, c]: best log-probability with k classes emitted, the last step emitting c (or blank).
    score = np.full((high + 1, width), neg)
    score[0, blank] = log_probs[0, blank]
    if high:
        score[1, :blank] = log_probs[0, :blank]
    back = np.zeros((steps, high + 1, width, 2), np.int32)  # the previous (k, c) of each state
    classes = np.arange(blank)
    for t in range(1, steps):
        lp = log_probs[t]
        new = np.full_like(score, neg)
        for k in range(high + 1):
            c_prev = int(np.argmax(score[k]))  # a blank: from any state with k classes
            new[k, blank], back[t, k, blank] = score[k, c_prev] + lp[blank], (k, c_prev)
            stay = score[k, :blank]  # the same class again: it collapses into the last
            value, from_k, from_c = stay.copy(), np.full(blank, k), classes.copy()
            if k:  # a new class: from k - 1 classes, the last being any state but this class itself
                prior = score[k - 1]
                order = np.argsort(prior)[::-1]
                best = np.where(order[0] == classes, order[1], order[0])
                take = prior[best] > stay
                value, from_k, from_c = (
                    np.where(take, prior[best], value),
                    np.where(take, k - 1, from_k),
                    np.where(take, best, from_c),
                )
            new[k, :blank] = value + lp[:blank]
            back[t, k, :blank, 0], back[t, k, :blank, 1] = from_k, from_c
        score = new
    k_range = range(low, min(high, steps) + 1)
    finals = [(score[k].max(), k, int(score[k].argmax())) for k in k_range if np.isfinite(score[k].max())]
    if not finals:
        return None
    _, k, c = max(finals)
    path = []
    for t in range(steps - 1, -1, -1):
        path.append(c)
        if t:
            k, c = back[t, k, c]
    path.reverse()
    classes, confidences, previous = [], [], blank
    for t, c in enumerate(path):
        p = float(np.exp(log_probs[t, c]))
        if c != blank and c != previous:
            classes.append(int(c))
            confidences.append(p)
        elif c != blank:
            confidences[-1] = max(confidences[-1], p)
        previous = c
    return classes, confidences


def greedy(log_probs: np.ndarray, steps: list[int], blank: int) -> list[list[int]]:
    """The best path's classes of each field in a batch: (N, steps, classes + blank) -> N lists."""
    best = log_probs.argmax(-1)
    out = []
    for row, n in zip(best, steps):
        row = row[:n]
        keep = (row != blank) & np.r_[True, row[1:] != row[:-1]]
        out.append(row[keep].tolist())
    return out


def string_log_probs(log_probs: list[np.ndarray], strings: list[list[int]], blank: int) -> np.ndarray:
    """The log-probability each field's (steps, classes + blank) log-probabilities give its string:
    CTC's sum over every alignment that spells it (minus torch's CTC loss, field by field)."""
    if not log_probs:
        return np.zeros(0)
    steps = [len(lp) for lp in log_probs]
    padded = np.zeros((max(steps), len(log_probs), log_probs[0].shape[1]), np.float32)
    for i, lp in enumerate(log_probs):
        padded[: len(lp), i] = lp
    targets = torch.tensor([c for s in strings for c in s], dtype=torch.long)
    loss = F.ctc_loss(
        torch.from_numpy(padded),
        targets,
        torch.tensor(steps),
        torch.tensor([len(s) for s in strings]),
        blank=blank,
        reduction="none",
        zero_infinity=False,
    )
    return -loss.double().numpy()


def distance(a: str, b: str) -> int:
    """Insertions, deletions and substitutions between two strings."""
    return Levenshtein.distance(a, b)


def field_metrics(truth: list[str], read: list[str]) -> dict:
    """Field accuracy (exact match), character error rate (edit distance over the true length,
    summed over all fields) and the character accuracy it leaves (1 - CER, at least 0: what stands
    beside a digit model's accuracy), and field accuracy by true length."""
    right = np.array([t == r for t, r in zip(truth, read)])
    errors = sum(distance(t, r) for t, r in zip(truth, read))
    by_length: dict[int, list[bool]] = {}
    for t, ok in zip(truth, right):
        by_length.setdefault(len(t), []).append(bool(ok))
    cer = errors / max(sum(len(t) for t in truth), 1)
    return {
        "field_accuracy": float(right.mean()) if len(right) else 0.0,
        "cer": cer,
        "char_accuracy": max(0.0, 1 - cer),
        "by_length": {n: (float(np.mean(v)), len(v)) for n, v in sorted(by_length.items())},
    }
