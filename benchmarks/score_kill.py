"""What a killed score job keeps: SIGKILL of the driver at 40 % of a 25,000-image job, then --resume.

    python benchmarks/score_kill.py [--model results] [--images 25000] [--at 0.4]

The folder is score_throughput's (made once, then reused). The job runs as its own
process (``jobs/score.py``) on a local Ray that this script keeps up, with its
output going to a pipe, as under ``ray job submit``; when its own progress line
says it has scored ``--at`` of the inputs, the driver is killed with SIGKILL. Then
the same command with ``--resume`` finishes the job. Reported: the share of the
inputs kept from the first run (its committed pieces, not scored again), that
every input appears exactly once, and the two runs' wall time against one
uninterrupted run of the same job (the plain baseline, measured first). The last
line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as pads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.score_throughput import make_folder  # noqa: E402 - the package is imported after sys.path is set
from hdr_dist.common import cluster  # noqa: E402 - the package is imported after sys.path is set

PROGRESS = re.compile(r"^scored ([\d,]+)/([\d,]+) images \((\d+) %\)")


def job(folder: Path, model: str, out: Path, address: str, *flags: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "jobs" / "score.py"),
        str(folder),
        "--model",
        model,
        "--output",
        str(out),
        "--labels-from",
        "dirname",
        "--address",
        address,
        *flags,
    ]


def killed_at(command: list[str], share: float) -> tuple[float, int, float]:
    """Run ``command`` until its progress line reaches ``share``, then SIGKILL it: (the share its line
    said, the inputs it said were scored, seconds it ran)."""
    start = time.perf_counter()
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in driver.stdout:
        found = PROGRESS.match(line)
        if found and int(found[1].replace(",", "")) >= share * int(found[2].replace(",", "")):
            driver.send_signal(signal.SIGKILL)
            driver.wait()
            done, total = (int(found[i].replace(",", "")) for i in (1, 2))
            return done / total, done, time.perf_counter() - start
    raise SystemExit(f"the job ended (status {driver.wait()}) before its progress line reached {share:.0%}")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="results", help="compare output folder or model.pt (default: %(default)s)"
    )
    p.add_argument(
        "--folder",
        type=Path,
        default=Path("results-bench/score-25k"),
        help="where the image folder is made once (default: %(default)s)",
    )
    p.add_argument("--images", type=int, default=25_000)
    p.add_argument("--at", type=float, default=0.4, help="kill when the progress line reaches this share")
    args = p.parse_args()
    make_folder(args.folder, args.images)
    cluster.connect(None)  # a local Ray the job processes join, up before the clock starts
    import ray

    address = ray.get_runtime_context().gcs_address
    with tempfile.TemporaryDirectory() as tmp:
        whole = timed(job(args.folder, args.model, Path(tmp) / "whole", address))
        print(f"uninterrupted: {whole:.1f} s")
        out = Path(tmp) / "out"
        said, done, first = killed_at(job(args.folder, args.model, out, address), args.at)
        print(f"killed with SIGKILL when its line said {done:,} scored ({said:.1%}), after {first:.1f} s")
        time.sleep(2)  # Ray reaps the dead driver's actors
        second = timed(job(args.folder, args.model, out, address, "--resume"))
        summary = json.loads((out / "summary.json").read_text())
        rows = pads.dataset(out / "predictions", format="parquet").to_table(columns=["source", "page"])
        keys = set(zip(rows["source"].to_pylist(), rows["page"].to_pylist()))
    kept = summary["skipped_already_scored"]
    result = {
        "images": args.images,
        "cpus": os.cpu_count(),
        "killed_at_share": round(said, 4),
        "kept_inputs": kept,
        "kept_share": round(kept / args.images, 4),
        "rows": rows.num_rows,
        "distinct_rows": len(keys),
        "every_input_once": rows.num_rows == len(keys) == args.images,
        "uninterrupted_seconds": round(whole, 1),
        "killed_run_seconds": round(first, 1),
        "resume_seconds": round(second, 1),
        "resume_vs_uninterrupted": round(second / whole, 3),
    }
    print(
        f"kept {kept:,} of {args.images:,} inputs ({result['kept_share']:.1%}); the resume took "
        f"{second:.1f} s, {result['resume_vs_uninterrupted']:.2f}x an uninterrupted run; every input once: "
        f"{result['every_input_once']}"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
