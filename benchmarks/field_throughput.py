"""Field-scoring throughput: a plain single-process loop against the Ray Data job, on one folder of fields.

    python benchmarks/field_throughput.py --model RESULTS [--fields 12000] [--concurrency 1]

RESULTS is a compare output holding a ``crnn`` (``--models crnn``). The folder (made once,
then reused) holds fields of 1 to 12 MNIST test digits rendered as scans, 28 to 64 px high,
PNG and JPEG, with a form's printed lines, and a labels CSV. (a) is what one would write
without Ray: read each file, decode it, the same field preprocessing, then batched inference
and CTC decoding with all of torch's threads. (b) is ``hdr score`` in this process against a
local Ray that is already up, timed from the call to the written output; it also reports its
start-up and its rate after that. The plain loop runs before and after the Ray run; its mean
is the baseline. The last line is JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from score_throughput import with_ray

from hdr_dist.common import cluster
from hdr_dist.data import datasets, fields
from hdr_dist.imaging import images
from hdr_dist.inference.readers import FIELD
from hdr_dist.models import checkpoints

MODEL = "crnn"


def make_folder(folder: Path, n: int) -> Path:
    """``n`` field scans and their labels CSV beside the folder (returned); kept for the next run if
    complete."""
    labels = folder.with_name(folder.name + "-labels.csv")
    if labels.is_file() and sum(1 for _ in folder.glob("*/*.*")) == n:
        return labels
    ds = datasets.load("mnist")
    rng = np.random.default_rng(0)
    counts = rng.integers(1, fields.MAX_DIGITS + 1, n)
    picks = fields.picks_of(rng.permutation(len(ds.test.y)), counts)
    heights = rng.integers(28, 65, n).tolist()
    formats = ["PNG" if i % 2 else "JPEG" for i in range(n)]
    rows = [("path", "label")]
    for i, (text, blob) in enumerate(fields.scans(ds.test.x, ds.test.y, picks, heights, formats, seed=1)):
        path = folder / f"{i // 1000:03d}" / f"{i:06d}.{'png' if formats[i] == 'PNG' else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        rows.append((str(path.resolve()), text))
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return labels


def plain(folder: Path, model_path: str, batch_size: int) -> float:
    """Fields/s of the loop one would write without Ray."""
    start = time.perf_counter()
    state, _, _ = checkpoints.for_scoring(model_path, MODEL)
    model, cfg = checkpoints.model_from_state(state)
    labels = list(cfg.labels)
    batch, n, texts = [], 0, []

    def infer():
        logits = FIELD.step_logits(model, batch, cfg.mean, cfg.std)
        texts.extend(r[0] for r in FIELD.read(logits, state.temperature or 1.0, labels))
        batch.clear()

    for f in sorted(folder.glob("*/*.*")):
        for *_, gray, error in images.decode(f.read_bytes()):
            n += 1
            strip, error = images.to_field(gray) if error is None else (b"", error)
            if error is None:
                batch.append(images.strip_of(strip))
            if len(batch) == batch_size:
                infer()
    if batch:
        infer()
    return n / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="compare output folder holding a crnn, or its model.pt")
    p.add_argument(
        "--folder",
        type=Path,
        default=Path("results-bench/fields-12k"),
        help="where the field folder is made once (default: %(default)s)",
    )
    p.add_argument("--fields", type=int, default=12_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--concurrency", type=int, default=1)
    args = p.parse_args()
    labels = make_folder(args.folder, args.fields)
    print(
        f"{args.fields:,} fields in {args.folder}; {os.cpu_count()} CPUs; torch threads "
        f"{torch.get_num_threads()}"
    )
    before = plain(args.folder, args.model, args.batch_size)
    print(f"(a) plain loop: {before:,.1f} fields/s")
    cluster.connect(None)  # a local Ray, up before the clock starts, as a cluster would be
    r = with_ray(
        args.folder,
        args.model,
        args.batch_size,
        args.concurrency,
        1.0,
        extra=["--model-name", MODEL, "--labels", str(labels)],
    )
    print(
        f"(b) Ray Data, --concurrency {args.concurrency}: {r['images_per_s']:,.1f} fields/s whole job; after "
        f"{r['startup_seconds']:.1f} s of start-up, {r['steady_images_per_s']:,.1f} fields/s"
    )
    import ray

    ray.shutdown()
    after = plain(args.folder, args.model, args.batch_size)
    baseline = (before + after) / 2
    r["ratio"] = round(r["images_per_s"] / baseline, 3)
    r["steady_ratio"] = round(r["steady_images_per_s"] / baseline, 3)
    print(f"(a) plain loop again: {after:,.1f} fields/s; baseline {baseline:,.1f} fields/s")
    print(
        f"Ray Data: {r['ratio']:.2f}x the plain loop over the whole job, "
        f"{r['steady_ratio']:.2f}x after start-up"
    )
    print(
        json.dumps(
            {
                "fields": args.fields,
                "cpus": os.cpu_count(),
                "plain_fields_per_s": round(baseline, 1),
                "plain_runs": [round(before, 1), round(after, 1)],
                **r,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
