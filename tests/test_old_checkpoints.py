"""Checkpoints written before the package took its folders still load and score, to the same answers.

``tests/data/*-before-the-layout.pt`` are a ``cnn`` and a ``crnn`` that compare trained (optimiser
state dropped to keep them small); ``before-the-layout.json`` holds what score answered with them
then, on the digit and field scans beside them. Two of the field model's confidences are today's
(1.7e-3 and 1.5e-3 from then, the same strings and decisions): a strip batch is now padded to a few
shapes, and its widest strip reads with paper beyond its edge, as the others always did."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pytest

from hdr_dist.jobs import score
from tests.helpers import ROOT

DATA = ROOT / "tests" / "data"


@pytest.mark.parametrize("model, inputs", [("cnn", "digits"), ("crnn", "fields")])
def test_an_old_checkpoint_scores_as_it_did(ray_cluster, tmp_path, model, inputs):
    out = tmp_path / "out"
    assert (
        score.main(
            [
                str(DATA / f"{inputs}-before-the-layout.zip"),
                "--model",
                str(DATA / f"{model}-before-the-layout.pt"),
                "--output",
                str(out),
                "--threshold",
                "0.9",
            ]
        )
        == 0
    )
    rows = sorted(pads.dataset(out / "predictions").to_table().to_pylist(), key=lambda r: r["member"])
    expected = json.loads((DATA / "before-the-layout.json").read_text())[model]
    assert [(r["member"], r["pred_label"], r["decision"]) for r in rows] == [
        (e["member"], e["pred_label"], e["decision"]) for e in expected
    ]
    assert [r["confidence"] for r in rows] == pytest.approx([e["confidence"] for e in expected], abs=1e-4)
