"""What a run leaves behind: the Parquet tables and the table printed beside the seeds.

The Parquet schemas here are the contract later jobs read (scoring, reports),
so each table is built in exactly one function.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

# Test (or validation, where that is all a study gives) accuracy the seeds report, in %.
# 002's headline "CNN 99.9 %" is its *training* accuracy; its held-out figure is 99.05 %.
SEED_FIGURES = {
    "cnn": ("000 CNN", 99.31),
    "lstm": ("000 LSTM", 98.90),
    "cnn-seed": ("002 CNN (val)", 99.05),
    "lstm-seed": ("002 LSTM (val)", 97.6),
    "cnn-emnist-seed": ("002 CNN EMNIST", 88.0),
    # 002's Table 2; its ANN (mlp) has no reported figure.
    "nb": ("002 NB", 80.6),
    "dt": ("002 DT", 85.2),
    "rf": ("002 RF", 94.1),
    "knn": ("002 KNN", 96.9),
    "svm-linear": ("002 SVM lin.", 91.3),
    "svm-rbf": ("002 SVM RBF", 94.4),
}

METRIC_COLUMNS = ("dataset", "model", "accuracy", "precision_macro", "recall_macro", "f1_macro",
                  "precision_weighted", "recall_weighted", "f1_weighted", "train_seconds", "epochs",
                  "params", "num_workers", "num_nodes", "device", "infer_images_per_s", "checkpoint", "method", "approximation")
HISTORY_COLUMNS = ("model", "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds",
                   "images_per_s")


def metrics_row(dataset: str, model: str, scores: dict, **extra) -> dict:
    row = {"dataset": dataset, "model": model} | {k: scores[k] for k in METRIC_COLUMNS if k in scores}
    return row | extra


def per_class_rows(dataset: str, model: str, scores: dict, labels: list[str]) -> list[dict]:
    pc = scores["per_class"]
    return [{"dataset": dataset, "model": model, "class": i, "label": label,
             "precision": float(pc["precision"][i]), "recall": float(pc["recall"][i]),
             "f1": float(pc["f1"][i]), "support": int(pc["support"][i]),
             # 002's "per-class accuracy": the share of that class's samples classified correctly.
             "accuracy": float(pc["recall"][i])} for i, label in enumerate(labels)]


def confusion_rows(dataset: str, model: str, scores: dict) -> list[dict]:
    cm = scores["confusion"]
    return [{"dataset": dataset, "model": model, "true": t, "pred": p, "count": int(cm[t, p])}
            for t in range(cm.shape[0]) for p in range(cm.shape[1])]


def history_rows(dataset: str, model: str, history: list[dict]) -> list[dict]:
    return [{"dataset": dataset, "model": model} | {k: h[k] for k in HISTORY_COLUMNS if k in h}
            for h in history]


def write_tables(folder: Path, tables: dict[str, list[dict]]) -> None:
    """One Parquet file per table; each replaced whole (write to a temporary name, then rename)."""
    for name, rows in tables.items():
        tmp = folder / f".{name}.parquet.tmp"
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        tmp.replace(folder / f"{name}.parquet")


def print_table(rows: list[dict], console: Console | None = None) -> None:
    table = Table(title="hdr-dist: test-split results beside the seeds' figures")
    for col in ("dataset", "model", "accuracy %", "P macro", "R macro", "F1 macro", "train s",
                "epochs", "workers", "infer img/s", "seed figure", "Δ pp", "approximation"):
        table.add_column(col, justify="left" if col in ("dataset", "model", "seed figure", "approximation")
                         else "right")
    for r in rows:
        seed = SEED_FIGURES.get(r["model"])
        acc = 100 * r["accuracy"]
        delta = f"{acc - seed[1]:+.2f}" if seed else ""
        style = "green" if seed and acc >= seed[1] else ("red" if seed else None)
        table.add_row(r["dataset"], r["model"], f"{acc:.2f}", f"{100 * r['precision_macro']:.2f}",
                      f"{100 * r['recall_macro']:.2f}", f"{100 * r['f1_macro']:.2f}",
                      f"{r['train_seconds']:.0f}", str(r.get("epochs") or ""), str(r["num_workers"]),
                      f"{r['infer_images_per_s']:,.0f}", f"{seed[0]} {seed[1]:.2f}" if seed else "",
                      delta, r.get("approximation") or "", style=style)
    (console or Console()).print(table)


def print_trials(rows: list[dict], console: Console | None = None) -> None:
    """The sweep's trials, best first."""
    table = Table(title="hdr-dist: sweep trials, best validation accuracy first")
    skip = {"trial_id", "best_val_acc", "best_epoch", "epochs", "seconds", "status", "checkpoint"}
    keys = [k for k in (rows[0] if rows else {}) if k not in skip]
    for col in ("trial", *keys, "val acc %", "epochs", "seconds", "status"):
        table.add_column(col, justify="left" if col in ("trial", "status") else "right")
    for r in sorted(rows, key=lambda r: -(r["best_val_acc"] or 0)):
        table.add_row(r["trial_id"], *(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys),
                      f"{100 * r['best_val_acc']:.2f}" if r["best_val_acc"] is not None else "",
                      str(r["epochs"]), f"{r['seconds']:.0f}", r["status"])
    (console or Console()).print(table)
