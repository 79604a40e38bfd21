"""Draw a results folder's figures and write its report.html; see ``--help``.

``compare``, ``tune`` and ``score`` (with labels) write their report themselves;
this redraws one, e.g. after copying a cluster's results to a laptop.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.jobs.report import main

if __name__ == "__main__":
    raise SystemExit(main(prog="jobs/report.py"))
