"""A run's results as rows of text: the table printed beside the seed studies' figures, and a
sweep's trials. The terminal (rich) and the HTML report show the same cells.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from hdr_dist.common.studies import seed_figure
from hdr_dist.inference.calibration import ERROR_TARGETS

# Precision and recall (macro and weighted) are in metrics.parquet; the table keeps F1, to leave room for
# what a whole field costs.
RESULT_COLUMNS = (
    "dataset",
    "model",
    "accuracy %",
    "F1 macro",
    "field acc %",
    "5-digit field %",
    "train s",
    "epochs",
    "workers × threads",
    "infer img/s",
    "ECE % raw → calibrated",
    "seed figure",
    "Δ pp",
    "approximation",
)
TEXT_COLUMNS = ("dataset", "model", "seed figure", "approximation", "trial", "status")


def percent(value) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def workers_cell(r: dict) -> str:
    """Workers x torch threads each; results from before threads were recorded show the workers alone."""
    threads = r.get("threads_per_worker")
    return f"{r['num_workers']}" + (f" × {threads}" if threads else "")


def result_cells(r: dict) -> tuple[list[str], str | None]:
    """One metrics row as the results table shows it, and whether it beats its seed's figure
    ("green"), falls short ("red") or has none (None).

    A field model's accuracy is per character, and its field accuracies are measured (fields of
    1 to 12 digits; 5-digit scans). For a digit model the 5-digit figure is what reading five
    digits one by one would give, its accuracy to the fifth power, marked ≈.
    """
    figure = seed_figure(r["dataset"], r["model"])
    acc = 100 * r["accuracy"]
    five = percent(r["field_accuracy_5"]) if r.get("field_accuracy_5") is not None else f"≈{acc**5 / 1e8:.2f}"
    cells = [
        r["dataset"],
        r["model"],
        f"{acc:.2f}",
        percent(r.get("f1_macro")),
        percent(r.get("field_accuracy")),
        five,
        f"{r['train_seconds']:.0f}",
        str(r.get("epochs") or ""),
        workers_cell(r),
        f"{r['infer_images_per_s']:,.0f}",
        f"{100 * r['ece_before']:.2f} → {100 * r['ece_after']:.2f}" if r.get("ece_after") is not None else "",
        f"{figure[0]} {figure[1]:.2f}" if figure else "",
        f"{acc - figure[1]:+.2f}" if figure else "",
        r.get("approximation") or "",
    ]
    return cells, ("green" if acc >= figure[1] else "red") if figure else None


def trial_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The sweep's trials as a table, best first: its columns and rows."""
    skip = {"trial_id", "best_val_acc", "best_epoch", "epochs", "seconds", "status", "checkpoint"}
    keys = [k for k in (rows[0] if rows else {}) if k not in skip]
    cells = [
        [
            r["trial_id"],
            *(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys),
            f"{100 * r['best_val_acc']:.2f}" if r["best_val_acc"] is not None else "",
            str(r["epochs"]),
            f"{r['seconds']:.0f}",
            r["status"],
        ]
        for r in sorted(rows, key=lambda r: -(r["best_val_acc"] or 0))
    ]
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


def calibration_line(row: dict) -> str:
    """A deep model's calibration and what its confidence lets one accept, on one line."""
    targets = ", ".join(
        f"{100 * row[f'coverage_at_{t:g}']:.1f} % at {100 * t:g} % error "
        f"(test error {100 * row[f'test_error_at_{t:g}']:.2f} %)"
        for t in ERROR_TARGETS
    )
    return (
        f"[{row['model']}] temperature {row['temperature']:.3f}: test ECE {100 * row['ece_before']:.2f} % -> "
        f"{100 * row['ece_after']:.2f} %; accepts {targets}; thresholds from the validation curve"
    )
