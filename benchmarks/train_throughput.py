"""Training images/s: a plain single-process PyTorch loop against Ray Train, one worker with all the
cores and one worker per core, alternated round after round.

Same model, same global batch, same data, same machine, in one run. Each figure is the median
images/s of the steady-state epochs (epoch 1, with its warm-up, is left out), measured inside the
loop, so it compares the training itself; Ray Train's start-up is reported apart, as fit wall time.
This machine's speed drifts by several per cent within minutes, so no configuration runs all its
repeats at once: each round runs the three, in an order that rotates from round to round, and each
figure is the median over the rounds with its spread (lowest to highest). ``default_vs_plain`` is
the configuration ``--workers auto`` picks on this machine (``cluster.auto_workers``) against the
plain loop, median against median; ``*_vs_plain_paired`` is the median of each round's own ratio.
The last line printed is a JSON object with every figure.

    python benchmarks/train_throughput.py [--model cnn] [--rounds 3] [--epochs 3] [--limit-train 20000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.common import cluster
from hdr_dist.data import datasets
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import train


def steady(history: list[dict]) -> float:
    return statistics.median(h["images_per_s"] for h in history[1:] or history)


def plain(cfg: TrainConfig, arrays: dict, threads: int) -> float:
    torch.set_num_threads(threads)
    _, history = train.train_plain(cfg, arrays, torch.device("cpu"))
    return steady(history)


def ray_train(
    cfg: TrainConfig, data_ref, workers: int, cpus: int, storage: str, name: str
) -> tuple[float, float]:
    start = time.perf_counter()
    result = train.fit(
        replace(cfg, cpus_per_worker=cpus),
        data_ref,
        workers=workers,
        use_gpu=False,
        storage_path=storage,
        name=name,
    )
    wall = time.perf_counter() - start
    return steady(checkpoints.load(result.checkpoint.path)["history"]), wall


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "low": min(values), "high": max(values)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn")
    p.add_argument(
        "--rounds", type=int, default=3, help="rounds of all three configurations (default: %(default)s)"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, help="global batch (default: the model's recipe)")
    p.add_argument("--limit-train", type=int, default=20000)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cores = os.cpu_count() or 1
    ds = datasets.load("mnist", limit_train=args.limit_train)
    cfg = TrainConfig.from_recipe(
        args.model, ds, epochs=args.epochs, batch_size=args.batch_size, log_progress=False
    )
    arrays = train.arrays_of(ds)
    cluster.connect(None)  # a local Ray started exactly as `jobs/compare.py` starts it
    auto = cluster.auto_workers([n["Resources"] for n in cluster.alive_nodes()], use_gpu=False)
    data_ref = ray.put(arrays)
    # (workers, CPUs each) per configuration; "plain" is the loop without Ray on all the cores.
    shapes = {"plain": None, "1w": (1, cores), f"{cores}w": (cores, 1)}
    ips = {name: [] for name in shapes}
    walls = {name: [] for name in shapes if name != "plain"}
    order = list(shapes)
    with tempfile.TemporaryDirectory() as storage:
        for r in range(args.rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                if shapes[name] is None:
                    ips[name].append(plain(cfg, arrays, cores))
                else:
                    value, wall = ray_train(cfg, data_ref, *shapes[name], storage, f"bench-{name}-{r}")
                    ips[name].append(value)
                    walls[name].append(wall)
                print(f"round {r + 1}/{args.rounds} {name:>5}: {ips[name][-1]:,.0f} img/s", flush=True)
    ray.shutdown()

    default = next(name for name, shape in shapes.items() if shape == (auto.count, auto.cpus))
    figures = {
        "model": args.model,
        "global_batch": cfg.batch_size,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "train_images": len(ds.train.y),
        "cores": cores,
        "cpu": cpu_model(),
        "default": f"{auto.count} worker(s) x {auto.cpus} CPU(s)",
    }
    for name in shapes:
        s = spread(ips[name])
        figures |= {
            f"{name}_images_per_s": round(s["median"], 1),
            f"{name}_low": round(s["low"], 1),
            f"{name}_high": round(s["high"], 1),
        }
        if name != "plain":
            ratio = s["median"] / statistics.median(ips["plain"])
            paired = statistics.median(a / b for a, b in zip(ips[name], ips["plain"]))
            figures |= {
                f"{name}_vs_plain": round(ratio, 3),
                f"{name}_vs_plain_paired": round(paired, 3),
                f"{name}_fit_wall_s": round(statistics.median(walls[name]), 1),
            }
    figures["default_vs_plain"] = figures[f"{default}_vs_plain"]
    figures["default_vs_plain_paired"] = figures[f"{default}_vs_plain_paired"]
    for name in shapes:
        print(
            f"{name:>5}: median {figures[f'{name}_images_per_s']:,.0f} img/s "
            f"(spread {figures[f'{name}_low']:,.0f}-{figures[f'{name}_high']:,.0f}) over {args.rounds} rounds"
            + (
                f"; {figures[f'{name}_vs_plain']:.3f}x plain, paired "
                f"{figures[f'{name}_vs_plain_paired']:.3f}x"
                if name != "plain"
                else ""
            )
        )
    print(f"--workers auto here: {figures['default']}; default_vs_plain {figures['default_vs_plain']:.3f}x")
    print(json.dumps(figures))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else ():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
