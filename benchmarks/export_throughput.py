"""An exported model under onnxruntime against the same model in PyTorch eager, on one CPU thread.

    python benchmarks/export_throughput.py [--reps 7] [--digits 2048] [--fields 512]

For ``cnn``, ``lstm`` and ``crnn`` (their recipes' shapes; random weights time as trained ones do),
the same batches go through (a) torch as score's actors run it: eval mode, channels-last, under
``torch.inference_mode()``, and (b) the ONNX file ``hdr export`` writes, in an onnxruntime CPU
session (``inference.onnx_runtime``, what ``score --runtime onnx`` runs). One thread each (torch
``set_num_threads(1)``; onnxruntime one intra-op and one inter-op thread), as an actor with one CPU
has. Digits go in batches of 512 MNIST test images (score's ``--batch-size``), fields in batches of
128 strips of similar widths (``readers.FIELD_BATCH``), padded as score pads them. Scaling and
standardising the pixels is the same for both and left out: the clock covers the model alone. The
two alternate, ``--reps`` passes each, and the medians are compared. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_throughput import cpu_model
from hdr_dist.data import datasets, fields
from hdr_dist.inference import readers
from hdr_dist.inference.device import for_inference, normalise, pad
from hdr_dist.inference.onnx_runtime import OnnxModel, for_actors
from hdr_dist.models import checkpoints, recipes
from hdr_dist.models.config import TrainConfig

DIGIT_BATCH = 512


def batches(kind: str, ds, cfg: TrainConfig, digits: int, n_fields: int) -> list[tuple]:
    """The inputs, ready for the model: standardised digits, channels-last; or padded strips of similar
    widths with their widths, in score's order (``FieldReader.step_logits``)."""
    if kind == "digit":
        x = normalise(torch.from_numpy(ds.test.x[:digits]), cfg.mean, cfg.std)
        return [
            (x[i : i + DIGIT_BATCH].contiguous(memory_format=torch.channels_last),)
            for i in range(0, len(x), DIGIT_BATCH)
        ]
    counts = fields.lengths(n_fields, np.random.default_rng(0))
    strips, _ = fields.fixed_set(ds.test.x, ds.test.y, seed=1, counts=counts)
    strips = sorted(strips, key=lambda s: s.shape[1])
    out = []
    for i in range(0, len(strips), readers.FIELD_BATCH):
        xb, widths = pad(strips[i : i + readers.FIELD_BATCH])
        out.append(((xb - cfg.mean) / cfg.std, widths))
    return out


def timed(model, inputs: list[tuple]) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for args in inputs:
            model(*args)
    return time.perf_counter() - start


def measure(name: str, ds, reps: int, digits: int, n_fields: int) -> dict:
    """One recipe: torch and onnxruntime alternating, ``reps`` passes each over the same batches."""
    cfg = TrainConfig.from_recipe(name, ds)
    torch.manual_seed(0)
    model = for_inference(recipes.from_config(cfg))
    state = checkpoints.ModelState(model.state_dict(), cfg.as_dict(), [], 0, None, None, identity=None)
    onnx = OnnxModel(for_actors(state, use_gpu=False), threads=1)  # as score --runtime onnx builds it
    inputs = batches(cfg.kind, ds, cfg, digits, n_fields)
    items = sum(len(args[0]) for args in inputs)
    timed(model, inputs[:1]), timed(onnx, inputs[:1])  # warm-up: first-call allocations are not speed
    seconds = {"torch": [], "onnxruntime": []}
    for _ in range(reps):
        seconds["torch"].append(timed(model, inputs))
        seconds["onnxruntime"].append(timed(onnx, inputs))
    rate = {k: items / statistics.median(v) for k, v in seconds.items()}
    return {
        "model": name,
        "kind": cfg.kind,
        "items": items,
        "batch": len(inputs[0][0]),
        "torch_per_s": round(rate["torch"], 1),
        "ort_per_s": round(rate["onnxruntime"], 1),
        "ort_vs_torch": round(rate["onnxruntime"] / rate["torch"], 3),
        "spread": {k: round((max(v) - min(v)) / statistics.median(v), 3) for k, v in seconds.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--digits", type=int, default=2048, help="MNIST test images per pass (digit models)")
    p.add_argument("--fields", type=int, default=512, help="test fields per pass (crnn)")
    p.add_argument("--models", default="cnn,lstm,crnn")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import onnxruntime

    ds = datasets.load("mnist")
    print(
        f"{cpu_model()}; {os.cpu_count()} CPUs; one thread each; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; medians of {args.reps} alternating passes"
    )
    rows = [measure(name, ds, args.reps, args.digits, args.fields) for name in args.models.split(",")]
    print(
        f"{'model':<6} {'items':>6} {'batch':>6} {'torch /s':>10} {'onnxruntime /s':>15} {'ratio':>7}  spread"
    )
    for r in rows:
        unit = "strips" if r["kind"] == "field" else "images"
        print(
            f"{r['model']:<6} {r['items']:>6} {r['batch']:>6} {r['torch_per_s']:>10,.0f} "
            f"{r['ort_per_s']:>15,.0f} {r['ort_vs_torch']:>6.2f}x  torch {r['spread']['torch']:.0%}, "
            f"ort {r['spread']['onnxruntime']:.0%} ({unit})"
        )
    print(
        json.dumps(
            {
                "cpu": cpu_model(),
                "cpus": os.cpu_count(),
                "threads": 1,
                "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__,
                "reps": args.reps,
                "models": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
