"""The README's cluster path for real: `ray start --head` on 127.0.0.1, then `ray job submit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from hdr_dist import data, samples
from tests.conftest import ROOT, free_port

BIN = Path(sys.executable).parent


@pytest.fixture
def head():
    """A head node of its own (own ports, own temp dir), stopped by killing exactly its processes.

    ``ray stop`` would also kill the test session's cluster, so it is not used.
    """
    temp_dir = tempfile.mkdtemp(prefix="hdr-head-", dir="/tmp")  # short: Ray's socket paths are limited
    # Every port of its own: the test session's Ray already holds the defaults (agent: 52365).
    port, dash, agent = free_port(), free_port(), free_port()
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}
    subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
                    "--port", str(port), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
                    "--dashboard-agent-listen-port", str(agent),
                    "--num-cpus", "2", "--temp-dir", temp_dir, "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=180)
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        # `ray start` recorded this head as "the current cluster"; later drivers must not look for it.
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and f":{port}" in current.read_text():
            current.unlink()


def submit(address: str, env: dict, job: list[str]) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(ROOT), "--", "python", *job]
    deadline = time.time() + 120
    while True:  # `ray start` returns before the head's job agent accepts jobs
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        if "No available agent to submit job" not in result.stderr or time.time() > deadline:
            return result
        time.sleep(3)


def test_job_submit_runs_compare_then_score_on_the_head(head, tmp_path):
    address, env = head
    out = tmp_path / "results"
    result = submit(address, env, ["jobs/compare.py", "--limit-train", "400", "--limit-test", "100", "--epochs", "1",
                                   "--models", "cnn", "--output", str(out)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout + result.stderr
    metrics = pq.read_table(out / "metrics.parquet").to_pydict()
    assert metrics["model"] == ["cnn"] and metrics["epochs"] == [1]
    assert Path(metrics["checkpoint"][0]).is_file()

    ds = data.load("mnist", limit_test=30)
    samples.write(tmp_path / "scans.zip", samples.entries(ds.test.x, ds.test.y, ds.labels))
    scored = tmp_path / "scored"
    result = submit(address, env, ["jobs/score.py", str(tmp_path / "scans.zip"), "--model", str(out),
                                   "--output", str(scored), "--labels-from", "dirname"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = pads.dataset(scored / "predictions", format="parquet").to_table().to_pylist()
    assert len(rows) == 30 and all(r["error"] is None and r["model"] == "cnn" for r in rows)
    assert json.loads((scored / "summary.json").read_text())["scored"] == 30
