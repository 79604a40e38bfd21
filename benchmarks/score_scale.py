"""A 200,000-image set of archives, scored to completion: wall time and peak memory.

    python benchmarks/score_scale.py [--model results] [--images 200000] [--archives 8]

The images are MNIST's 70,000 digits rendered as scans (dark ink on white
paper; 28 or 64 px; PNG or JPEG), cycled to the requested count and split over
``--archives`` archives, alternately .tar.gz and .zip (made once, then reused).
``jobs/score.py`` runs as a user would run it, in its own process with its own
local Ray. Memory is sampled every half second two ways: the resident memory of
the job's whole process tree (driver, Ray's daemons and workers; shared pages
such as the object store are counted once per process that maps them, so this
over-counts), and the machine's used memory above what it was before the start.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peak_memory import Peak  # noqa: E402
from hdr_dist.data import datasets, samples  # noqa: E402


def make_archives(folder: Path, n: int, count: int) -> list[Path]:
    paths = [folder / f"forms-by-label-{i:02d}.{'tar.gz' if i % 2 == 0 else 'zip'}" for i in range(count)]
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    ds = datasets.load("mnist")
    x, y = np.concatenate([ds.train.x, ds.val.x, ds.test.x]), np.concatenate([ds.train.y, ds.val.y, ds.test.y])
    per = -(-n // count)
    for a, path in enumerate(paths):
        def images(a=a):
            for i in range(a * per, min(n, (a + 1) * per)):
                j = i % len(x)
                size, fmt = (28, 64)[i % 2], ("PNG", "JPEG")[(i // 2) % 2]
                yield (f"{ds.labels[y[j]]}/batch-{i // 5000:03d}/{i:07d}.{samples.EXTENSIONS[fmt]}",
                       samples.render(x[j], size, fmt))
        tmp = path.with_name("tmp-" + path.name)
        samples.write(tmp, images())
        tmp.rename(path)
        print(f"made {path}", flush=True)
    return paths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="results", help="compare output folder or model.pt (default: %(default)s)")
    p.add_argument("--images", type=int, default=200_000)
    p.add_argument("--archives", type=int, default=8)
    p.add_argument("--folder", type=Path, default=Path("results-bench/scale"))
    args = p.parse_args()
    archives = make_archives(args.folder, args.images, args.archives)
    size = sum(a.stat().st_size for a in archives)
    print(f"{args.images:,} images in {len(archives)} archives, {size / 2**20:,.0f} MiB")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        job = subprocess.Popen([sys.executable, str(ROOT / "jobs" / "score.py"), *map(str, archives),
                                "--model", args.model, "--output", str(out), "--labels-from", "dirname"])
        with Peak(job.pid, interval=0.5) as peak:
            job.wait()
        seconds = time.perf_counter() - start
        peak_tree, peak_used = peak.tree, peak.machine
        if job.returncode != 0:
            raise SystemExit(f"jobs/score.py failed with status {job.returncode}")
        summary = json.loads((out / "summary.json").read_text())
    print(f"scored {summary['scored']:,}, failed {summary['failed']:,} of {summary['images']:,} images in "
          f"{seconds:.0f} s wall ({summary['images'] / seconds:,.0f} img/s; start-up {summary['startup_seconds']:.0f} s, "
          f"then {summary['steady_images_per_s']:,.0f} img/s); peak memory: process tree "
          f"{peak_tree / 2**30:.2f} GiB, machine used +{peak_used / 2**30:.2f} GiB")
    print(json.dumps({"images": summary["images"], "scored": summary["scored"], "failed": summary["failed"],
                      "wall_seconds": round(seconds, 1), "images_per_s": round(summary["images"] / seconds, 1),
                      "startup_seconds": summary["startup_seconds"], "steady_images_per_s": summary["steady_images_per_s"],
                      "peak_tree_rss_gib": round(peak_tree / 2**30, 3),
                      "peak_machine_used_gib": round(peak_used / 2**30, 3), "archive_mib": round(size / 2**20, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
