"""compare's test sets for field models, and the segmentation baseline read on the same fields (the
field reader's own test is ``FieldReader.test``).

Two test sets, both made of test-split digits only: fields of 1 to 12 digits (each test digit
once; accuracy by length is read on them), and 5-digit fields rendered as scans, 28 to 64
pixels high, PNG and JPEG, with a form's printed lines, read through score's own
preprocessing (``preprocess.to_strip``). The second is what a ZIP-code archive holds.
"""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from hdr_dist.data import fields
from hdr_dist.imaging import preprocess, segment
from hdr_dist.inference import calibration, evaluate, readers
from hdr_dist.models import checkpoints

SCAN_DIGITS = 5
SCAN_HEIGHTS = (28, 64)
# Each validation digit in this many 5-digit scans, each pass grouped and drawn afresh. A threshold read
# on one pass allows so few errors that the test read rate moved widely with the seed that made the
# scans (docs/decisions.md); more scans steady it.
VAL_SCAN_PASSES = 4


def scan_strips(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """``count`` 5-digit fields of ``x``'s digits as scans (lines, paper, PNG or JPEG), each brought back
    to a strip as score brings back a scan; and their digit strings."""
    rng = np.random.default_rng(seed)
    picks = fields.picks_of(rng.permutation(len(y)), np.full(count, SCAN_DIGITS))
    heights = rng.integers(SCAN_HEIGHTS[0], SCAN_HEIGHTS[1] + 1, count).tolist()
    formats = ["PNG" if i % 2 else "JPEG" for i in range(count)]
    strips, truth = [], []
    for text, data in fields.scans(x, y, picks, heights, formats, seed + 1):
        strips.append(preprocess.to_strip(np.asarray(Image.open(io.BytesIO(data)).convert("L"))))
        truth.append(text)
    return strips, truth


def test_sets(ds, seed: int) -> dict[str, tuple[list[np.ndarray], list[str]]]:
    """The test fields of 1 to 12 digits, and the 5-digit scans; each as (strips, digit strings). Beside
    them, 5-digit scans of the validation digits (``val_scans``, ``VAL_SCAN_PASSES`` of them): the scans'
    reject threshold for an error target is read on them, as ``score --target-error`` reads it on
    validation answers."""
    strips, digits = fields.fixed_set(ds.test.x, ds.test.y, seed + 1)
    scans = scan_strips(ds.test.x, ds.test.y, max(1, len(ds.test.y) // SCAN_DIGITS), seed + 2)
    passes = [
        scan_strips(ds.val.x, ds.val.y, max(1, len(ds.val.y) // SCAN_DIGITS), seed + 3 + k)
        for k in range(VAL_SCAN_PASSES)
    ]
    val_scans = ([s for p in passes for s in p[0]], [t for p in passes for t in p[1]])
    return {
        "fields": (strips, ["".join(ds.labels[d] for d in t) for t in digits]),
        "scans": scans,
        "val_scans": val_scans,
    }


def segmented(state, tests: dict) -> dict:
    """The segmentation baseline: each field cut into its blobs of ink, each blob read by the digit
    model of ``state``; the field's confidence is the product of its digits'."""
    model, cfg = checkpoints.model_from_state(state)
    temperature = state.temperature or 1.0
    sets = {}
    for name, (strips, truth) in tests.items():
        start = time.perf_counter()
        pieces = [segment.digit_images(s) for s in strips]
        flat = np.concatenate(pieces) if pieces else np.zeros((0, 28, 28), np.uint8)
        z, pred, _ = evaluate.predict(model, flat, cfg.mean, cfg.std)
        probs = calibration.calibrated(z, temperature).max(1) if len(z) else np.zeros(0)
        reads, at = [], 0
        for p in pieces:
            n = len(p)
            reads.append(
                (
                    "".join(cfg.labels[k] for k in pred[at : at + n]),
                    probs[at : at + n].tolist(),
                    float(np.prod(probs[at : at + n])),
                )
            )
            at += n
        sets[name] = readers.field_scores(truth, reads)
        sets[name]["fields_per_s"] = len(strips) / max(time.perf_counter() - start, 1e-9)
    return {"row": readers.field_row(sets), "sets": sets}
