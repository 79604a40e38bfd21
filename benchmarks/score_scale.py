"""Scoring at archive scale: the whole ``hdr score`` job against a plain loop, at 20,000, 50,000 and
``--images`` scans in archives; memory, time to the first row written, and every row present.

    python benchmarks/score_scale.py [--model results] [--images 200000] [--archives 8]

The scans are MNIST's 70,000 digits rendered as scans (dark ink on white paper; 28 or 64 px; PNG
or JPEG), cycled to each size and split over ``--archives`` archives, alternately .tar.gz and .zip
(made once under ``--folder``, then reused). For each size, in one run:

- the plain loop, what one would write without Ray, in a process of its own: open each archive
  with ``tarfile`` or ``zipfile``, decode each member with Pillow, the same preprocessing, batched
  torch inference on all the cores;
- ``hdr score`` on the archives, in this process, against a local Ray that is already up (as a
  cluster would be), timed from the call to the written output, as a user runs it (its defaults).
  Memory is sampled every half second over this process and Ray's (the job's driver and every
  worker): the peak of their summed resident memory (shared pages such as the object store are
  counted once per process that maps them, so this over-counts) and the machine's used memory above
  where it was. The time to the first row is until the first Parquet piece is on disk. The rows
  are read back and counted.

``whole_vs_plain`` is the job's rate over its whole wall time against the plain loop's, at the
largest size. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peak_memory import Peak  # noqa: E402 - the package is imported after sys.path is set
from hdr_dist.data import datasets, samples  # noqa: E402 - the package is imported after sys.path is set

SIZES = (20_000, 50_000)  # measured beside --images


def make_archives(folder: Path, n: int, count: int) -> list[Path]:
    paths = [folder / f"forms-by-label-{i:02d}.{'tar.gz' if i % 2 == 0 else 'zip'}" for i in range(count)]
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    ds = datasets.load("mnist")
    x, y = (
        np.concatenate([ds.train.x, ds.val.x, ds.test.x]),
        np.concatenate([ds.train.y, ds.val.y, ds.test.y]),
    )
    per = -(-n // count)
    for a, path in enumerate(paths):

        def images(a=a):
            for i in range(a * per, min(n, (a + 1) * per)):
                j = i % len(x)
                size, fmt = (28, 64)[i % 2], ("PNG", "JPEG")[(i // 2) % 2]
                yield (
                    f"{ds.labels[y[j]]}/batch-{i // 5000:03d}/{i:07d}.{samples.EXTENSIONS[fmt]}",
                    samples.render(x[j], size, fmt),
                )

        tmp = path.with_name("tmp-" + path.name)
        samples.write(tmp, images())
        tmp.rename(path)
        print(f"made {path}", flush=True)
    return paths


def members(path: Path):
    """Each file's bytes, as one reads an archive without a framework."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir():
                    yield z.read(info)
    else:
        with tarfile.open(path, "r:*") as t:
            for m in t:
                if m.isfile():
                    yield t.extractfile(m).read()


def first_piece(out: Path, start: float, found: dict, stop: threading.Event) -> None:
    """Seconds from ``start`` until the first Parquet piece of rows is on disk (in the output or its
    work folder)."""
    while not stop.wait(0.2):
        if any(
            next(p.glob("predictions/*.parquet"), None) for p in (out, out.with_name(out.name + ".partial"))
        ):
            found["seconds"] = time.perf_counter() - start
            return


def job(archives: list[Path], model: str) -> dict:
    import pyarrow.dataset as pads

    from hdr_dist.jobs import score

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        found, stop = {}, threading.Event()
        start = time.perf_counter()
        watcher = threading.Thread(target=first_piece, args=(out, start, found, stop), daemon=True)
        watcher.start()
        with Peak(os.getpid(), interval=0.5) as peak:
            code = score.main(
                [*map(str, archives), "--model", model, "--output", str(out), "--labels-from", "dirname"]
            )
        seconds = time.perf_counter() - start
        stop.set()
        if code != 0:
            raise SystemExit(f"hdr score failed with status {code}")
        summary = json.loads((out / "summary.json").read_text())
        rows = pads.dataset(out / "predictions", format="parquet").count_rows()
    return {
        "images": summary["images"],
        "rows": rows,
        "scored": summary["scored"],
        "failed": summary["failed"],
        "seconds": round(seconds, 1),
        "images_per_s": round(summary["images"] / seconds, 1),
        "startup_seconds": summary["startup_seconds"],
        "steady_images_per_s": summary["steady_images_per_s"],
        "first_row_seconds": round(found.get("seconds", seconds), 1),
        "peak_tree_rss_gib": round(peak.tree / 2**30, 3),
        "peak_machine_used_gib": round(peak.machine / 2**30, 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="results", help="compare output folder or model.pt (default: %(default)s)"
    )
    p.add_argument("--images", type=int, default=200_000)
    p.add_argument("--archives", type=int, default=8)
    p.add_argument("--folder", type=Path, default=Path("results-bench/scale"))
    p.add_argument(
        "--batch-size", type=int, default=512, help="the plain loop's batch (default: %(default)s)"
    )
    p.add_argument("--plain", nargs="+", type=Path, help=argparse.SUPPRESS)  # the plain loop's own process
    args = p.parse_args()
    if args.plain:
        from benchmarks.score_throughput import plain_loop

        print(
            json.dumps(plain_loop((d for a in args.plain for d in members(a)), args.model, args.batch_size))
        )
        return 0

    from hdr_dist.common import cluster

    sizes = sorted({s for s in SIZES if s < args.images} | {args.images})
    sets = {n: make_archives(args.folder / f"{n}", n, args.archives) for n in sizes}
    cluster.connect(None)  # a local Ray, up before any clock starts, as a cluster would be
    figures = {"cpus": os.cpu_count(), "archives": args.archives}
    for n in sizes:
        mib = sum(a.stat().st_size for a in sets[n]) / 2**20
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--batch-size",
                str(args.batch_size),
                "--plain",
                *map(str, sets[n]),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        base = json.loads(done.stdout.strip().splitlines()[-1])
        r = job(sets[n], args.model)
        r |= {
            "archive_mib": round(mib, 1),
            "plain_images_per_s": round(base["images_per_s"], 1),
            "whole_vs_plain": round(r["images_per_s"] / base["images_per_s"], 3),
            "steady_vs_plain": round(r["steady_images_per_s"] / base["images_per_s"], 3),
            "every_row": r["rows"] == n == r["images"],
        }
        print(
            f"{n:,} scans ({mib:,.0f} MiB of archives): plain loop {base['images_per_s']:,.0f} img/s; "
            f"the job {r['images_per_s']:,.0f} img/s whole ({r['whole_vs_plain']:.2f}x), "
            "first row written at "
            f"{r['first_row_seconds']:.1f} s, start-up {r['startup_seconds']:.1f} s, then "
            f"{r['steady_images_per_s']:,.0f} img/s ({r['steady_vs_plain']:.2f}x); {r['rows']:,} rows, "
            f"{r['failed']:,} errors; peak memory: tree {r['peak_tree_rss_gib']:.2f} GiB, "
            f"machine +{r['peak_machine_used_gib']:.2f} GiB",
            flush=True,
        )
        figures[str(n)] = r
    top = figures[str(args.images)]
    figures |= {
        "images": args.images,
        "whole_vs_plain": top["whole_vs_plain"],
        "every_row": all(figures[str(n)]["every_row"] for n in sizes),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
