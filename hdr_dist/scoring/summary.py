"""How a score output ends: metrics over every labelled row, this run's and any resumed
run's alike, the most confident mistakes, summary.json, and the rename that marks it complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads

from hdr_dist.bulk import outputs, reading
from hdr_dist.bulk.driver import ThisRun
from hdr_dist.common import tables
from hdr_dist.common.names import escape
from hdr_dist.imaging import images
from hdr_dist.models.checkpoints import ModelState
from hdr_dist.models.config import TrainConfig
from hdr_dist.scoring.config import ScoreConfig

# The readers whose most confident mistakes the report shows as a grid of their 28x28 crops.
SHOWS_MISTAKES = {"digit"}


def metric_tables(folder: Path, cfg: TrainConfig, dataset: str, reader) -> tuple[dict, dict]:
    """compare's metrics tables over the labelled, scored rows (``reader.scores``: a digit model's metrics,
    per-class and confusion; a field model's field accuracy, character error rate and accuracy by
    length), and the counts of every row."""
    files = outputs.prediction_files(folder)
    columns = ["true_label", "pred", "error", "decision", "text", "width", "height"]
    table = (
        pads.dataset(files, format="parquet", schema=tables.PREDICTION_SCHEMA).to_table(columns=columns)
        if files
        else tables.PREDICTION_SCHEMA.empty_table().select(columns)
    )
    failed = pc.sum(table["error"].is_valid()).as_py() or 0
    scored = table.filter(table["error"].is_null())
    labelled = scored.filter(scored["true_label"].is_valid())
    accepted = pc.sum(pc.equal(table["decision"], "accept")).as_py() or 0
    counts = {
        "images": table.num_rows,
        "scored": scored.num_rows,
        "failed": failed,
        "unlabelled": scored.num_rows - labelled.num_rows,
        "accepted": accepted,
        "accepted_coverage": accepted / max(table.num_rows, 1),
    }
    warnings = {"warnings": reader.warnings(scored, cfg)}
    if labelled.num_rows == 0:
        return {}, counts | warnings
    took = pc.equal(labelled["decision"], "accept").to_numpy(zero_copy_only=False)
    row, found, wrong = reader.scores(labelled, cfg, dataset)
    # The promise a team checks on its own data: the error among the labelled answers accepted.
    measured = {"accepted_error": float(wrong[took].mean()) if took.any() else 0.0}
    return {
        "metrics": [tables.metrics_row(dataset, cfg.model, row, **counts, **measured)]
    } | found, counts | warnings


def mistakes(folder: Path, dataset: str, model: str, max_pixels: int) -> list[dict]:
    """The most confident wrong answers among every labelled row, this run's and any resumed run's,
    each with the 28x28 crop the model saw, read again from its input."""
    columns = ["source", "member", "occurrence", "page", "pages", "true_label", "pred_label", "confidence"]
    table = pads.dataset(
        outputs.prediction_files(folder), format="parquet", schema=tables.PREDICTION_SCHEMA
    ).to_table(columns=columns)
    table = table.filter(
        pc.and_(table["true_label"].is_valid(), pc.not_equal(table["true_label"], table["pred_label"]))
    )
    if table.num_rows == 0:  # pyarrow 25's select_k raises on an empty table
        return []
    wrong = table.take(
        pc.select_k_unstable(table, tables.MISTAKES, [("confidence", "descending")])
    ).to_pylist()
    crops = reading.pages_again(wrong, max_pixels, lambda _, gray: images.to_mnist(gray)[0])
    return [
        {
            "dataset": dataset,
            "model": model,
            "item": r["source"]
            + (f"::{r['member']}" if r["member"] else "")
            + (f" #{r['occurrence'] + 1}" if r["occurrence"] else "")
            + (f" page {r['page'] + 1}/{r['pages']}" if r["pages"] > 1 else ""),
            "true_label": r["true_label"],
            "pred_label": r["pred_label"],
            "confidence": r["confidence"],
            "image": crops[key],
        }
        for r in sorted(wrong, key=lambda r: -r["confidence"])
        if (key := (r["source"], r["member"], r["occurrence"] or 0, r["page"])) in crops
    ]


def finish(
    work: Path, output: Path, state: ModelState, identity: dict, cfg: ScoreConfig, this_run: ThisRun, reader
) -> tuple[dict, dict]:
    """Metrics over all rows (this run's and any resumed ones), summary.json, then the rename.
    Every count comes from the rows written, so an image Ray Data scored twice after a fault,
    but wrote once, counts once."""
    model, history = TrainConfig.from_dict(state.config), state.history
    dataset = escape(Path(cfg.inputs[0]).name) + (f" +{len(cfg.inputs) - 1}" if len(cfg.inputs) > 1 else "")
    results, counts = metric_tables(work / "predictions", model, dataset, reader)
    rates = this_run.rates(counts["images"], "images", 1)
    if results:
        results["metrics"][0] |= {
            "train_seconds": sum(h["seconds"] for h in history),
            "epochs": len(history),
            "device": "gpu" if cfg.use_gpu else "cpu",
            "num_workers": cfg.concurrency,
            "threads_per_worker": cfg.threads,
            "num_nodes": len(this_run.stats.rows_by_node),
            "checkpoint": identity["checkpoint"],
            "infer_images_per_s": rates["images_per_s"],
            "params": state.params,
            "method": f"{model.model} checkpoint, scored by hdr score",
            "approximation": "",
        }
    for name in (
        "metrics",
        "per_class",
        "confusion",
        "mistakes",
        "field_lengths",
    ):  # a resumed run's are stale
        (work / f"{name}.parquet").unlink(missing_ok=True)
    if results and cfg.labelled:
        if reader.kind in SHOWS_MISTAKES:
            results["mistakes"] = mistakes(work / "predictions", dataset, model.model, cfg.max_pixels)
        tables.write_tables(work, results)
    rule = {k: v for k, v in cfg.rule.items() if k != "threshold"}  # the threshold is in the identity
    summary = {
        "inputs_seen": this_run.inputs_seen,
        "skipped_already_scored": this_run.skipped,
        **counts,
        **rates,
        **this_run.notes,
        **rule,
        **identity,
        "temperature": state.temperature,
        "inputs": [escape(os.path.realpath(os.path.expanduser(i))) for i in cfg.inputs],
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    work.rename(output)
    return summary, results
