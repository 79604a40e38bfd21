"""Fields of digits: synthetic fields from one split, CTC's best path on hand-made outputs, the
field metrics against hand-counted edit distances, and field preprocessing of rendered scans."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hdr_dist import models
from hdr_dist.data import fields
from hdr_dist.imaging import preprocess, segment
from hdr_dist.inference import ctc


def one_hot_path(path: list[int], classes: int = 11, sure: float = 0.9) -> np.ndarray:
    """Log-probabilities whose best path is ``path`` (blank = the last class)."""
    p = np.full((len(path), classes), (1 - sure) / (classes - 1))
    p[np.arange(len(path)), path] = sure
    return np.log(p)


def test_best_path_collapses_repeats_and_drops_blanks():
    b = 10
    lp = one_hot_path([b, 3, 3, b, 3, 7, 7, b, b, 0])
    classes, confidences, prob = ctc.best_path(lp, 10, b)
    assert classes == [3, 3, 7, 0]  # a blank between two 3s keeps both
    assert confidences == pytest.approx([0.9] * 4)
    assert prob == pytest.approx(0.9**10)
    assert ctc.best_path(lp, 3, b)[0] == [3]  # only the field's own steps count, not the padding
    assert ctc.greedy(np.stack([lp, one_hot_path([b] * 10)]), [10, 10], b) == [[3, 3, 7, 0], []]


def test_string_probability_sums_every_path_that_spells_it():
    """Two steps over {0, 1, blank}: "0" is spelled by 0-0, 0-blank and blank-0; "" only by blank-blank."""
    p = np.array([[0.5, 0.2, 0.3], [0.6, 0.1, 0.3]])
    got = np.exp(ctc.string_log_probs([np.log(p)] * 2, [[0], []], blank=2))
    assert got == pytest.approx([0.5 * 0.6 + 0.5 * 0.3 + 0.3 * 0.6, 0.3 * 0.3], rel=1e-5)
    # The best path (0, 0) alone has 0.30 of the 0.63: a long field's best path is far below its string's.
    assert ctc.best_path(np.log(p), 2, 2)[2] == pytest.approx(0.3)


def test_field_metrics_count_edits_by_hand():
    truth = ["12345", "999", "1"]
    read = ["12445", "99", "17"]  # one substitution, one deletion, one insertion
    m = ctc.field_metrics(truth, read)
    assert ctc.distance("12345", "12445") == 1
    assert ctc.distance("999", "99") == 1
    assert m["cer"] == pytest.approx(3 / 9)
    assert m["field_accuracy"] == 0.0
    assert m["by_length"] == {1: (0.0, 1), 3: (0.0, 1), 5: (0.0, 1)}
    assert ctc.field_metrics(["42"], ["42"])["field_accuracy"] == 1.0


def test_fields_are_made_of_one_split_and_are_the_same_every_time(mnist):
    strips, labels = fields.fixed_set(mnist.test.x, mnist.test.y, seed=3)
    again, labels_again = fields.fixed_set(mnist.test.x, mnist.test.y, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(strips, again))
    assert [list(a) for a in labels] == [list(b) for b in labels_again]
    assert {len(lab) for lab in labels} <= set(range(1, fields.MAX_DIGITS + 1))
    assert sum(len(lab) for lab in labels) >= len(mnist.test.y) * 0.8  # about every test digit once
    assert all(
        s.shape[0] == fields.HEIGHT and s.shape[1] >= models.CRNN(10).step * len(lab)
        for s, lab in zip(strips, labels)
    )  # a step at least per digit
    assert all(s.min() >= 0 and s.max() <= 1 for s in strips)


def test_crnn_reads_any_width_one_step_per_four_columns():
    model = models.build("crnn", 10).eval()
    for width in (32, 100, 400):
        assert model(torch.zeros(2, 1, fields.HEIGHT, width)).shape == (2, width // 4, 11)


def test_scans_lose_their_lines_and_keep_their_digits(mnist):
    picks = [np.arange(5), np.arange(5, 17)]
    scans = list(fields.scans(mnist.test.x, mnist.test.y, picks, [28, 64], ["PNG", "JPEG"], seed=1))
    assert [text for text, _ in scans] == ["".join(mnist.labels[d] for d in mnist.test.y[p]) for p in picks]
    for (_, data), _p in zip(scans, picks):
        gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        strip = preprocess.to_strip(gray)
        assert strip.shape[0] == fields.HEIGHT
        assert strip.max() > 0.5
        # No printed line is left: no row of ink across most of the field, no column down all of it.
        on = strip > 0.5
        assert on.mean(1).max() < 0.5
        assert on.mean(0).max() < 0.9


def test_a_blank_or_too_wide_field_is_refused():
    with pytest.raises(preprocess.BlankImage):
        preprocess.to_strip(np.full((40, 200), 240, np.uint8))
    wide = np.full((20, 3000), 255, np.uint8)
    for left in range(10, 2990, 30):  # a hundred dots in a row: ink 2,976 wide and 6 high
        wide[7:13, left : left + 6] = 0
    with pytest.raises(ValueError, match="field too wide"):
        preprocess.to_strip(wide)


def test_segmentation_baseline_cuts_separate_digits(mnist):
    x = mnist.test.x[:3]
    strip = np.zeros((fields.HEIGHT, 3 * 34), np.float32)
    for i, digit in enumerate(x):
        strip[2:30, 3 + 34 * i : 31 + 34 * i] = digit / 255
    digits = segment.digit_images(strip)
    assert digits.shape == (3, 28, 28)
    for got, digit in zip(digits, x):  # in order, each its own digit in MNIST space
        want = preprocess.to_mnist(digit)
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9


def test_a_field_reads_the_same_alone_or_beside_wider_ones(mnist):
    """Padding is paper and the LSTM runs over each strip's own steps: a strip's logits hardly depend on
    what else is in its batch (an untrained model, whose every weight still matters). What is left is the
    convolutions' edge, within 1e-3 of a logit; an LSTM run over the padding moved them by 0.016."""
    from hdr_dist.inference.readers import FIELD

    torch.manual_seed(0)
    model = models.build("crnn", 10).eval()
    strips, _ = fields.fixed_set(mnist.test.x, mnist.test.y, seed=2, counts=np.array([1, 5, 12]))
    together = FIELD.step_logits(model, strips, 0.0, 0.3)
    for strip, batched in zip(strips, together):
        alone = FIELD.step_logits(model, [strip], 0.0, 0.3)[0]
        assert alone.shape == batched.shape == (strip.shape[1] // model.step, 11)
        np.testing.assert_allclose(alone, batched, rtol=0, atol=1e-3)


def test_training_batches_hold_fields_of_similar_length_and_every_field_once():
    """Each field of the epoch in exactly one batch, batches in random order, and far less padding than
    batches taken in the order the fields were drawn."""
    from hdr_dist.training.kinds import similar_lengths

    rng = np.random.default_rng(0)
    picks = fields.picks_of(np.arange(6000), fields.lengths(fields.per_epoch(6000), rng))
    batches = similar_lengths(picks, 16, np.random.default_rng(1))
    flat = np.concatenate([np.concatenate(b) for b in batches])
    assert sorted(flat.tolist()) == sorted(np.concatenate(picks).tolist())
    assert sum(len(b) != 16 for b in batches) <= 1
    assert all(0 < len(b) <= 16 for b in batches)

    def padding(groups):
        return sum(len(g) * max(map(len, g)) - sum(map(len, g)) for g in groups) / sum(map(len, picks))

    assert padding(batches) < 0.2 * padding([picks[i : i + 16] for i in range(0, len(picks), 16)])
    lengths = [max(map(len, b)) for b in batches]
    assert lengths != sorted(lengths)  # shuffled: an epoch does not run from short fields to long ones
