"""Bulk scoring throughput: a plain single-process loop against the Ray Data job, on one folder.

    python benchmarks/score_throughput.py [--model results] [--concurrency 1,2]

The folder (made once, then reused) holds 20,000 MNIST images rendered as scans:
dark ink on light paper, sizes cycling through 28, 64 and 200 px, PNG and JPEG,
labels as folder names. (a) is what one would write without Ray: read each file,
decode it with Pillow, the same preprocessing, batched torch inference with all
of torch's threads. (b) is ``hdr score`` run in this process against a local Ray
that is already up (as a cluster would be), timed from the call to the written
output; it also reports its start-up (until the first result, mostly the
inference actors importing torch) and its rate after that, which is what a
long job runs at. The plain loop runs before and after the Ray runs; its mean
is the baseline. (c) is the cost of committing rows as they come (the default,
a piece every 2,000 rows or 10 s) against one piece written at the end
(``--commit-rows`` and ``--commit-seconds`` too large to be reached), two runs
of each, alternating. (d), with ``--runtime-onnx``: the job with ``--runtime onnx`` (the model exported
and run by onnxruntime in the actors) twice, around one more run with torch. The last line is JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.common import cluster
from hdr_dist.data import datasets, samples
from hdr_dist.imaging import images, preprocess
from hdr_dist.inference import evaluate
from hdr_dist.inference.device import for_inference
from hdr_dist.jobs import score
from hdr_dist.models import checkpoints

SIZES, FORMATS = (28, 64, 200), ("PNG", "JPEG")


def make_folder(folder: Path, n: int) -> None:
    if folder.is_dir() and sum(1 for _ in folder.rglob("*.*")) == n:
        return
    ds = datasets.load("mnist")
    x, y = np.concatenate([ds.test.x, ds.train.x]), np.concatenate([ds.test.y, ds.train.y])
    for i in range(n):
        size, fmt = SIZES[i % len(SIZES)], FORMATS[(i // len(SIZES)) % len(FORMATS)]
        path = folder / ds.labels[y[i]] / f"{i:06d}.{samples.EXTENSIONS[fmt]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(samples.render(x[i], size, fmt))


def plain_loop(files: Iterable[bytes], model_path: str, batch_size: int) -> dict:
    """The loop one would write without Ray, over each file's bytes as ``files`` yields them (read inside
    the clock): Pillow decode, the same preprocessing, batched torch inference on all the cores."""
    start = time.perf_counter()
    state, _, _ = checkpoints.for_scoring(model_path, None)
    model, cfg = checkpoints.model_from_state(state)
    model = for_inference(model)
    batch, n, predicted = [], 0, 0

    def infer() -> int:
        with torch.no_grad():
            x = torch.from_numpy(np.stack(batch))
            count = len(evaluate.logits(model, x, cfg.mean, cfg.std, torch.device("cpu")).argmax(1))
        batch.clear()
        return count

    for data in files:
        for *_, gray, error in images.decode(data):
            n += 1
            if error is None:
                batch.append(preprocess.to_mnist(gray))
            if len(batch) == batch_size:
                predicted += infer()
    if batch:
        predicted += infer()
    seconds = time.perf_counter() - start
    return {"images": n, "predicted": predicted, "seconds": seconds, "images_per_s": n / seconds}


def plain(folder: Path, model_path: str, batch_size: int) -> float:
    """Images/s of the plain loop over the folder's files, listed and read inside its clock."""

    def files():
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            yield path.read_bytes()

    return plain_loop(files(), model_path, batch_size)["images_per_s"]


NO_COMMITS = ("--commit-rows", str(10**12), "--commit-seconds", str(10**12))  # one piece, at the end


def with_ray(
    folder: Path,
    model_path: str,
    batch_size: int,
    concurrency: int,
    actor_cpus: float,
    variant: tuple = (),
    extra: tuple = ("--labels-from", "dirname"),
) -> dict:
    """Images/s over the whole job, and after its start-up (from summary.json); ``variant`` and ``extra``:
    more flags of hdr score (the variant timed, where the labels come from)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        code = score.main(
            [
                str(folder),
                "--model",
                model_path,
                "--output",
                str(out),
                *extra,
                "--batch-size",
                str(batch_size),
                "--concurrency",
                str(concurrency),
                "--cpus-per-actor",
                str(actor_cpus),
                *variant,
            ]
        )
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"hdr score failed with status {code}")
        summary = json.loads((out / "summary.json").read_text())
    return {
        "images_per_s": round(summary["images"] / seconds, 1),
        "startup_seconds": summary["startup_seconds"],
        "steady_images_per_s": summary["steady_images_per_s"],
        "review": summary["review"],
    }


def variant_cost(args, concurrency: int, run: dict, variant: tuple) -> tuple[dict, list[dict]]:
    """A variant of the job (``variant``: its flags) run twice, around one more run without it: its rate
    against the runs without, after start-up and over the whole job, and its runs."""
    timed = functools.partial(
        with_ray, args.folder, args.model, args.batch_size, concurrency, args.cpus_per_actor
    )
    runs = [timed(variant)]
    without = timed()
    runs.append(timed(variant))
    ratios = {}
    for rate, key in (("steady_images_per_s", "steady"), ("images_per_s", "whole_job")):
        ratios[key] = round(sum(x[rate] for x in runs) / 2 / ((run[rate] + without[rate]) / 2), 3)
    return ratios, runs


def commit_cost(args) -> dict:
    """The steady rate with the default commits against one piece at the end: two runs of each,
    alternating."""
    flags = ("--labels-from", "dirname")
    runs = {"with": [], "without": []}
    for _ in range(2):
        runs["with"].append(
            with_ray(args.folder, args.model, args.batch_size, 1, args.cpus_per_actor, extra=flags)
        )
        runs["without"].append(
            with_ray(
                args.folder, args.model, args.batch_size, 1, args.cpus_per_actor, extra=flags + NO_COMMITS
            )
        )
    steady = {k: sum(r["steady_images_per_s"] for r in v) / len(v) for k, v in runs.items()}
    whole = {k: sum(r["images_per_s"] for r in v) / len(v) for k, v in runs.items()}
    result = {
        "steady_with": round(steady["with"], 1),
        "steady_without": round(steady["without"], 1),
        "steady_ratio": round(steady["with"] / steady["without"], 3),
        "whole_job_ratio": round(whole["with"] / whole["without"], 3),
        "runs": {k: [r["steady_images_per_s"] for r in v] for k, v in runs.items()},
    }
    print(
        f"(c) commits as rows come, against one piece at the end: {result['steady_ratio']:.3f}x after "
        f"start-up ({steady['with']:,.0f} against {steady['without']:,.0f} img/s), "
        f"{result['whole_job_ratio']:.3f}x over the whole job"
    )
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="results", help="compare output folder or model.pt (default: %(default)s)"
    )
    p.add_argument(
        "--folder",
        type=Path,
        default=Path("results-bench/score-20k"),
        help="where the image folder is made once (default: %(default)s)",
    )
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument(
        "--concurrency", default="1", help="comma list of --concurrency values to run (default: 1)"
    )
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="passed to hdr score (default: 1)")
    p.add_argument(
        "--threshold",
        type=float,
        help="also time the reject option: each run again with --threshold T, the two alternating",
    )
    p.add_argument(
        "--runtime-onnx",
        action="store_true",
        help="also time score --runtime onnx: each run again with it, alternating with torch",
    )
    p.add_argument(
        "--no-commit-cost",
        dest="commit_cost",
        action="store_false",
        help="skip (c), the cost of committing rows as they come",
    )
    args = p.parse_args()
    make_folder(args.folder, args.images)
    print(
        f"{args.images:,} images in {args.folder}; {os.cpu_count()} CPUs; torch threads "
        f"{torch.get_num_threads()}"
    )

    before = plain(args.folder, args.model, args.batch_size)
    print(f"(a) plain loop: {before:,.0f} img/s")
    cluster.connect(None)  # a local Ray, up before the clock starts, as a cluster would be
    runs = {}
    for c in [int(v) for v in args.concurrency.split(",")]:
        r = runs[c] = with_ray(args.folder, args.model, args.batch_size, c, args.cpus_per_actor)
        print(
            f"(b) Ray Data, --concurrency {c}: {r['images_per_s']:,.0f} img/s whole job; after "
            f"{r['startup_seconds']:.1f} s of start-up, {r['steady_images_per_s']:,.0f} img/s"
        )
        if args.threshold is not None:
            # After start-up: the decisions themselves. Whole job: also writing the review queue and its page.
            ratios, rejecting = variant_cost(args, c, r, ("--threshold", str(args.threshold)))
            r["reject_ratio"], r["reject_ratio_whole_job"] = ratios["steady"], ratios["whole_job"]
            print(
                f"(c) --threshold {args.threshold:g}, twice, between the runs without: "
                f"{r['reject_ratio']:.3f}x after start-up, "
                f"{r['reject_ratio_whole_job']:.3f}x over the whole job "
                f"({rejecting[0]['review']:,} images to review)"
            )
        if args.runtime_onnx:
            ratios, onnx_runs = variant_cost(args, c, r, ("--runtime", "onnx"))
            r["onnx_ratio"], r["onnx_ratio_whole_job"] = ratios["steady"], ratios["whole_job"]
            rates = ", ".join(f"{x['steady_images_per_s']:,.0f}" for x in onnx_runs)
            print(
                f"(d) --runtime onnx, twice, between the runs with torch: {r['onnx_ratio']:.3f}x after "
                f"start-up ({rates} img/s), {r['onnx_ratio_whole_job']:.3f}x over the whole job"
            )
    commits = commit_cost(args) if args.commit_cost else None
    import ray

    ray.shutdown()
    after = plain(args.folder, args.model, args.batch_size)
    baseline = (before + after) / 2
    print(f"(a) plain loop again: {after:,.0f} img/s; baseline {baseline:,.0f} img/s")
    first = next(iter(runs))
    for c, r in runs.items():
        r["ratio"] = round(r["images_per_s"] / baseline, 3)
        r["steady_ratio"] = round(r["steady_images_per_s"] / baseline, 3)
        print(
            f"--concurrency {c}: {r['ratio']:.2f}x the plain loop over the whole job, "
            f"{r['steady_ratio']:.2f}x after start-up"
        )
    print(
        json.dumps(
            {
                "images": args.images,
                "cpus": os.cpu_count(),
                "plain_images_per_s": round(baseline, 1),
                "plain_runs": [round(before, 1), round(after, 1)],
                "ray_images_per_s": runs[first]["images_per_s"],
                "ratio": runs[first]["ratio"],
                "steady_ratio": runs[first]["steady_ratio"],
                "by_concurrency": runs,
                "commits": commits,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
