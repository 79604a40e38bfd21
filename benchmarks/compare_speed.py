"""The default compare against the default of an older commit: wall time to the same accuracy.

    python benchmarks/compare_speed.py [--old 8e13aad] [ARGS passed to both, e.g. --models cnn]

The older commit (default: the last one before ``--workers auto`` and the phase timings) is checked out
with ``git worktree`` into a temporary folder, and both defaults run back to back, on the same
machine, as a user runs them: ``python jobs/compare.py`` in a fresh process that starts its own
local Ray, timed from outside. The old one runs first. Each prints its own progress. The last line
is a JSON object: ``old_seconds``, ``new_seconds``, ``ratio`` (new / old) and the new default's
test accuracy per model (``cnn_accuracy``, ``lstm_accuracy``), with the old one's beside them, and
where the new run's time went (its ``timings.json``: seconds and share per phase, ``phase_*``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
BEFORE_WORKERS_AUTO = "8e13aad"


def timed_compare(checkout: Path, output: Path, extra: list[str]) -> tuple[float, dict, dict]:
    """Wall seconds of one compare run from ``checkout``'s code, its test accuracy per model, and its
    timings.json (empty from a commit that did not write one)."""
    env = os.environ | {"PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(checkout / "jobs" / "compare.py"), "--output", str(output), *extra],
        cwd=checkout,
        env=env,
        check=True,
    )
    seconds = time.perf_counter() - start
    rows = pq.read_table(output / "metrics.parquet", columns=["model", "accuracy"]).to_pylist()
    timings = json.loads((output / "timings.json").read_text()) if (output / "timings.json").exists() else {}
    return seconds, {r["model"]: r["accuracy"] for r in rows}, timings


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--old",
        default=BEFORE_WORKERS_AUTO,
        help="the commit whose default is the baseline (default: %(default)s)",
    )
    args, extra = p.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(old_tree), args.old],
            check=True,
        )
        try:
            old_seconds, old_acc, _ = timed_compare(old_tree, Path(tmp) / "old-results", extra)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=True
            )
        new_seconds, new_acc, timings = timed_compare(ROOT, Path(tmp) / "new-results", extra)
    print(
        f"{os.cpu_count()} CPUs; old default ({args.old}) {old_seconds:.0f} s, new default "
        f"{new_seconds:.0f} s: {new_seconds / old_seconds:.3f}x the wall time"
    )
    for model in new_acc:
        before = 100 * old_acc.get(model, float("nan"))
        print(f"  {model}: test accuracy {before:.2f} % -> {100 * new_acc[model]:.2f} %")
    figures = {
        "old_commit": args.old,
        "old_seconds": round(old_seconds, 1),
        "new_seconds": round(new_seconds, 1),
        "ratio": round(new_seconds / old_seconds, 3),
    }
    figures |= {f"{m}_accuracy": a for m, a in new_acc.items()} | {
        f"old_{m}_accuracy": a for m, a in old_acc.items()
    }
    for phase, seconds in timings.get("seconds", {}).items():
        share = timings["share"][phase]
        print(f"  new run, {phase.replace('_', ' ')}: {seconds:.1f} s ({100 * share:.1f} %)")
        figures |= {f"phase_{phase}_seconds": seconds, f"phase_{phase}_share": share}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
