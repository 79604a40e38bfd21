"""How a score output ends: metrics over every labelled row, this run's and any resumed
run's alike, the most confident mistakes, summary.json, and the rename that marks it complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads

from hdr_dist import ctc, evaluate, images, outputs, reading, tables
from hdr_dist.config import TrainConfig
from hdr_dist.names import escape


FIELD_ASPECT = 2.5  # an image this many times as wide as high is a field of several digits, not one


def metric_tables(folder: Path, cfg: TrainConfig, dataset: str) -> tuple[dict, dict]:
    """compare's metrics tables over the labelled, scored rows: a digit model's metrics, per-class and
    confusion; a field model's field accuracy, character error rate and accuracy by length."""
    files = outputs.prediction_files(folder)
    columns = ["true_label", "pred", "error", "decision", "text", "width", "height"]
    table = (pads.dataset(files, format="parquet", schema=tables.PREDICTION_SCHEMA).to_table(columns=columns)
             if files else tables.PREDICTION_SCHEMA.empty_table().select(columns))
    failed = pc.sum(table["error"].is_valid()).as_py() or 0
    scored = table.filter(table["error"].is_null())
    labelled = scored.filter(scored["true_label"].is_valid())
    accepted = pc.sum(pc.equal(table["decision"], "accept")).as_py() or 0
    counts = {"images": table.num_rows, "scored": scored.num_rows, "failed": failed,
              "unlabelled": scored.num_rows - labelled.num_rows, "accepted": accepted,
              "accepted_coverage": accepted / max(table.num_rows, 1)}
    warnings = {"warnings": field_warnings(scored, cfg)}
    if labelled.num_rows == 0:
        return {}, counts | warnings
    took = pc.equal(labelled["decision"], "accept").to_numpy(zero_copy_only=False)
    if cfg.reads_fields:
        truth, read = labelled["true_label"].to_pylist(), labelled["text"].to_pylist()
        scores = ctc.field_metrics(truth, read)
        wrong = np.array([t != r for t, r in zip(truth, read)])
        row = {"accuracy": scores["char_accuracy"], "field_accuracy": scores["field_accuracy"], "cer": scores["cer"]}
        found = {"field_lengths": tables.length_rows(dataset, cfg.model, scores["by_length"])}
    else:
        index = {label: i for i, label in enumerate(cfg.labels)}
        y_true = np.array([index[t] for t in labelled["true_label"].to_pylist()])
        y_pred = labelled["pred"].to_numpy()
        row = evaluate.metrics(y_true, y_pred, cfg.num_classes)
        wrong = y_true != y_pred
        found = tables.model_tables(dataset, cfg.model, list(cfg.labels), row)
    # The promise a team checks on its own data: the error among the labelled answers accepted.
    measured = {"accepted_error": float(wrong[took].mean()) if took.any() else 0.0}
    return {"metrics": [tables.metrics_row(dataset, cfg.model, row, **counts, **measured)]} | found, counts | warnings


def field_warnings(scored, cfg: TrainConfig) -> list[str]:
    """A digit model reads one digit per image, so images shaped like fields of several digits get one
    (wrong) answer each; say so when most of the scored images are that shape."""
    if cfg.reads_fields or scored.num_rows == 0:
        return []
    wide = int(np.sum(scored["width"].to_numpy(zero_copy_only=False)
                      >= FIELD_ASPECT * scored["height"].to_numpy(zero_copy_only=False)))
    if 2 * wide <= scored.num_rows:
        return []
    return [f"{wide:,} of the {scored.num_rows:,} scored images are at least {FIELD_ASPECT:g} times as wide as high: "
            f"they look like fields of several digits, which digit model {cfg.model} reads as one digit each; "
            "score them with a field model (compare --models crnn)"]


def mistakes(folder: Path, dataset: str, model: str, max_pixels: int) -> list[dict]:
    """The most confident wrong answers among every labelled row, this run's and any resumed run's,
    each with the 28x28 crop the model saw, read again from its input."""
    columns = ["source", "member", "occurrence", "page", "pages", "true_label", "pred_label", "confidence"]
    table = pads.dataset(outputs.prediction_files(folder), format="parquet",
                         schema=tables.PREDICTION_SCHEMA).to_table(columns=columns)
    table = table.filter(pc.and_(table["true_label"].is_valid(), pc.not_equal(table["true_label"], table["pred_label"])))
    wrong = table.take(pc.select_k_unstable(table, tables.MISTAKES, [("confidence", "descending")])).to_pylist()
    crops = reading.pages_again(wrong, max_pixels, lambda gray: images.to_mnist(gray)[0])
    return [{"dataset": dataset, "model": model, "item": r["source"] + (f"::{r['member']}" if r["member"] else "")
             + (f" #{r['occurrence'] + 1}" if r["occurrence"] else "")
             + (f" page {r['page'] + 1}/{r['pages']}" if r["pages"] > 1 else ""),
             "true_label": r["true_label"], "pred_label": r["pred_label"], "confidence": r["confidence"],
             "image": crops[key]} for r in sorted(wrong, key=lambda r: -r["confidence"])
            if (key := (r["source"], r["member"], r["occurrence"] or 0, r["page"])) in crops]


def finish(work: Path, output: Path, state: dict, checkpoint: str, args, this_run: dict,
           plan: dict) -> tuple[dict, dict]:
    """Metrics over all rows (this run's and any resumed ones), summary.json, then the rename.
    Every count comes from the rows written, so an image Ray Data scored twice after a fault,
    but wrote once, counts once."""
    cfg, history = TrainConfig.from_dict(state["config"]), state["history"]
    dataset = escape(Path(args.inputs[0]).name) + (f" +{len(args.inputs) - 1}" if len(args.inputs) > 1 else "")
    results, counts = metric_tables(work / "predictions", cfg, dataset)
    images = counts["images"] - this_run.pop("rows_before")
    seconds, startup = this_run.pop("seconds"), this_run.pop("startup")
    rates = {"images_this_run": images, "seconds": round(seconds, 3),
             "images_per_s": round(images / max(seconds, 1e-9), 1), "startup_seconds": round(startup, 3),
             "steady_images_per_s": round(images / max(seconds - startup, 1e-9), 1)}
    if results:
        results["metrics"][0] |= {
            "train_seconds": sum(h["seconds"] for h in history), "epochs": len(history),
            "device": "gpu" if plan["use_gpu"] else "cpu", "num_workers": plan["concurrency"],
            "num_nodes": len(this_run["images_by_node"]), "checkpoint": checkpoint,
            "infer_images_per_s": rates["images_per_s"], "params": state["params"],
            "method": f"{cfg.model} checkpoint, scored by hdr score", "approximation": ""}
    for name in ("metrics", "per_class", "confusion", "mistakes", "field_lengths"):  # a resumed run's are stale
        (work / f"{name}.parquet").unlink(missing_ok=True)
    if results and (args.labels or args.labels_from):
        if not cfg.reads_fields:
            results["mistakes"] = mistakes(work / "predictions", dataset, cfg.model, args.max_pixels)
        tables.write_tables(work, results)
    summary = {"inputs_seen": this_run.pop("inputs_seen"), "skipped_already_scored": this_run.pop("skipped"),
               **counts, **rates, **this_run, **state["identity"], "temperature": state["temperature"],
               "inputs": [escape(os.path.realpath(os.path.expanduser(i))) for i in args.inputs]}
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    work.rename(output)
    return summary, results
