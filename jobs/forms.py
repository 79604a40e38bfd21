"""Read scanned forms by a template; see ``--help``.

Run it as ``python jobs/forms.py`` on one machine, or on a cluster as
``ray job submit --working-dir . -- python jobs/forms.py``.
"""

import sys
from pathlib import Path

# Under `ray job submit --working-dir .` the project may not be pip-installed on the
# cluster; the uploaded checkout is, so make its package importable from here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.jobs.forms import main

if __name__ == "__main__":
    raise SystemExit(main(prog="jobs/forms.py"))
