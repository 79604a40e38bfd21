"""``hdr models``: the readers shipped with hdr-dist, with their cards' figures, what they were trained on
and how long, and whether each file still matches its card's SHA-256. ``hdr models --train``
(``make readers``) trains them again from the embedded MNIST, each by compare with its recorded
settings (``shipped.TRAINING``), and writes them with their cards.

Both train at once, one compare run each with one Train worker, so that a 2-core machine trains them
side by side; a compare output that already holds a run is resumed (a finished one is only tested
again). Each shipped file keeps what inference needs (weights, config, history, calibration), not the
optimiser's state, which would triple its size.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch
from rich.console import Console
from rich.table import Table

import hdr_dist
from hdr_dist.common.errors import UserError
from hdr_dist.inference import calibration
from hdr_dist.jobs.cli import run_job
from hdr_dist.jobs.flags import Parser
from hdr_dist.models import checkpoints, recipes, shipped

# What a shipped file keeps of a compare checkpoint.
KEPT = ("model", "config", "history", "epoch", "temperature", "val_risk_coverage")
DATA = {
    "digit": "MNIST train (the embedded copy): 54,000 images, 6,000 held out for validation and calibration",
    "field": "fields of 1 to 12 MNIST train digits, made afresh each epoch (hdr_dist/data/fields.py); "
    "validation fields and 5-digit scans from the 6,000 held-out digits",
}


def parser(prog: str = "hdr models") -> Parser:
    p = Parser(
        prog=prog,
        description="List the readers shipped with hdr-dist (score and forms read with them when no "
        "--model is given), or train them again.",
    )
    g = p.add_argument_group("training them again (make readers)")
    g.add_argument(
        "--train",
        action="store_true",
        help="train the shipped readers again with their recorded settings and write them with their cards",
    )
    g.add_argument(
        "--work",
        default="results-readers",
        help="folder for the compare runs, their logs and checkpoints; a run already there resumes "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--output",
        default=str(shipped.FOLDER),
        help="folder the readers and their cards are written to (default: the package's, %(default)s)",
    )
    g.add_argument(
        "--readers",
        default=",".join(shipped.TRAINING),
        help="which to train, a comma list (default: %(default)s)",
    )
    g = p.add_argument_group("a rehearsal of --train (the card records it; not the shipped readers' recipe)")
    g.add_argument("--epochs", type=int, help="train this many epochs instead of the recorded ones")
    g.add_argument("--limit-train", type=int, help="train on a stratified sample of N training images")
    return p


def settings_of(name: str, args: argparse.Namespace) -> dict:
    """The reader's recorded settings, with a rehearsal's overrides on top."""
    given = {"epochs": args.epochs, "limit_train": args.limit_train}
    return shipped.TRAINING[name] | {k: v for k, v in given.items() if v is not None}


def compare_flags(name: str, settings: dict, output: Path) -> list[str]:
    """compare's command line for the reader ``name`` trained with ``settings``."""
    argv = ["--models", name, "--output", str(output)]
    for key, value in settings.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def train(settings: dict[str, dict], work: Path, console: Console) -> None:
    """Each reader's compare run, all at once. A run that fails is one line naming its log."""
    work.mkdir(parents=True, exist_ok=True)
    running = {}
    for name, chosen in settings.items():
        log = open(work / f"{name}.log", "ab")  # noqa: SIM115 - held open while the run writes it
        argv = [
            sys.executable,
            "-m",
            "hdr_dist.jobs.cli",
            "compare",
            *compare_flags(name, chosen, work / name),
        ]
        console.print(f"{name}: hdr {' '.join(argv[4:])} (log: {log.name})", markup=False, highlight=False)
        running[name] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), log)
    for name, (process, log) in running.items():
        status = process.wait()
        log.close()
        if status != 0:
            raise UserError(f"{name}: compare ended with status {status}; its log is {log.name}")


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def calibration_of(state: dict) -> dict:
    """The temperature, and at each error target the threshold and share its validation curve gives
    (``score --target-error`` reads the same curve, kept in the file)."""
    curve = state["val_risk_coverage"]
    targets = {}
    for target in calibration.ERROR_TARGETS:
        coverage, threshold = calibration.coverage_at(curve, target)
        targets[f"{target:g}"] = {"threshold": threshold, "validation_coverage": coverage}
    return {"temperature": state["temperature"], "targets": targets}


def trained(name: str, work: Path) -> tuple[dict, dict, list[dict]]:
    """What compare wrote for ``name`` in ``work/NAME``: its metrics row, the state of the checkpoint
    it chose (the epoch of best validation accuracy) and every epoch's history."""
    folder = work / name
    if not (folder / "metrics.parquet").is_file():
        raise UserError(f"{folder / 'metrics.parquet'}: no compare results for {name}")
    row = next(r for r in pq.read_table(folder / "metrics.parquet").to_pylist() if r["model"] == name)
    history = [r for r in pq.read_table(folder / "history.parquet").to_pylist() if r["model"] == name]
    return row, checkpoints.load(row["checkpoint"]), history


def write(name: str, settings: dict, row: dict, state: dict, history: list[dict], output: Path) -> dict:
    """A trained reader (compare's metrics ``row``, the chosen checkpoint's ``state`` and the run's
    ``history``, trained with ``settings``) written to ``output`` as ``NAME.pt``, with its card as
    ``NAME.json``."""
    kept = {key: state[key] for key in KEPT if key in state}
    path = output / shipped.file_of(name).name
    torch.save(kept, path)
    kind = recipes.recipe(name).kind
    figures = shipped.figures_of(row, kind)
    elapsed = 0.0
    curve = []
    for h in history:
        elapsed += h["seconds"]
        curve.append({"epoch": h["epoch"], "train_seconds": round(elapsed, 1), "val_acc": h["val_acc"]})
    card = {
        "name": name,
        "kind": kind,
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": shipped.sha256_of(path),
        "summary": shipped.summary(figures, kind),
        "recipe": name,
        "settings": settings,
        "command": "hdr compare " + " ".join(compare_flags(name, settings, Path("OUT"))),
        "config": state["config"],
        "data": DATA[kind],
        "seed": state["config"]["seed"],
        "training": {
            "epochs": len(history),
            "weights_of_epoch": state["epoch"] + 1,  # compare keeps the best validation accuracy's
            "train_seconds": round(elapsed, 1),
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "workers": row.get("num_workers"),
            "threads_per_worker": row.get("threads_per_worker"),
            "torch": torch.__version__,
            "hdr_dist": hdr_dist.__version__,
            "packaged": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "figures": figures,
        "calibration": calibration_of(state),
        "learning_curve": curve,
    }
    (output / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def listing(console: Console) -> int:
    table = Table(title=f"readers shipped with hdr-dist ({shipped.folder()})")
    for column in ("name", "kind", "reads", "trained", "MB", "SHA-256"):
        table.add_column(column)
    for name in shipped.names():
        card = shipped.card(name)
        path = shipped.file_of(name)
        found = shipped.sha256_of(path) if path.is_file() else None
        training = card.get("training", {})
        table.add_row(
            name,
            card.get("kind", "?"),
            card.get("summary", "?"),
            f"{training.get('epochs', '?')} epochs, {training.get('train_seconds', 0) / 60:.0f} min "
            f"on {training.get('cpu', '?')}",
            f"{card.get('bytes', 0) / 1e6:.1f}",
            f"{card['sha256'][:12]}… "
            + ("ok" if found == card["sha256"] else "MISSING" if found is None else "DAMAGED"),
        )
    console.print(table)
    console.print(
        "score and forms read with these when no --model is given; the cards (NAME.json beside each file) "
        "hold the recipe, the data, the seed, the figures and the calibration",
        markup=False,
        highlight=False,
    )
    return 0


def train_again(args: argparse.Namespace, console: Console) -> int:
    names = [n.strip() for n in args.readers.split(",") if n.strip()]
    unknown = [n for n in names if n not in shipped.TRAINING]
    if unknown or not names:
        raise UserError(f"--readers {args.readers}: choose from {', '.join(shipped.TRAINING)}")
    output = Path(args.output).expanduser()
    if not output.is_dir():
        raise UserError(f"--output {args.output}: no such folder")
    work = Path(args.work).expanduser()
    settings = {name: settings_of(name, args) for name in names}
    train(settings, work, console)
    for name in names:
        card = write(name, settings[name], *trained(name, work), output)
        console.print(
            f"{output / card['file']}: {card['bytes']:,} bytes, {card['summary']}; "
            f"trained {card['training']['train_seconds']:,.0f} s on {card['training']['cpu']}",
            markup=False,
            highlight=False,
        )
    return 0


def run(args: argparse.Namespace, console: Console) -> int:
    return train_again(args, console) if args.train else listing(console)


def main(argv=None, prog: str = "hdr models") -> int:
    return run_job(run, parser(prog).parse_args(argv), prog, "run it again: each compare run resumes")
