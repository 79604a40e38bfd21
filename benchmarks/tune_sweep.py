"""A 16-trial ASHA sweep of ``cnn`` against one plain training run of the recipe's default config.

The baseline trains the recipe's settings once, without Ray, in one process with the
CPUs one trial gets (``--cpus-per-worker``), for the sweep's epochs on the same images,
and reports its best validation accuracy and wall time. Then the sweep runs as a user
runs it, ``python jobs/tune.py`` in a fresh output folder, timed from outside. Printed:
the sweep's wall time, its cost in default trainings (sweep wall / baseline wall), the
best trial's validation accuracy beside the default's, and how many trials ASHA
stopped. The last line printed is a JSON object with every figure.

    python benchmarks/tune_sweep.py [--num-samples 16] [--epochs 4] [--limit-train 20000]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from hdr_dist.data import datasets
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import train

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn")
    p.add_argument("--num-samples", type=int, default=16)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--limit-train", type=int, default=20000)
    p.add_argument("--cpus-per-worker", type=int, default=1)
    p.add_argument("--output", default=str(ROOT / "results-bench" / "tune"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    ds = datasets.load("mnist", limit_train=args.limit_train)
    cfg = TrainConfig.from_recipe(args.model, ds, epochs=args.epochs, cpus_per_worker=args.cpus_per_worker)
    torch.set_num_threads(args.cpus_per_worker)
    start = time.perf_counter()
    _, history = train.train_plain(cfg, train.arrays_of(ds), torch.device("cpu"))
    baseline_wall = time.perf_counter() - start
    baseline_val = max(h["val_acc"] for h in history)

    output = Path(args.output)
    shutil.rmtree(output, ignore_errors=True)  # a leftover sweep would be resumed, not run
    command = [
        sys.executable,
        str(ROOT / "jobs" / "tune.py"),
        "--model",
        args.model,
        "--num-samples",
        str(args.num_samples),
        "--epochs",
        str(args.epochs),
        "--limit-train",
        str(args.limit_train),
        "--cpus-per-worker",
        str(args.cpus_per_worker),
        "--output",
        str(output),
    ]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    sweep_wall = time.perf_counter() - start

    trials = pq.read_table(output / "trials.parquet").to_pylist()
    best = max(trials, key=lambda t: t["best_val_acc"] or 0)
    recipe = trials[0]  # trial 00000: the recipe's own settings (--recipe-first)
    figures = {
        "model": args.model,
        "trials": len(trials),
        "epochs": args.epochs,
        "train_images": len(ds.train.y),
        "baseline_wall_s": baseline_wall,
        "baseline_val_acc": baseline_val,
        "sweep_wall_s": sweep_wall,
        "sweep_minutes": sweep_wall / 60,
        "sweep_vs_baseline_wall": sweep_wall / baseline_wall,
        "best_val_acc": best["best_val_acc"],
        "best_minus_baseline_pp": 100 * (best["best_val_acc"] - baseline_val),
        "best_is_recipe_trial": best["trial_id"] == recipe["trial_id"],
        "recipe_trial_val_acc": recipe["best_val_acc"],
        "stopped_early": sum(t["status"] == "stopped early" for t in trials),
        "completed": sum(t["status"] == "completed" for t in trials),
        "errors": sum(t["status"] == "error" for t in trials),
        "trial_epochs": sum(t["epochs"] for t in trials),
    }
    for k, v in figures.items():
        print(f"{k:>26}: {v:,.4f}" if isinstance(v, float) else f"{k:>26}: {v}")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
