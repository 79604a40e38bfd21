"""compare's test of field models: the fixed test fields, the temperature of the whole field's
confidence, and the segmentation baseline read on the same fields.

Two test sets, both made of test-split digits only: fields of 1 to 12 digits (each test digit
once; accuracy by length is read on them), and 5-digit fields rendered as scans, 28 to 64
pixels high, PNG and JPEG, with a form's printed lines, read through score's own
preprocessing (``preprocess.to_strip``). The second is what a ZIP-code archive holds.
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
from PIL import Image

from hdr_dist import calibration, checkpoints, ctc, evaluate, field_reader, fields, models, preprocess, segment

SCAN_DIGITS = 5
SCAN_HEIGHTS = (28, 64)


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
    """The test fields of 1 to 12 digits, and the 5-digit scans; each as (strips, digit strings)."""
    strips, digits = fields.fixed_set(ds.test.x, ds.test.y, seed + 1)
    scans = scan_strips(ds.test.x, ds.test.y, max(1, len(ds.test.y) // SCAN_DIGITS), seed + 2)
    return {"fields": (strips, ["".join(ds.labels[d] for d in t) for t in digits]), "scans": scans}


def scores_of(truth: list[str], reads: list[tuple[str, list[float], float]]) -> dict:
    texts = [r[0] for r in reads]
    out = ctc.field_metrics(truth, texts)
    return out | {"right": np.array([t == r for t, r in zip(truth, texts)], bool),
                  "confidence": np.array([r[2] for r in reads])}


def row_of(sets: dict[str, dict], fields_per_s: float) -> dict:
    """A field model's metrics columns: ``accuracy`` is per character (1 - CER), to stand beside the
    digit models' per-digit accuracy; the field accuracies say what a whole field costs."""
    f, s = sets["fields"], sets["scans"]
    return {"accuracy": f["char_accuracy"], "field_accuracy": f["field_accuracy"], "cer": f["cer"],
            "field_accuracy_5": s["field_accuracy"], "cer_5": s["cer"], "infer_images_per_s": fields_per_s}


def evaluate_state(state: dict, val: tuple[list, list], tests: dict, device=torch.device("cpu")) -> dict:
    """A field model's test: its temperature, fitted on the validation fields; then the test sets
    read at it, with the calibration columns and the risk-coverage curves of whole fields."""
    model, cfg = checkpoints.model_from_state(state)
    model.to(device)
    labels = list(cfg.labels)
    val_logits = field_reader.step_logits(model, val[0], cfg.mean, cfg.std, device)
    val_truth = ["".join(labels[d] for d in t) for t in val[1]]
    val_right = np.array([r[0] == t for r, t in zip(field_reader.read(val_logits, 1.0, labels), val_truth)], bool)
    blank = len(labels)
    temperature = calibration.fit_field_temperature(lambda t: field_reader.text_log_probs(val_logits, t, blank),
                                                    val_right)
    sets, raw = {}, None
    for name, (strips, truth) in tests.items():
        start = time.perf_counter()
        logits = field_reader.step_logits(model, strips, cfg.mean, cfg.std, device)
        sets[name] = scores_of(truth, field_reader.read(logits, temperature, labels))
        sets[name]["fields_per_s"] = len(strips) / max(time.perf_counter() - start, 1e-9)
        if name == "fields":
            raw = np.exp(field_reader.text_log_probs(logits, 1.0, blank))
    val_conf = np.exp(field_reader.text_log_probs(val_logits, temperature, blank))
    calibration_row, curves = calibration.report_of((val_conf, val_right),
                                                    (sets["fields"]["confidence"], sets["fields"]["right"]), raw,
                                                    temperature)
    row = row_of(sets, sets["fields"]["fields_per_s"]) | {"params": models.count_params(model)} | calibration_row
    return {"row": row, "sets": sets, "curves": curves, "temperature": temperature}


def segmented(state: dict, tests: dict) -> dict:
    """The segmentation baseline: each field cut into its blobs of ink, each blob read by the digit
    model of ``state``; the field's confidence is the product of its digits'."""
    model, cfg = checkpoints.model_from_state(state)
    temperature = state.get("temperature") or 1.0
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
            reads.append(("".join(cfg.labels[k] for k in pred[at:at + n]), probs[at:at + n].tolist(),
                          float(np.prod(probs[at:at + n]))))
            at += n
        sets[name] = scores_of(truth, reads)
        sets[name]["fields_per_s"] = len(strips) / max(time.perf_counter() - start, 1e-9)
    return {"row": row_of(sets, sets["fields"]["fields_per_s"]), "sets": sets}
