"""Sweep a deep model's hyperparameters with Ray Tune: ``python jobs/tune.py --model cnn --num-samples 16``.

Runs as it is, or under ``ray job submit --working-dir . -- python jobs/tune.py ...``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, when run from a checkout

from hdr_dist.jobs.tune import main

if __name__ == "__main__":
    raise SystemExit(main(prog="jobs/tune.py"))
