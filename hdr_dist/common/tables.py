"""The Parquet tables every job writes: their columns, and the one function that builds each.

These schemas are the contract later readers rely on (``hdr score --model``,
``hdr report``, a user's own pandas), so each table is built in exactly one
place, whichever job writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

METRIC_COLUMNS = (
    "dataset",
    "model",
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "train_seconds",
    "epochs",
    "params",
    "num_workers",
    "threads_per_worker",
    "num_nodes",
    "device",
    "infer_images_per_s",
    "checkpoint",
    "method",
    "approximation",
)
# What a field model's row adds (and the segmentation baseline's; readers.field_row): its ``accuracy`` is
# per character; field accuracy and CER on the test fields of 1 to 12 digits, then on the 5-digit scans,
# and the scans' read rate at 1 % error (the share accepted at the validation scans' threshold) with the
# error measured among those.
FIELD_COLUMNS = (
    "field_accuracy",
    "cer",
    "field_accuracy_5",
    "cer_5",
    "read_rate_at_0.01",
    "read_error_at_0.01",
)
HISTORY_COLUMNS = (
    "model",
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "seconds",
    "images_per_s",
)
# What calibration adds to a deep model's metrics row (compare; see calibration.report).
CALIBRATION_COLUMNS = (
    "temperature",
    "ece_before",
    "ece_after",
    "coverage_at_0.01",
    "test_error_at_0.01",
    "coverage_at_0.005",
    "test_error_at_0.005",
    "coverage_at_0.001",
    "test_error_at_0.001",
)
MISTAKES = 32  # the most confident wrong predictions kept per model, for the report's grid
SCHEMAS = {
    "mistakes": pa.schema(
        [
            ("dataset", pa.string()),
            ("model", pa.string()),
            ("item", pa.string()),
            ("true_label", pa.string()),
            ("pred_label", pa.string()),
            ("confidence", pa.float32()),
            ("image", pa.binary(28 * 28)),
        ]
    ),
    # accept an answer when its calibrated confidence >= threshold: coverage accepted, risk wrong among them
    "risk_coverage": pa.schema(
        [
            ("dataset", pa.string()),
            ("model", pa.string()),
            ("split", pa.string()),
            ("threshold", pa.float64()),
            ("coverage", pa.float64()),
            ("risk", pa.float64()),
        ]
    ),
    # a field model's accuracy by the number of digits in the field, on the test fields of 1 to 12 digits
    "field_lengths": pa.schema(
        [
            ("dataset", pa.string()),
            ("model", pa.string()),
            ("length", pa.int32()),
            ("fields", pa.int64()),
            ("field_accuracy", pa.float64()),
        ]
    ),
}
# hdr score's predictions/*.parquet: one row per image (a page of a file or archive member). A field
# model's row reads the image as a digit string: ``text`` (also its pred_label), each digit's confidence
# in ``char_confidences``, and the whole field's in ``confidence``; pred and topk_* stay null.
PREDICTION_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("member", pa.string()),
        ("occurrence", pa.int32()),
        ("page", pa.int32()),
        ("pages", pa.int32()),
        ("pred", pa.int32()),
        ("pred_label", pa.string()),
        ("confidence", pa.float32()),
        ("topk_labels", pa.list_(pa.string())),
        ("topk_probs", pa.list_(pa.float32())),
        ("true_label", pa.string()),
        ("error", pa.string()),
        ("model", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        (
            "decision",
            pa.string(),
        ),  # accept (confidence at or above the threshold) or review (the rest, and errors)
        ("text", pa.string()),
        ("char_confidences", pa.list_(pa.float32())),
    ]
)


def metrics_row(dataset: str, model: str, scores: dict, **extra) -> dict:
    row = {"dataset": dataset, "model": model} | {
        k: scores[k] for k in METRIC_COLUMNS + FIELD_COLUMNS if k in scores
    }
    return row | extra


def trained_row(
    dataset: str, model: str, scores: dict, history: list[dict], *, workers, checkpoint: str, method: str
) -> dict:
    """A deep model's metrics row: its test scores and what its training cost; ``workers`` is the
    run's ``cluster.Workers``."""
    return metrics_row(
        dataset,
        model,
        scores,
        train_seconds=sum(h["seconds"] for h in history),
        epochs=len(history),
        num_workers=workers.count,
        threads_per_worker=workers.cpus,
        num_nodes=history[-1].get("nodes"),
        device="gpu" if workers.gpu else "cpu",
        checkpoint=checkpoint,
        method=method,
        approximation="",
    )


def per_class_rows(dataset: str, model: str, scores: dict, labels: list[str]) -> list[dict]:
    pc = scores["per_class"]
    return [
        {
            "dataset": dataset,
            "model": model,
            "class": i,
            "label": label,
            "precision": float(pc["precision"][i]),
            "recall": float(pc["recall"][i]),
            "f1": float(pc["f1"][i]),
            "support": int(pc["support"][i]),
            # 002's "per-class accuracy": the share of that class's samples classified correctly.
            "accuracy": float(pc["recall"][i]),
        }
        for i, label in enumerate(labels)
    ]


def confusion_rows(dataset: str, model: str, scores: dict) -> list[dict]:
    cm = scores["confusion"]
    return [
        {"dataset": dataset, "model": model, "true": t, "pred": p, "count": int(cm[t, p])}
        for t in range(cm.shape[0])
        for p in range(cm.shape[1])
    ]


def history_rows(dataset: str, model: str, history: list[dict]) -> list[dict]:
    return [
        {"dataset": dataset, "model": model} | {k: h[k] for k in HISTORY_COLUMNS if k in h} for h in history
    ]


def mistake_rows(dataset: str, model: str, scores: dict, x, y, labels: list[str]) -> list[dict]:
    """The test split's most confident wrong predictions, with their images (``scores`` from
    ``DigitReader.test``, which keeps the probabilities)."""
    probs, pred = scores["probs"], scores["pred"]
    wrong = np.flatnonzero(pred != y)
    top = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")[:MISTAKES]]
    return [
        {
            "dataset": dataset,
            "model": model,
            "item": f"test #{i}",
            "true_label": labels[y[i]],
            "pred_label": labels[pred[i]],
            "confidence": float(probs[i, pred[i]]),
            "image": x[i].tobytes(),
        }
        for i in top
    ]


def length_rows(dataset: str, model: str, by_length: dict[int, tuple[float, int]]) -> list[dict]:
    """A field reader's accuracy by field length (``ctc.field_metrics``' ``by_length``)."""
    return [
        {"dataset": dataset, "model": model, "length": n, "fields": count, "field_accuracy": acc}
        for n, (acc, count) in by_length.items()
    ]


def risk_coverage_rows(dataset: str, model: str, curves: dict[str, dict]) -> list[dict]:
    return [
        {
            "dataset": dataset,
            "model": model,
            "split": split,
            "threshold": float(t),
            "coverage": float(c),
            "risk": float(r),
        }
        for split, curve in curves.items()
        for t, c, r in zip(curve["threshold"], curve["coverage"], curve["risk"])
    ]


def model_tables(dataset: str, model: str, labels: list[str], scores: dict, history=(), test=None) -> dict:
    """One model's tables, as far as its scores go: per-class and confusion rows (a digit model);
    accuracy by field length (a field model); its history rows if it has one; its risk-coverage
    curves if it was calibrated; and, given the test images and labels ``test`` and scores that
    keep probabilities, its most confident mistakes."""
    tables = {}
    if "per_class" in scores:
        tables["per_class"] = per_class_rows(dataset, model, scores, labels)
        tables["confusion"] = confusion_rows(dataset, model, scores)
    if "lengths" in scores:
        tables["field_lengths"] = scores["lengths"]
    if "curves" in scores:
        tables["risk_coverage"] = risk_coverage_rows(dataset, model, scores["curves"])
    if history:
        tables["history"] = history_rows(dataset, model, history)
    if test is not None and "probs" in scores:
        tables["mistakes"] = mistake_rows(dataset, model, scores, *test, labels)
    return tables


def write_tables(folder: Path, tables: dict[str, list[dict]]) -> None:
    """One Parquet file per table; each replaced whole (write to a temporary name, then rename).
    A column some rows lack (a classical model's calibration) is null in those rows."""
    for name, rows in tables.items():
        columns = list(dict.fromkeys(k for r in rows for k in r))
        rows = [{k: r.get(k) for k in columns} for r in rows]
        tmp = folder / f".{name}.parquet.tmp"
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS.get(name)), tmp)
        tmp.replace(folder / f"{name}.parquet")


def read_table(folder: Path, name: str) -> list[dict]:
    path = folder / f"{name}.parquet"
    return pq.read_table(path).to_pylist() if path.is_file() else []
