"""Training images/s: a plain single-process PyTorch loop vs Ray Train with 1 and 2 workers.

Same model, same global batch, same data, same machine, in one run. Each figure is
the median images/s of the steady-state epochs (epoch 1, with its warm-up, is left
out), measured inside the loop, so it compares the training itself; Ray's start-up
is reported separately as fit wall time. This machine's speed drifts, so the plain
loop runs before and after the Ray runs and its figure is the mean of the two. The
last line printed is a JSON object with every figure and the ratios to the plain loop.

    python benchmarks/train_throughput.py [--model cnn] [--epochs 3] [--limit-train 20000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import replace

import ray
import torch

from hdr_dist.common import cluster
from hdr_dist.data import datasets
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import train


def steady(history: list[dict]) -> float:
    return statistics.median(h["images_per_s"] for h in history[1:] or history)


def plain(cfg: dict, arrays: dict, threads: int) -> float:
    torch.set_num_threads(threads)
    _, history = train.train_plain(cfg, arrays, torch.device("cpu"))
    return steady(history)


def ray_train(cfg: TrainConfig, data_ref, workers: int, cpus: int, storage: str) -> tuple[float, float]:
    start = time.perf_counter()
    result = train.fit(replace(cfg, cpus_per_worker=cpus), data_ref, workers=workers, use_gpu=False,
                       storage_path=storage, name=f"bench-{workers}x{cpus}")
    wall = time.perf_counter() - start
    return steady(checkpoints.load(result.checkpoint.path)["history"]), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, help="global batch (default: the model's recipe)")
    p.add_argument("--limit-train", type=int, default=20000)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the plain loop's progress lines
    cores = os.cpu_count() or 1
    ds = datasets.load("mnist", limit_train=args.limit_train)
    cfg = TrainConfig.from_recipe(args.model, ds, epochs=args.epochs, batch_size=args.batch_size)
    arrays = train.arrays_of(ds)

    figures = {"model": args.model, "global_batch": cfg.batch_size, "epochs": args.epochs,
               "train_images": len(ds.train.y), "cores": cores}
    before = plain(cfg, arrays, cores)
    cluster.connect(None)  # a local Ray started exactly as `jobs/compare.py` starts it
    data_ref = ray.put(arrays)
    with tempfile.TemporaryDirectory() as storage:
        for workers in (1, 2):
            cpus = max(1, cores // workers)
            ips, wall = ray_train(cfg, data_ref, workers, cpus, storage)
            figures[f"ray_{workers}w_images_per_s"] = ips
            figures[f"ray_{workers}w_fit_wall_s"] = wall
    ray.shutdown()
    after = plain(cfg, arrays, cores)
    figures |= {"plain_before_images_per_s": before, "plain_after_images_per_s": after,
                "plain_images_per_s": (before + after) / 2}
    for workers in (1, 2):
        figures[f"ray_{workers}w_vs_plain"] = figures[f"ray_{workers}w_images_per_s"] / figures["plain_images_per_s"]
    for k, v in figures.items():
        print(f"{k:>26}: {v:,.3f}" if isinstance(v, float) else f"{k:>26}: {v}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
