"""The report's figures: one function per kind, each drawing one PNG from rows of a results table.

matplotlib's Agg canvas draws them, without pyplot, so they render the same on a
laptop, a cluster's head node or CI, with no display, and set no backend for the process.
Each function takes plain rows (as ``report`` reads them from Parquet) and the path to
write, and returns that path.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from hdr_dist.common.studies import seed_figure

DPI = 110
OURS, SEED, WRONG, RIGHT = "#1f77b4", "#bbbbbb", "#d62728", "#2ca02c"


def figure(*grid, figsize, **kwargs):
    """A figure and its axes, drawn by matplotlib's Agg canvas without pyplot: no backend to choose,
    and no global state (no figure to close), so the library sets nothing for the process."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def curves(history: list[dict], model: str, path: Path) -> Path:
    """Loss and accuracy per epoch, train beside validation (the seeds' Figures 3-6)."""
    epochs = [h["epoch"] for h in history]
    fig, (loss, acc) = figure(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((loss, "loss", "loss"), (acc, "acc", "accuracy %")):
        scale = 100 if key == "acc" else 1
        ax.plot(epochs, [scale * h[f"train_{key}"] for h in history], "o-", label="train")
        ax.plot(epochs, [scale * h[f"val_{key}"] for h in history], "s-", label="validation")
        ax.set(xlabel="epoch", ylabel=label, title=f"{model}: {label}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    best = max(history, key=lambda h: h["val_acc"])
    acc.annotate(
        f"best {100 * best['val_acc']:.2f} %",
        (best["epoch"], 100 * best["val_acc"]),
        textcoords="offset points",
        xytext=(0, -18),
        ha="center",
        fontsize=8,
    )
    return save(fig, path)


def confusion(matrix: np.ndarray, labels: list[str], model: str, path: Path) -> Path:
    """Rows are true classes, coloured by the share of the row, on a log scale so that a handful
    of confusions among thousands still shows. Counts are written in when there are few classes."""
    n = len(labels)
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    side = max(5.0, 0.24 * n + 2)
    fig, ax = figure(figsize=(side + 1.2, side))
    shown = np.where(share > 0, share, np.nan)
    im = ax.imshow(
        shown,
        cmap="viridis",
        norm=LogNorm(vmin=max(1e-4, np.nanmin(shown) if np.isfinite(shown).any() else 1e-4), vmax=1),
    )
    ax.set_xticks(range(n), labels, fontsize=9 if n <= 20 else 7)
    ax.set_yticks(range(n), labels, fontsize=9 if n <= 20 else 7)
    ax.set(
        xlabel="predicted", ylabel="true", title=f"{model}: confusion matrix ({int(matrix.sum()):,} images)"
    )
    if n <= 15:
        for t in range(n):
            for p in range(n):
                if matrix[t, p]:
                    ax.text(
                        p,
                        t,
                        f"{matrix[t, p]:,}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if share[t, p] > 0.3 else "white",
                    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return save(fig, path)


def per_class(rows: list[dict], model: str, path: Path) -> Path:
    """Each class's accuracy (its recall), with the model's mean; 002's Table 1 as a chart."""
    return save(per_class_figure(rows, model), path)


def per_class_figure(rows: list[dict], model: str):
    rows = sorted(rows, key=lambda r: r["class"])
    acc = np.array([100 * r["accuracy"] for r in rows])
    fig, ax = figure(figsize=(max(6.0, 0.28 * len(rows) + 2), 3.6))
    colors = [WRONG if a < acc.mean() - acc.std() else OURS for a in acc]
    ax.bar(range(len(rows)), acc, color=colors)
    ax.axhline(acc.mean(), color="black", lw=1, ls="--")
    # Zoomed so that 99.4 against 99.9 shows, and 85 against 94 too; accuracy stops at 100 %.
    bottom = max(0.0, acc.min() - (100 - acc.min()) - 0.5)
    ax.set_ylim(bottom, 100)
    if len(rows) <= 15:
        for i, a in enumerate(acc):  # inside the bar's top (the axis stops at 100 %), above a short bar
            inside = a - bottom > 0.25 * (100 - bottom)
            ax.text(
                i,
                a,
                f"{a:.2f}",
                ha="center",
                va="top" if inside else "bottom",
                fontsize=7,
                color="white" if inside else "black",
                rotation=90,
            )
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], fontsize=9 if len(rows) <= 20 else 8)
    ax.set(
        xlabel="class",
        ylabel="accuracy %",
        title=f"{model}: accuracy per class (dashed: mean {acc.mean():.2f} %; red: over 1 sd below it)",
    )
    ax.grid(axis="y", alpha=0.3)
    return fig


def comparison(rows: list[dict], path: Path) -> Path:
    """Every model's test accuracy beside the figure its seed study reported for it."""
    return save(comparison_figure(rows), path)


def comparison_figure(rows: list[dict]):
    rows = sorted(rows, key=lambda r: r["accuracy"])
    fig, ax = figure(figsize=(8, 0.55 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ours = [100 * r["accuracy"] for r in rows]
    seeds = [seed_figure(r["dataset"], r["model"]) for r in rows]
    theirs = [s[1] if s else np.nan for s in seeds]
    ax.barh(y + 0.2, ours, 0.4, color=OURS, label="hdr-dist (test split)")
    ax.barh(y - 0.2, theirs, 0.4, color=SEED, label="seed study's figure")
    for i, (a, b) in enumerate(zip(ours, theirs)):  # inside the bars' ends: the axis stops at 100 %
        ax.text(a, i + 0.2, f"{a:.2f} ", va="center", ha="right", fontsize=8, color="white")
        if not math.isnan(b):
            ax.text(
                b, i - 0.2, f"{b:.2f} ({seeds[i][0]}) ", va="center", ha="right", fontsize=7, color="#333333"
            )
    ax.set_yticks(y, [f"{r['model']} ({r['dataset']})" for r in rows])
    low = min(v for v in ours + theirs if not math.isnan(v))
    ax.set_xlim(max(0.0, low - 5), 100)
    ax.set_xlabel("accuracy %")
    ax.set_title("test accuracy beside the seeds' reported figures", pad=22)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def mistakes(rows: list[dict], title: str, path: Path, columns: int = 8) -> Path:
    """The most confident wrong predictions, each image with its true and predicted label."""
    count = len(rows)
    lines = max(1, math.ceil(count / columns))
    fig, axes = figure(lines, columns, squeeze=False, figsize=(1.45 * columns, 1.75 * lines + 0.4))
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, rows):
        ax.imshow(np.frombuffer(r["image"], np.uint8).reshape(28, 28), cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(
            f"true {r['true_label']} → {r['pred_label']}\n{100 * r['confidence']:.1f} %",
            fontsize=8,
            color=WRONG,
        )
    fig.suptitle(title if count else f"{title}: none", fontsize=10)
    return save(fig, path)


def hyperparameters(trials: list[dict], params: list[str], path: Path) -> Path:
    """Validation accuracy against each swept setting, one point per trial; the best one ringed."""
    scored = [t for t in trials if t["best_val_acc"] is not None]
    cols = min(3, len(params))
    lines = math.ceil(len(params) / cols)
    fig, axes = figure(lines, cols, squeeze=False, figsize=(4.2 * cols, 3.3 * lines))
    best = max(scored, key=lambda t: t["best_val_acc"]) if scored else None
    for ax in axes.flat[len(params) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, params):
        for done, color, label in ((True, OURS, "ran every epoch"), (False, SEED, "stopped early by ASHA")):
            pts = [t for t in scored if (t["status"] == "completed") == done]
            ax.scatter(
                [t[name] for t in pts],
                [100 * t["best_val_acc"] for t in pts],
                c=color,
                s=28,
                label=label,
                edgecolors="black",
                linewidths=0.4,
            )
        if best:
            ax.scatter(
                [best[name]],
                [100 * best["best_val_acc"]],
                s=160,
                facecolors="none",
                edgecolors=WRONG,
                linewidths=1.5,
                label="best",
            )
        if name in ("lr", "weight_decay"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^-3 ... labels would run together
        ax.set(xlabel=name, ylabel="best validation accuracy %")
        ax.grid(alpha=0.3)
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper right", fontsize=8)
    fig.suptitle(f"sweep: {len(scored)} trials", fontsize=11)
    return save(fig, path)


def confidences(scored: list[float], right: list[bool] | None, path: Path) -> Path:
    """How sure the model was of each image it scored; split into right and wrong when labels are known."""
    fig, ax = figure(figsize=(7, 3.6))
    bins = np.linspace(0, 1, 41)
    values = np.asarray(scored, dtype=float)
    if right is None:
        ax.hist(values, bins=bins, color=OURS, label="all scored images")
    else:
        ok = np.asarray(right, dtype=bool)
        ax.hist(
            [values[ok], values[~ok]],
            bins=bins,
            stacked=True,
            color=[RIGHT, WRONG],
            label=[f"right ({ok.sum():,})", f"wrong ({(~ok).sum():,})"],
        )
    ax.set_yscale("log")
    ax.set(
        xlabel="confidence (top class probability)",
        ylabel="images (log scale)",
        title=f"confidence of {len(values):,} scored images",
    )
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return save(fig, path)


def errors(failed: dict[str, int], confused: dict[str, int], path: Path) -> Path:
    """What went wrong, by kind: inputs that could not be scored, and the commonest wrong labels."""
    fig, axes = figure(1, 2, figsize=(12, max(3.0, 0.32 * max(len(failed), len(confused), 4) + 1.2)))
    for ax, counts, title, color in (
        (axes[0], failed, "inputs not scored, by error", SEED),
        (axes[1], confused, "wrong predictions, true → predicted", WRONG),
    ):
        items = sorted(counts.items(), key=lambda kv: kv[1])
        if items:
            ax.barh(range(len(items)), [v for _, v in items], color=color)
            ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=8)
            for i, (_, v) in enumerate(items):
                ax.text(v, i, f" {v:,}", va="center", fontsize=8)
        else:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
        ax.set(title=title, xlabel="images")
        ax.xaxis.get_major_locator().set_params(integer=True)
    return save(fig, path)


def risk_coverage(rows: list[dict], model: str, study: tuple[str, float] | None, path: Path) -> Path:
    """Error among the accepted answers against the share accepted, validation and test; the seed
    study's plain accuracy is the one point it offers: everything accepted."""
    fig, ax = figure(figsize=(6.5, 4))
    for split, style in (("val", "--"), ("test", "-")):
        points = sorted((r["coverage"], r["risk"]) for r in rows if r["split"] == split)
        if points:
            ax.plot(
                [100 * c for c, _ in points],
                [100 * r for _, r in points],
                style,
                label="validation" if split == "val" else "test",
            )
    if study:
        ax.plot(
            [100],
            [100 - study[1]],
            "o",
            color=SEED,
            markeredgecolor="#555555",
            label=f"{study[0]}: {study[1]:.2f} % accuracy, all accepted",
        )
    for target in (1.0, 0.5, 0.1):
        ax.axhline(target, color="#999999", lw=0.6, ls=":")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylim(bottom=0)
    ax.set(
        xlabel="coverage: answers accepted %",
        ylabel="error among the accepted %",
        xlim=(50, 100.5),
        title=f"{model}: risk against coverage (calibrated confidence)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def calibration_errors(rows: list[dict], path: Path) -> Path:
    """Each calibrated model's expected calibration error on the test split, before and after."""
    fig, ax = figure(figsize=(7, 0.5 * len(rows) + 2.2))
    y = np.arange(len(rows))
    before = [100 * r["ece_before"] for r in rows]
    after = [100 * r["ece_after"] for r in rows]
    ax.barh(y + 0.2, before, 0.4, color=SEED, label="softmax (temperature 1)")
    ax.barh(y - 0.2, after, 0.4, color=OURS, label="temperature-scaled")
    for i, (a, b) in enumerate(zip(before, after)):
        ax.text(a, i + 0.2, f" {a:.2f}", va="center", fontsize=8)
        ax.text(b, i - 0.2, f" {b:.2f} (T={rows[i]['temperature']:.2f})", va="center", fontsize=8)
    ax.set_yticks(y, [f"{r['model']} ({r['dataset']})" for r in rows])
    ax.set(
        xlabel="expected calibration error %, test split",
        title="calibration before and after temperature scaling",
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def by_length(rows: list[dict], digit_models: dict[str, float], path: Path) -> Path:
    """Field accuracy against the number of digits, for each field reader, beside what each digit
    model's accuracy raised to that length gives (its digits read one by one, all right)."""
    fig, ax = figure(figsize=(7, 4))
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted((r["length"], r["field_accuracy"]) for r in rows if r["model"] == model)
        ax.plot([n for n, _ in points], [100 * a for _, a in points], "o-", label=model)
    lengths = np.arange(1, max((r["length"] for r in rows), default=1) + 1)
    for model, accuracy in digit_models.items():
        ax.plot(lengths, 100 * accuracy**lengths, ":", color="#777777", label=f"{model} accuracy ^ length")
    ax.set(
        xlabel="digits in the field",
        ylabel="fields read exactly right %",
        title="field accuracy by length, test fields",
    )
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
