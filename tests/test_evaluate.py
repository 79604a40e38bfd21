"""Our metric code against scikit-learn's, on edge cases included."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from hdr_dist.inference.evaluate import metrics


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    classes = 12
    y_true = rng.integers(0, 10, 500)  # classes 10, 11 never occur in the labels...
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, classes, 500))
    y_pred[y_pred == 3] = 4  # ...and class 3 is never predicted
    m = metrics(y_true, y_pred, classes)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert np.array_equal(m["confusion"], confusion_matrix(y_true, y_pred, labels=range(classes)))
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        assert (m[f"precision_{avg}"], m[f"recall_{avg}"], m[f"f1_{avg}"]) == pytest.approx((p, r, f))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(classes), zero_division=0)
    pc = m["per_class"]
    assert np.allclose(pc["precision"], p)
    assert np.allclose(pc["recall"], r)
    assert np.allclose(pc["f1"], f)
    assert np.array_equal(pc["support"], s)


def test_perfect_predictions():
    y = np.arange(10).repeat(3)
    m = metrics(y, y, 10)
    assert m["accuracy"] == m["f1_macro"] == m["precision_weighted"] == 1.0
