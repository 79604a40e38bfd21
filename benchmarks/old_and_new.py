"""A benchmark of this checkout against the same benchmark at an older commit, in one run.

    python benchmarks/old_and_new.py --old e39491d --rounds 2 --keys job.steady_images_per_s \\
        -- benchmarks/score_throughput.py --model MODEL --no-commit-cost

The older commit is checked out once into a git worktree (``results-bench/old-COMMIT``). Each round
runs the benchmark there and here, the order alternating from round to round, each in its own
process with ``PYTHONPATH`` and the working folder set to its tree, so the driver and every Ray worker
import that tree's ``hdr_dist`` (checked before the first round). Each run's last line is its JSON;
``--keys`` picks the figures to set side by side (dotted paths into it, or arithmetic over its
top-level figures). The plain loop inside such a
benchmark is its own baseline; here the baseline is the old commit, measured in the same run. The last
line is JSON: per key, each side's runs, their medians and new/old.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worktree(commit: str) -> Path:
    """The old commit's tree, made once and reused."""
    where = ROOT / "results-bench" / f"old-{commit}"
    if not where.exists():
        where.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), commit], check=True
        )
    return where


def environment(tree: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    return env


def imports_from(tree: Path) -> str:
    """Where a process started as the benchmark's is imports ``hdr_dist`` from."""
    code = "import hdr_dist, os; print(os.path.dirname(os.path.dirname(hdr_dist.__file__)))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=environment(tree), cwd=tree, capture_output=True, text=True
    )
    return out.stdout.strip()


def run(tree: Path, command: list[str], log: Path) -> dict:
    """One benchmark run in ``tree``: its last JSON line, and its wall time."""
    start = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(
            [sys.executable, *command], env=environment(tree), cwd=tree, stdout=f, stderr=subprocess.STDOUT
        )
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{command[0]} in {tree} failed (exit {done.returncode}); see {log}")
    return json.loads(lines[-1]) | {"wall_seconds": round(time.perf_counter() - start, 1)}


def pick(found: dict, key: str):
    """A dotted path into a run's JSON, or arithmetic over its top-level figures (``pages /
    (job_pipeline_seconds - job_startup_seconds)``: a rate an older benchmark never printed)."""
    if any(op in key for op in "/-+*("):
        return eval(
            key, {"__builtins__": {}}, {k: v for k, v in found.items() if isinstance(v, (int, float))}
        )
    for part in key.split("."):
        found = found[part]
    return found


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="the older commit (a hash or a ref)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating (default: 2)")
    p.add_argument("--keys", required=True, help="comma list of keys into each run's JSON line")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the benchmark script and its flags")
    args = p.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the benchmark after --")
    trees = {"old": worktree(args.old), "new": ROOT}
    for side, tree in trees.items():
        found = imports_from(tree)
        if Path(found) != tree:
            raise SystemExit(f"the {side} side imports hdr_dist from {found}, not {tree}")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    print(f"CPU: {cpu}; old {args.old} in {trees['old']}; new: this checkout")
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    logs = ROOT / "results-bench" / "old-and-new-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for n in range(args.rounds):
        for side in ("old", "new") if n % 2 == 0 else ("new", "old"):
            found = run(trees[side], command, logs / f"{side}-{n}.log")
            runs[side].append(found)
            print(
                f"round {n + 1} {side}: " + ", ".join(f"{k} {pick(found, k)}" for k in args.keys.split(","))
            )
    summary = {"cpu": cpu, "old": args.old, "command": command, "figures": {}}
    for key in args.keys.split(","):
        values = {side: [pick(r, key) for r in found] for side, found in runs.items()}
        medians = {side: statistics.median(v) for side, v in values.items()}
        ratio = medians["new"] / medians["old"] if medians["old"] else None
        summary["figures"][key] = {"runs": values, "median": medians, "new_over_old": ratio}
        shown = f"{ratio:.3f}" if ratio is not None else "n/a (old 0)"
        print(f"{key}: old {medians['old']:.4g}, new {medians['new']:.4g}, new/old {shown}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
