"""Temperature scaling, ECE and the risk-coverage curve, on data whose true calibration is known."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dist.inference import calibration


def drawn(temperature: float, n: int = 20_000, seed: int = 0):
    """Logits, and labels drawn from softmax(logits / temperature): that temperature is the true one."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, 10))
    p = calibration.calibrated(z, temperature)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, y


def test_fitted_temperature_recovers_the_true_one_and_never_raises_the_nll():
    z, y = drawn(2.0)
    t = calibration.fit_temperature(calibration.class_nll(z, y), len(y))
    assert t == pytest.approx(2.0, rel=0.05)
    assert calibration.nll(z, y, t) <= calibration.nll(z, y, 1.0)
    z, y = drawn(1.0, seed=1)
    assert calibration.fit_temperature(calibration.class_nll(z, y), len(y)) == pytest.approx(1.0, rel=0.05)
    assert calibration.fit_temperature(calibration.class_nll(z[:0], y[:0]), 0) == 1.0


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    z, y = drawn(2.0)
    assert calibration.ece(*calibration.answers(z, y, 2.0)) < 0.015
    assert calibration.ece(*calibration.answers(z, y, 1.0)) > 0.1  # the raw softmax is overconfident
    certain = np.ones(4)  # and right three times in four
    assert calibration.ece(certain, np.array([True, True, True, False])) == pytest.approx(0.25)


def test_risk_coverage_curve():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2], [0.4, 0.6], [0.45, 0.55]])
    y = np.array([0, 1, 0, 1, 0])  # wrong: the second (0.8) and the last (0.55)
    curve = calibration.risk_coverage(probs.max(1), probs.argmax(1) == y)
    assert curve["threshold"].tolist() == [0.9, 0.8, 0.6, 0.55]  # tied confidences accept together
    assert curve["coverage"].tolist() == [0.2, 0.6, 0.8, 1.0]
    assert curve["risk"].tolist() == pytest.approx([0, 1 / 3, 1 / 4, 2 / 5])
    assert calibration.coverage_at(curve, 0.3) == (0.8, 0.6)
    assert calibration.coverage_at(curve, 0.0) == (0.2, 0.9)
    assert calibration.accepted(probs.max(1), probs.argmax(1) == y, 0.6) == (0.8, 0.25)


def test_report_reads_thresholds_off_validation_and_measures_them_on_test():
    z, y = drawn(2.0, n=40_000)
    t = calibration.fit_temperature(calibration.class_nll(z[:20_000], y[:20_000]), 20_000)
    row, curves = calibration.report(
        calibration.answers(z[:20_000], y[:20_000], t),
        calibration.answers(z[20_000:], y[20_000:], t),
        calibration.calibrated(z[20_000:], 1.0).max(1),
        t,
    )
    assert set(curves) == {"val", "test"}
    assert row["temperature"] == t
    assert row["ece_after"] < row["ece_before"]
    for target in calibration.ERROR_TARGETS:
        assert 0 <= row[f"coverage_at_{target:g}"] <= 1
    assert row["coverage_at_0.001"] <= row["coverage_at_0.005"] <= row["coverage_at_0.01"]


def ctc_paths(logits):
    from scipy.special import log_softmax

    from hdr_dist.inference import ctc

    return [ctc.best_path(lp, len(lp), 10) for lp in (log_softmax(z, axis=1) for z in logits)]


def test_field_temperature_recovers_the_true_one():
    """Fields of 1 to 6 steps read right with probability exp(their string's log-probability at T = 2):
    the fitted temperature is 2, and the calibrated field confidences have a small ECE."""
    from hdr_dist.inference.readers import FIELD

    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 4, (int(rng.integers(1, 7)), 11)) for _ in range(20_000)]
    strings = [r[0] for r in ctc_paths(logits)]
    right = rng.random(len(logits)) < np.exp(FIELD.text_log_probs(logits, 2.0, strings, 10))
    loss = calibration.right_or_wrong(lambda temp: FIELD.text_log_probs(logits, temp, strings, 10), right)
    t = calibration.fit_temperature(loss, len(right))
    assert t == pytest.approx(2.0, rel=0.05)
    assert calibration.ece(np.exp(FIELD.text_log_probs(logits, t, strings, 10)), right) < 0.015
    assert calibration.ece(np.exp(FIELD.text_log_probs(logits, 1.0, strings, 10)), right) > 0.05
    # The strings are decoded once: the best path at any temperature is the one at 1.
    for temp in (0.3, 2.0, 7.0):
        assert [r[0] for r in ctc_paths([z / temp for z in logits[:500]])] == strings[:500]
    assert (
        calibration.fit_temperature(
            calibration.right_or_wrong(lambda temp: np.zeros(0), np.zeros(0, bool)), 0
        )
        == 1.0
    )


def test_read_rate_takes_the_threshold_from_validation_and_counts_on_test():
    """Validation: the 100 surest answers right, then wrong, right, wrong...: at 1 % error the threshold is
    the 102nd confidence (1 wrong of 102; the 103rd makes 2 of 103). Test: what clears it, counted by hand."""
    from hdr_dist.inference.readers import read_rate

    val_conf = np.linspace(1.0, 0.01, 200)
    val_right = np.r_[np.ones(100, bool), np.arange(100) % 2 == 1]
    test_conf = np.array([0.99, 0.8, 0.6, 0.51, 0.5, 0.2, 0.1, 0.05])
    test_right = np.array([True, True, False, True, True, True, False, True])
    rate, error = read_rate((val_conf, val_right), (test_conf, test_right))
    threshold = val_conf[101]
    assert threshold == pytest.approx(0.4975, abs=1e-3)
    assert (test_conf >= threshold).sum() == 5
    assert (rate, error) == (5 / 8, 1 / 5)  # 0.99, 0.8, 0.6 (wrong), 0.51 and 0.5 accepted
    assert read_rate((val_conf, np.zeros(200, bool)), (test_conf, test_right)) == (
        0.0,
        0.0,
    )  # none clears 1 %
