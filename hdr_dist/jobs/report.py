"""``hdr report`` / ``python jobs/report.py``: redraw a results folder's figures and report.html,
e.g. after copying a cluster's results to a laptop.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from hdr_dist.jobs.cli import run_job
from hdr_dist.jobs.flags import Parser
from hdr_dist.reports.html_report import write_report

DESCRIPTION = (
    "Draw the figures of a compare, tune or score output folder and write "
    "RESULTS_DIR/report.html with them embedded."
)


def parser(prog: str = "hdr report") -> Parser:
    p = Parser(prog=prog, description=DESCRIPTION)
    p.add_argument("results", metavar="RESULTS_DIR", help="a compare, tune or score --output folder")
    return p


def run(args: argparse.Namespace, console: Console) -> int:
    path = write_report(args.results)
    console.print(f"report: {path} ({len(list((path.parent / 'figures').glob('*.png')))} figures)")
    return 0


def main(argv=None, prog: str = "hdr report") -> int:
    args = parser(prog).parse_args(argv)
    return run_job(run, args, prog, "run the same command again")
