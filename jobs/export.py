"""Export a trained model as one ONNX or TorchScript file with its metadata; see ``--help``
and docs/export.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.jobs.export import main

if __name__ == "__main__":
    raise SystemExit(main(prog="jobs/export.py"))
