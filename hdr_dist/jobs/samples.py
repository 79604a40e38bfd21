"""``python -m hdr_dist.samples``: write MNIST test images as a scan-like image set (dark ink on light
paper) in a folder or an archive, for a quick try of ``hdr score`` (``hdr_dist.data.samples``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from hdr_dist.data import datasets, samples
from hdr_dist.jobs.cli import run_job
from hdr_dist.jobs.flags import Parser

PROG = "python -m hdr_dist.samples"


def parser(prog: str = PROG) -> Parser:
    p = Parser(prog=prog, description="Write MNIST test images as scans (dark ink on light paper).")
    p.add_argument("output", type=Path, help="a folder, or a .zip / .tar / .tar.gz file")
    p.add_argument(
        "--limit", type=int, default=1000, help="images per size and format (default: %(default)s)"
    )
    p.add_argument(
        "--sizes", default="28,64,200", help="comma list of sides in pixels (default: %(default)s)"
    )
    p.add_argument(
        "--formats", default="PNG,JPEG", help="comma list of PNG, JPEG, BMP, TIFF, GIF (default: %(default)s)"
    )
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    ds = datasets.load("mnist", limit_test=args.limit)
    n = samples.write(
        args.output,
        samples.entries(
            ds.test.x,
            ds.test.y,
            ds.labels,
            [int(s) for s in args.sizes.split(",")],
            [f.upper() for f in args.formats.split(",")],
        ),
    )
    console.print(
        f"wrote {n:,} images to {args.output}", soft_wrap=True, markup=False, highlight=False, emoji=False
    )
    return 0


def main(argv=None, prog: str = PROG) -> int:
    args = parser(prog).parse_args(argv)
    return run_job(run, args, prog, "run the same command again")
