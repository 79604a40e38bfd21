"""Score image folders and archives: ``python jobs/score.py INPUT... --model PATH --output DIR``.

Runs as it is, or under ``ray job submit --working-dir . -- python jobs/score.py ...``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, when run from a checkout

from hdr_dist.jobs.score import main

if __name__ == "__main__":
    raise SystemExit(main(prog="jobs/score.py"))
