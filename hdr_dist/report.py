"""What a run leaves behind: the Parquet tables, the table printed beside the seeds, and
``hdr report``'s figures and report.html drawn from those tables.

The Parquet schemas here are the contract later jobs read (scoring, reports),
so each table is built in exactly one function. The report reads only what a
run wrote, so ``hdr report RESULTS_DIR`` redraws it at any time, on any machine.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from hdr_dist.cli import Parser, run_job
from hdr_dist.errors import UserError

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
MISTAKES = 32  # the most confident wrong predictions kept per model, for the report's grid
SCHEMAS = {"mistakes": pa.schema([
    ("dataset", pa.string()), ("model", pa.string()), ("item", pa.string()), ("true_label", pa.string()),
    ("pred_label", pa.string()), ("confidence", pa.float32()), ("image", pa.binary(28 * 28))])}


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


def mistake_rows(dataset: str, model: str, scores: dict, x, y, labels: list[str]) -> list[dict]:
    """The test split's most confident wrong predictions, with their images (``scores`` from
    ``evaluate.evaluate_state``, which keeps the probabilities)."""
    probs, pred = scores["probs"], scores["pred"]
    wrong = np.flatnonzero(pred != y)
    top = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")[:MISTAKES]]
    return [{"dataset": dataset, "model": model, "item": f"test #{i}", "true_label": labels[y[i]],
             "pred_label": labels[pred[i]], "confidence": float(probs[i, pred[i]]), "image": x[i].tobytes()}
            for i in top]


def write_tables(folder: Path, tables: dict[str, list[dict]]) -> None:
    """One Parquet file per table; each replaced whole (write to a temporary name, then rename)."""
    for name, rows in tables.items():
        tmp = folder / f".{name}.parquet.tmp"
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS.get(name)), tmp)
        tmp.replace(folder / f"{name}.parquet")


RESULT_COLUMNS = ("dataset", "model", "accuracy %", "P macro", "R macro", "F1 macro", "train s", "epochs",
                  "workers", "infer img/s", "seed figure", "Δ pp", "approximation")
TEXT_COLUMNS = ("dataset", "model", "seed figure", "approximation", "trial", "status")


def result_cells(r: dict) -> tuple[list[str], str | None]:
    """One metrics row as the results table shows it, and whether it beats its seed's figure
    ("green"), falls short ("red") or has none (None)."""
    seed = SEED_FIGURES.get(r["model"])
    acc = 100 * r["accuracy"]
    cells = [r["dataset"], r["model"], f"{acc:.2f}", f"{100 * r['precision_macro']:.2f}",
             f"{100 * r['recall_macro']:.2f}", f"{100 * r['f1_macro']:.2f}", f"{r['train_seconds']:.0f}",
             str(r.get("epochs") or ""), str(r["num_workers"]), f"{r['infer_images_per_s']:,.0f}",
             f"{seed[0]} {seed[1]:.2f}" if seed else "", f"{acc - seed[1]:+.2f}" if seed else "",
             r.get("approximation") or ""]
    return cells, ("green" if acc >= seed[1] else "red") if seed else None


def trial_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The sweep's trials as a table, best first: its columns and rows."""
    skip = {"trial_id", "best_val_acc", "best_epoch", "epochs", "seconds", "status", "checkpoint"}
    keys = [k for k in (rows[0] if rows else {}) if k not in skip]
    cells = [[r["trial_id"], *(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys),
              f"{100 * r['best_val_acc']:.2f}" if r["best_val_acc"] is not None else "",
              str(r["epochs"]), f"{r['seconds']:.0f}", r["status"]]
             for r in sorted(rows, key=lambda r: -(r["best_val_acc"] or 0))]
    return ["trial", *keys, "val acc %", "epochs", "seconds", "status"], cells


def print_table(rows: list[dict], console: Console | None = None) -> None:
    table = Table(title="hdr-dist: test-split results beside the seeds' figures")
    for col in RESULT_COLUMNS:
        table.add_column(col, justify="left" if col in TEXT_COLUMNS else "right")
    for r in rows:
        cells, style = result_cells(r)
        table.add_row(*cells, style=style)
    (console or Console()).print(table)


def print_trials(rows: list[dict], console: Console | None = None) -> None:
    """The sweep's trials, best first."""
    table = Table(title="hdr-dist: sweep trials, best validation accuracy first")
    columns, cells = trial_cells(rows)
    for col in columns:
        table.add_column(col, justify="left" if col in TEXT_COLUMNS else "right")
    for row in cells:
        table.add_row(*row)
    (console or Console()).print(table)


# ---- the report: figures and one self-contained report.html ------------------------------------

def read_table(folder: Path, name: str) -> list[dict]:
    path = folder / f"{name}.parquet"
    return pq.read_table(path).to_pylist() if path.is_file() else []


def confusion_matrix(rows: list[dict], n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    for r in rows:
        cm[r["true"], r["pred"]] = r["count"]
    return cm


def model_figures(out: Path, model: str, tables: dict) -> list[tuple[Path, str]]:
    """Curves, confusion matrix, per-class bars and mistakes of one model, as far as its tables go."""
    from hdr_dist import plots

    pick = lambda name: [r for r in tables[name] if r["model"] == model]  # noqa: E731
    figures = []
    if history := sorted(pick("history"), key=lambda r: r["epoch"]):
        figures.append((plots.curves(history, model, out / f"curves_{model}.png"),
                        "loss and accuracy per epoch, train and validation; the training figures are taken on "
                        "augmented images, with the recipe's label smoothing in the loss"))
    if per_class := pick("per_class"):
        labels = [r["label"] for r in sorted(per_class, key=lambda r: r["class"])]
        figures.append((plots.confusion(confusion_matrix(pick("confusion"), len(labels)), labels, model,
                                        out / f"confusion_{model}.png"),
                        "confusion matrix: rows are the true class, colour its share on a log scale"))
        figures.append((plots.per_class(per_class, model, out / f"per_class_{model}.png"),
                        "accuracy per class (002's Table 1)"))
    if mistakes := sorted(pick("mistakes"), key=lambda r: -r["confidence"]):
        figures.append((plots.mistakes(mistakes, f"{model}: the {len(mistakes)} most confident mistakes",
                                       out / f"mistakes_{model}.png"),
                        "most confident mistakes: true label → predicted, with the model's confidence"))
    return figures


def score_figures(folder: Path, out: Path) -> tuple[list[tuple[Path, str]], dict]:
    """A score output's confidences and its errors by kind, from predictions/."""
    from hdr_dist import plots

    import pyarrow.compute as pc

    # Column-wise: a score output can hold millions of rows; only failures and mistakes become Python.
    files = sorted((folder / "predictions").glob("*.parquet"))
    if not files:  # nothing was scored: no figure to draw
        return [], dict.fromkeys(("images", "scored", "failed", "labelled", "wrong"), 0)
    table = pads.dataset(files, format="parquet").to_table(columns=["confidence", "error", "true_label", "pred_label"])
    ok = pc.is_null(table["error"])
    scored = table.filter(ok)
    labelled = scored.filter(pc.is_valid(scored["true_label"]))
    is_wrong = pc.not_equal(labelled["true_label"], labelled["pred_label"])
    wrong = labelled.filter(is_wrong)
    failed = Counter(e.split(":")[0][:60] for e in table.filter(pc.invert(ok))["error"].to_pylist())
    confused = Counter(f"{t} → {p}" for t, p in zip(wrong["true_label"].to_pylist(), wrong["pred_label"].to_pylist()))
    shown = labelled if labelled.num_rows else scored
    right = pc.invert(is_wrong).to_numpy(zero_copy_only=False) if labelled.num_rows else None
    figures = [(plots.confidences(shown["confidence"].to_numpy(zero_copy_only=False), right,
                                  out / "score_confidence.png"),
                "confidence of each scored image" + (", labelled ones split into right and wrong"
                                                     if labelled.num_rows else "")),
               (plots.errors(dict(failed), dict(confused.most_common(15)), out / "score_errors.png"),
                "errors by kind: inputs that could not be scored, and the commonest wrong labels")]
    return figures, {"images": table.num_rows, "scored": scored.num_rows, "failed": table.num_rows - scored.num_rows,
                     "labelled": labelled.num_rows, "wrong": wrong.num_rows}


def embed(path: Path, caption: str, folder: Path) -> str:
    name = path.relative_to(folder).as_posix()
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(caption)} <code>{html.escape(name)}</code></figcaption></figure>")


def html_table(columns: list[str], rows: list[list[str]], styles=None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(f'<tr class="{s or ""}">' + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                   for row, s in zip(rows, styles or [None] * len(rows)))
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:14px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:nth-child(-n+2),th{text-align:left}tr.green td{background:#e8f5e9}tr.red td{background:#fdecea}
figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#555;font-size:13px}code{color:#777}"""


def write_report(folder: Path | str) -> Path:
    """Every figure the results in ``folder`` allow, as PNGs in ``folder/figures``, and report.html
    with each one embedded; the metrics table comes first, so the answer is the first thing read."""
    from hdr_dist import plots

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"RESULTS_DIR {folder}: no such folder")
    tables = {name: read_table(folder, name) for name in ("metrics", "per_class", "confusion", "history",
                                                          "mistakes", "trials")}
    summary_file = folder / "summary.json"
    if not (tables["metrics"] or tables["trials"] or summary_file.is_file()):
        raise UserError(f"RESULTS_DIR {folder}: holds no results of compare, tune or score "
                        "(metrics.parquet, trials.parquet or summary.json)")
    out = folder / "figures"
    try:
        out.mkdir(exist_ok=True)
        (folder / ".report.html.tmp").write_text("")
    except OSError as e:
        raise UserError(f"RESULTS_DIR {folder}: cannot write the report there ({e.strerror or e})") from None
    for old in out.glob("*.png"):  # a figure the results no longer support must not linger
        old.unlink()
    parts = [f"<h1>hdr-dist report: {html.escape(folder.name)}</h1>",
             f"<p>{html.escape(str(folder))}, drawn {time.strftime('%Y-%m-%d %H:%M')}</p>"]
    metrics = tables["metrics"]
    if metrics:
        cells = [result_cells(r) for r in metrics]
        where = "the labelled images scored" if summary_file.is_file() else "the test split"
        parts += [f"<h2>Results on {where}</h2>",
                  html_table(list(RESULT_COLUMNS), [c for c, _ in cells], [s for _, s in cells]),
                  "<p>Green: at or above the seed study's figure for that model; red: below it.</p>",
                  embed(plots.comparison(metrics, SEED_FIGURES, out / "comparison.png"),
                        "every model's test accuracy beside the seeds' reported figures", folder)]
    if trials := tables["trials"]:
        columns, cells = trial_cells(trials)
        swept = [c for c in columns[1:-4] if all(isinstance(t[c], (int, float)) for t in trials)]
        parts += [f"<h2>Sweep: {len(trials)} trials</h2>", html_table(columns, cells)]
        if swept:
            parts.append(embed(plots.hyperparameters(trials, swept, out / "tune_hyperparameters.png"),
                               "best validation accuracy against each hyperparameter, one point per trial", folder))
    if summary_file.is_file():
        figures, counts = score_figures(folder, out)
        summary = json.loads(summary_file.read_text())
        parts += ["<h2>Scoring</h2>",
                  html_table(["images", "scored", "failed", "labelled", "wrong", "images/s"],
                             [[f"{counts[k]:,}" for k in ("images", "scored", "failed", "labelled", "wrong")]
                              + [f"{summary.get('images_per_s', 0):,.0f}"]])]
        parts += [embed(path, caption, folder) for path, caption in figures]
    names = list(dict.fromkeys(r["model"] for name in ("metrics", "history", "mistakes") for r in tables[name]))
    for model in names:
        figures = model_figures(out, model, tables)
        if figures:
            parts += [f"<h2>{html.escape(model)}</h2>", *(embed(p, c, folder) for p, c in figures)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>hdr-dist report: {html.escape(folder.name)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    target = folder / "report.html"
    tmp = folder / ".report.html.tmp"
    tmp.write_text(page)
    tmp.replace(target)
    return target


def parser(prog: str = "hdr report") -> Parser:
    p = Parser(prog=prog, description="Draw the figures of a compare, tune or score output folder and write "
                                      "RESULTS_DIR/report.html with them embedded.")
    p.add_argument("results", metavar="RESULTS_DIR", help="a compare, tune or score --output folder")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    path = write_report(args.results)
    console.print(f"report: {path} ({len(list((path.parent / 'figures').glob('*.png')))} figures)")
    return 0


def main(argv=None, prog: str = "hdr report") -> int:
    args = parser(prog).parse_args(argv)
    return run_job(run, args, prog, "run the same command again")
