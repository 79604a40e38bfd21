"""The HTML report: every figure a results folder's tables allow, drawn as PNGs into
``figures/`` and embedded in one self-contained report.html.

It reads only what a run wrote, so the report can be redrawn at any time, on any
machine (``hdr report``); the metrics table comes first, so the answer is the
first thing read.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads

from hdr_dist.common.errors import UserError
from hdr_dist.common.studies import seed_figure
from hdr_dist.common.tables import read_table
from hdr_dist.reports.display import RESULT_COLUMNS, result_cells, trial_cells


def confusion_matrix(rows: list[dict], n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    for r in rows:
        cm[r["true"], r["pred"]] = r["count"]
    return cm


def model_figures(out: Path, model: str, tables: dict) -> list[tuple[Path, str]]:
    """Curves, confusion matrix, per-class bars and mistakes of one model, as far as its tables go."""
    from hdr_dist.reports import plots

    pick = lambda name: [r for r in tables[name] if r["model"] == model]  # noqa: E731 - a one-line filter
    figures = []
    if history := sorted(pick("history"), key=lambda r: r["epoch"]):
        figures.append(
            (
                plots.curves(history, model, out / f"curves_{model}.png"),
                "loss and accuracy per epoch, train and validation; the training figures are taken on "
                "augmented images, with the recipe's label smoothing in the loss",
            )
        )
    if per_class := pick("per_class"):
        labels = [r["label"] for r in sorted(per_class, key=lambda r: r["class"])]
        figures.append(
            (
                plots.confusion(
                    confusion_matrix(pick("confusion"), len(labels)),
                    labels,
                    model,
                    out / f"confusion_{model}.png",
                ),
                "confusion matrix: rows are the true class, colour its share on a log scale",
            )
        )
        figures.append(
            (
                plots.per_class(per_class, model, out / f"per_class_{model}.png"),
                "accuracy per class (002's Table 1)",
            )
        )
    if curve := pick("risk_coverage"):
        path = out / f"risk_coverage_{model}.png"
        figures.append(
            (
                plots.risk_coverage(curve, model, seed_figure(curve[0]["dataset"], model), path),
                "risk-coverage: accept the answers whose calibrated confidence clears a threshold; the "
                "error among them against the share accepted, on the validation and test splits",
            )
        )
    if mistakes := sorted(pick("mistakes"), key=lambda r: -r["confidence"]):
        figures.append(
            (
                plots.mistakes(
                    mistakes,
                    f"{model}: the {len(mistakes)} most confident mistakes",
                    out / f"mistakes_{model}.png",
                ),
                "most confident mistakes: true label → predicted, with the model's confidence",
            )
        )
    return figures


def score_figures(folder: Path, out: Path) -> tuple[list[tuple[Path, str]], dict]:
    """A score output's confidences and its errors by kind, from predictions/."""
    from hdr_dist.reports import plots

    # Column-wise: a score output can hold millions of rows; only failures and mistakes become Python.
    files = sorted((folder / "predictions").glob("*.parquet"))
    if not files:  # nothing was scored: no figure to draw
        return [], dict.fromkeys(("images", "scored", "failed", "labelled", "wrong"), 0)
    table = pads.dataset(files, format="parquet").to_table(
        columns=["confidence", "error", "true_label", "pred_label"]
    )
    ok = pc.is_null(table["error"])
    scored = table.filter(ok)
    labelled = scored.filter(pc.is_valid(scored["true_label"]))
    is_wrong = pc.not_equal(labelled["true_label"], labelled["pred_label"])
    wrong = labelled.filter(is_wrong)
    failed = Counter(e.split(":")[0][:60] for e in table.filter(pc.invert(ok))["error"].to_pylist())
    confused = Counter(
        f"{t} → {p}" for t, p in zip(wrong["true_label"].to_pylist(), wrong["pred_label"].to_pylist())
    )
    shown = labelled if labelled.num_rows else scored
    right = pc.invert(is_wrong).to_numpy(zero_copy_only=False) if labelled.num_rows else None
    figures = [
        (
            plots.confidences(
                shown["confidence"].to_numpy(zero_copy_only=False), right, out / "score_confidence.png"
            ),
            "confidence of each scored image"
            + (", labelled ones split into right and wrong" if labelled.num_rows else ""),
        ),
        (
            plots.errors(dict(failed), dict(confused.most_common(15)), out / "score_errors.png"),
            "errors by kind: inputs that could not be scored, and the commonest wrong labels",
        ),
    ]
    return figures, {
        "images": table.num_rows,
        "scored": scored.num_rows,
        "failed": table.num_rows - scored.num_rows,
        "labelled": labelled.num_rows,
        "wrong": wrong.num_rows,
    }


def embed(path: Path, caption: str, folder: Path) -> str:
    name = path.relative_to(folder).as_posix()
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
        f"<figcaption>{html.escape(caption)} <code>{html.escape(name)}</code></figcaption></figure>"
    )


def html_table(columns: list[str], rows: list[list[str]], styles=None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f'<tr class="{s or ""}">' + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row, s in zip(rows, styles or [None] * len(rows))
    )
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:nth-child(-n+2),th{text-align:left}tr.green td{background:#e8f5e9}tr.red td{background:#fdecea}
figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#555;font-size:13px}code{color:#777}"""


def prepare(folder: Path, has_results: bool) -> Path:
    """``folder/figures``, emptied, once the folder is known to hold results and to take the report."""
    if not folder.is_dir():
        raise UserError(f"RESULTS_DIR {folder}: no such folder")
    if not has_results:
        raise UserError(
            f"RESULTS_DIR {folder}: holds no results of compare, tune or score "
            "(metrics.parquet, trials.parquet or summary.json)"
        )
    out = folder / "figures"
    try:
        out.mkdir(exist_ok=True)
        (folder / ".report.html.tmp").write_text("")
    except OSError as e:
        raise UserError(f"RESULTS_DIR {folder}: cannot write the report there ({e.strerror or e})") from None
    for old in out.glob("*.png"):  # a figure the results no longer support must not linger
        old.unlink()
    return out


def results_section(metrics: list[dict], scored: bool, folder: Path, out: Path, lengths=()) -> list[str]:
    """The metrics table, the comparison with the seeds, calibration, and (with ``lengths``, the
    field_lengths table) field accuracy by length."""
    from hdr_dist.reports import plots

    cells = [result_cells(r) for r in metrics]
    where = "the labelled images scored" if scored else "the test split"
    parts = [
        f"<h2>Results on {where}</h2>",
        html_table(list(RESULT_COLUMNS), [c for c, _ in cells], [s for _, s in cells]),
        "<p>Green: at or above the seed study's figure for that model; red: below it.</p>",
        embed(
            plots.comparison(metrics, out / "comparison.png"),
            "every model's test accuracy beside the seeds' reported figures",
            folder,
        ),
    ]
    if calibrated := [r for r in metrics if r.get("temperature") is not None]:
        parts.append(
            embed(
                plots.calibration_errors(calibrated, out / "calibration.png"),
                "expected calibration error (15 bins) on the test split, before and after the "
                "temperature fitted on the validation split",
                folder,
            )
        )
    if lengths:
        # the deep digit models (the calibrated rows that read no fields)
        digits = {
            r["model"]: r["accuracy"]
            for r in metrics
            if r.get("field_accuracy") is None and r.get("temperature") is not None
        }
        parts.append(
            embed(
                plots.by_length(lengths, digits, out / "field_lengths.png"),
                "fields read exactly right, by the number of digits, on the test fields; dotted: a digit "
                "model's per-digit accuracy raised to that length",
                folder,
            )
        )
    return parts


def sweep_section(trials: list[dict], folder: Path, out: Path) -> list[str]:
    from hdr_dist.reports import plots

    columns, cells = trial_cells(trials)
    swept = [c for c in columns[1:-4] if all(isinstance(t[c], (int, float)) for t in trials)]
    parts = [f"<h2>Sweep: {len(trials)} trials</h2>", html_table(columns, cells)]
    if swept:
        parts.append(
            embed(
                plots.hyperparameters(trials, swept, out / "tune_hyperparameters.png"),
                "best validation accuracy against each hyperparameter, one point per trial",
                folder,
            )
        )
    return parts


def scoring_section(folder: Path, out: Path) -> list[str]:
    figures, counts = score_figures(folder, out)
    summary = json.loads((folder / "summary.json").read_text())
    return [
        "<h2>Scoring</h2>",
        html_table(
            ["images", "scored", "failed", "labelled", "wrong", "images/s"],
            [
                [f"{counts[k]:,}" for k in ("images", "scored", "failed", "labelled", "wrong")]
                + [f"{summary.get('images_per_s', 0):,.0f}"]
            ],
        ),
        *(embed(path, caption, folder) for path, caption in figures),
    ]


def write_report(folder: Path | str) -> Path:
    """Every figure the results in ``folder`` allow, as PNGs in ``folder/figures``, and report.html
    with each one embedded; the metrics table comes first, so the answer is the first thing read."""
    folder = Path(folder).expanduser().resolve()
    tables = {
        name: read_table(folder, name)
        for name in (
            "metrics",
            "per_class",
            "confusion",
            "history",
            "mistakes",
            "trials",
            "risk_coverage",
            "field_lengths",
        )
    }
    scored = (folder / "summary.json").is_file()
    out = prepare(folder, bool(tables["metrics"] or tables["trials"] or scored))
    parts = [
        f"<h1>hdr-dist report: {html.escape(folder.name)}</h1>",
        f"<p>{html.escape(str(folder))}, drawn {time.strftime('%Y-%m-%d %H:%M')}</p>",
    ]
    if tables["metrics"]:
        parts += results_section(tables["metrics"], scored, folder, out, tables["field_lengths"])
    if tables["trials"]:
        parts += sweep_section(tables["trials"], folder, out)
    if scored:
        parts += scoring_section(folder, out)
    names = list(
        dict.fromkeys(r["model"] for name in ("metrics", "history", "mistakes") for r in tables[name])
    )
    for model in names:
        figures = model_figures(out, model, tables)
        if figures:
            parts += [f"<h2>{html.escape(model)}</h2>", *(embed(p, c, folder) for p, c in figures)]
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>hdr-dist report: {html.escape(folder.name)}"
        f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    tmp = folder / ".report.html.tmp"
    tmp.write_text(page)
    tmp.replace(folder / "report.html")
    return folder / "report.html"
