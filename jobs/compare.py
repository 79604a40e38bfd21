"""Train and compare the CNN and LSTM (or any --models) with Ray Train; see ``--help``.

Run it as ``python jobs/compare.py`` on one machine, or on a cluster as
``ray job submit --working-dir . -- python jobs/compare.py``.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the project may not be pip-installed on the
# cluster; the uploaded checkout is, so make its package importable from here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.jobs.compare import main

if __name__ == "__main__":
    raise SystemExit(main(prog="jobs/compare.py"))
