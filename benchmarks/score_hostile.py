"""The worst inputs ``hdr score`` is promised to survive, each scored to completion: wall time and
peak memory, against a polite set of ordinary scans scored in the same run.

    python benchmarks/score_hostile.py [--model results] [--members 1000000] [--pages 10000]

The cases, made once under ``--folder`` with hdr_dist/data/hostile.py's generator:
- ``zip-bomb``: a 26 MB zip whose 100 members inflate to 25 GiB (96 of zeros, 4 of zeros behind a
  PNG signature, which are read whole);
- ``million-members-zip`` and ``million-members-tar``: ``--members`` one-byte members each;
- ``extreme-aspect``: a PNG of 2 x 24,000,000 pixels (48 M, under the 50 M limit) with a stroke;
- ``tiff-pages``: a TIFF of ``--pages`` pages of MNIST digits;
- ``polite`` (the baseline): 20,000 ordinary scans, 28 and 64 px PNG, in a folder.

Each runs as ``jobs/score.py`` in its own process with its own local Ray, as a user runs it.
Memory is sampled every 0.2 s (benchmarks/peak_memory.py): the largest single process (what one
read, decode or inference task holds), the process tree, and the machine's used memory above its
start. Each case prints its rows, wall time and peaks, and the ratio of its peak process to the
polite set's. The last line is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peak_memory import Peak  # noqa: E402 - the package is imported after sys.path is set
from hdr_dist.data import (  # noqa: E402 - the package is imported after sys.path is set
    datasets,
    hostile,
    samples,
)


def make(folder: Path, members: int, pages: int) -> dict[str, Path]:
    """Each case's INPUT, made once (a ``.done`` marker beside it says it is whole)."""
    ds = datasets.load("mnist", limit_test=2000)
    cases = {
        "polite": folder / "polite",
        "zip-bomb": folder / "zip-bomb.zip",
        "million-members-zip": folder / f"members-{members}.zip",
        "million-members-tar": folder / f"members-{members}.tar",
        "extreme-aspect": folder / "extreme-aspect.png",
        "tiff-pages": folder / f"pages-{pages}.tif",
    }
    makers = {
        "polite": lambda p: samples.write(
            p,
            (
                (
                    f"{ds.labels[ds.test.y[i % 2000]]}/{i:05d}.png",
                    samples.render(ds.test.x[i % 2000], (28, 64)[i % 2]),
                )
                for i in range(20_000)
            ),
        ),
        "zip-bomb": lambda p: zip_bomb(p),
        "million-members-zip": lambda p: tiny_zip(p, members),
        "million-members-tar": lambda p: tiny_tar(p, members),
        "extreme-aspect": lambda p: strip(p),
        "tiff-pages": lambda p: p.write_bytes(hostile.tiff(ds.test.x, pages)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in cases.items():
        done = path.with_name(path.name + ".done")
        if not done.exists():
            start = time.perf_counter()
            makers[name](path)
            done.touch()
            print(f"made {path} in {time.perf_counter() - start:.0f} s", flush=True)
    return cases


def zip_bomb(path: Path) -> None:
    payload, crc = hostile.deflated_zeros(hostile.BOMB_MEMBER)
    looks_png, png_crc = hostile.deflated_zeros(hostile.BOMB_MEMBER, b"\x89PNG\r\n\x1a\n")
    entries = [
        hostile.Entry(f"zeros-{i:03d}.bin".encode(), payload, hostile.BOMB_MEMBER, crc, method=8)
        for i in range(96)
    ]
    entries += [
        hostile.Entry(f"looks-like-{i}.png".encode(), looks_png, hostile.BOMB_MEMBER, png_crc, method=8)
        for i in range(4)
    ]
    hostile.write_zip(path, entries)


def tiny_zip(path: Path, n: int) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            z.writestr(f"{i // 1000:04d}/{i:07d}", b"x")


def tiny_tar(path: Path, n: int) -> None:
    with tarfile.open(path, "w") as t:
        for i in range(n):
            info = tarfile.TarInfo(f"{i // 1000:04d}/{i:07d}")
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))


def strip(path: Path) -> None:
    img = np.full((2, 24_000_000), 255, np.uint8)
    img[:, 11_000_000:11_000_500] = 0
    Image.fromarray(img).save(path, "PNG")


def score(case: Path, model: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        job = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "jobs" / "score.py"),
                str(case),
                "--model",
                model,
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        with Peak(job.pid, interval=0.2) as peak:
            _, err = job.communicate()
        seconds = time.perf_counter() - start
        if job.returncode != 0:
            raise SystemExit(f"jobs/score.py {case} failed with status {job.returncode}: {err[-2000:]}")
        summary = json.loads((out / "summary.json").read_text())
    return {
        "rows": summary["images"],
        "scored": summary["scored"],
        "failed": summary["failed"],
        "wall_seconds": round(seconds, 1),
        **peak.gib(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="results", help="compare output folder or model.pt (default: %(default)s)"
    )
    p.add_argument("--members", type=int, default=1_000_000, help="members of each tiny-member archive")
    p.add_argument("--pages", type=int, default=10_000, help="pages of the TIFF")
    p.add_argument("--folder", type=Path, default=Path("results-bench/hostile"))
    p.add_argument("--cases", help="comma list of cases to run (default: all)")
    args = p.parse_args()
    cases = make(args.folder, args.members, args.pages)
    wanted = ["polite"] + [c for c in (args.cases.split(",") if args.cases else cases) if c != "polite"]
    results = {}
    for name in wanted:
        r = results[name] = score(cases[name], args.model)
        r["peak_process_vs_polite"] = round(r["peak_process_gib"] / results["polite"]["peak_process_gib"], 2)
        r["wall_vs_polite"] = round(r["wall_seconds"] / results["polite"]["wall_seconds"], 2)
        print(
            f"{name:20s} {r['rows']:>9,} rows ({r['failed']:,} errors) in {r['wall_seconds']:6.1f} s "
            f"({r['wall_vs_polite']:.2f}x polite); peak: largest process {r['peak_process_gib']:.2f} GiB "
            f"({r['peak_process']}, {r['peak_process_vs_polite']:.2f}x polite), tree "
            f"{r['peak_tree_rss_gib']:.2f} GiB, machine +{r['peak_machine_used_gib']:.2f} GiB",
            flush=True,
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
