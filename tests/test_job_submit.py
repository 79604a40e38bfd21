"""The README's cluster path for real, multi-node on one machine: a head and a second node, each
started by `ray start` as its own processes with its own CPU, and jobs sent with `ray job submit`.

The second node runs in a mount namespace of its own where one folder, ``node-local``, is a
private tmpfs: the one path on this machine that the head sees and that node does not, as a
worker's own disk would be on a real cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from hdr_dist import models
from hdr_dist.data import datasets, samples
from hdr_dist.models.config import TrainConfig
from tests.helpers import ROOT, free_port

BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")


def can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    return (
        subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True
        ).returncode
        == 0
    )


def wait_for_nodes(gcs: str, env: dict, count: int, timeout: float = 120) -> None:
    """Until the cluster has ``count`` live nodes (asked by a driver of its own: this process
    belongs to the test session's Ray)."""
    script = (
        f"import ray, time; ray.init(address={gcs!r}, logging_level='ERROR'); t = time.time() + {timeout}\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {count} and time.time() < t: time.sleep(1)\n"
        f"assert sum(n['Alive'] for n in ray.nodes()) >= {count}, ray.nodes()"
    )
    subprocess.run(
        [sys.executable, "-c", script], env=env, check=True, capture_output=True, timeout=timeout + 60
    )


@pytest.fixture(scope="module")
def cluster():
    """Head (2 CPUs) and a second node (2 CPUs), both on 127.0.0.1 with ports and a temp dir of their own.

    Stopped by killing exactly their processes: ``ray stop`` would also kill the test session's Ray.
    """
    temp_dir = tempfile.mkdtemp(prefix="hdr-mn-", dir="/tmp")  # short: Ray's socket paths are limited
    node_local = Path(temp_dir) / "node-local"
    node_local.mkdir()
    port, dash = free_port(), free_port()
    gcs = f"127.0.0.1:{port}"
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}
    common = ["--num-cpus", "2", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    subprocess.run(
        [
            RAY,
            "start",
            "--head",
            "--port",
            str(port),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dash),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--temp-dir",
            f"{temp_dir}/ray",
            *common,
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    second = [
        RAY,
        "start",
        "--address",
        gcs,
        "--block",
        "--dashboard-agent-listen-port",
        str(free_port()),
        *common,
    ]
    isolated = can_unshare()
    if isolated:
        second = [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            f'mount -t tmpfs tmpfs {node_local} && exec "$0" "$@"',
            *second,
        ]
    node = subprocess.Popen(
        second, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_nodes(gcs, env, 2)
        yield {
            "address": f"http://127.0.0.1:{dash}",
            "gcs": gcs,
            "env": env,
            "temp_dir": temp_dir,
            "node_local": node_local if isolated else None,
        }
    finally:
        os.killpg(node.pid, 9)
        subprocess.run(["pkill", "-9", "-f", temp_dir], check=False)
        subprocess.run(["pkill", "-9", "-f", f"address {gcs}"], check=False)
        # `ray start` recorded this head as "the current cluster"; later drivers must not look for it.
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and f":{port}" in current.read_text():
            current.unlink()
        shutil.rmtree(temp_dir, ignore_errors=True)


def submit(cluster: dict, job: list[str], *flags: str) -> subprocess.CompletedProcess:
    cmd = [
        RAY,
        "job",
        "submit",
        "--address",
        cluster["address"],
        "--working-dir",
        str(ROOT),
        *flags,
        "--",
        "python",
        *job,
    ]
    deadline = time.time() + 120
    while True:  # `ray start` returns before the head's job agent accepts jobs
        result = subprocess.run(
            cmd, env=cluster["env"], capture_output=True, text=True, timeout=600, cwd=ROOT
        )
        if "No available agent to submit job" not in result.stderr or time.time() > deadline:
            return result
        time.sleep(3)


def job_cli(cluster: dict, *args: str) -> str:
    return subprocess.run(
        [RAY, "job", *args, "--address", cluster["address"]],
        env=cluster["env"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


SMALL = ["--limit-train", "400", "--limit-test", "100", "--epochs", "1", "--models", "cnn"]


def test_compare_then_score_spread_over_two_nodes(cluster, tmp_path):
    out = tmp_path / "results"
    result = submit(cluster, ["jobs/compare.py", *SMALL, "--output", str(out)])  # --workers auto
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout + result.stderr
    # Ray's note on Train's PreemptionWatcher is not about the run: it is in the output's log, not the job's.
    assert "max_restarts > 0" not in result.stdout + result.stderr
    assert "PreemptionWatcher" in (out / "ray-notices.log").read_text()
    metrics = pq.read_table(out / "metrics.parquet").to_pydict()
    assert metrics["model"] == ["cnn"]
    assert metrics["epochs"] == [1]
    # auto: a worker per core of every node, so both nodes train; the run says where its workers ran.
    assert metrics["num_workers"] == [4]
    assert metrics["threads_per_worker"] == [1]
    assert metrics["num_nodes"] == [2]
    assert "Ray Train: 4 worker(s) x 1 CPU(s)" in result.stdout + result.stderr
    assert Path(metrics["checkpoint"][0]).is_file()

    ds = datasets.load("mnist", limit_test=1200)
    for i in range(4):  # four archives: four read tasks, blocks enough for both inference actors
        part = slice(300 * i, 300 * (i + 1))
        samples.write(
            tmp_path / f"scans-{i}.zip", samples.entries(ds.test.x[part], ds.test.y[part], ds.labels)
        )
    scored = tmp_path / "scored"
    result = submit(
        cluster,
        [
            "jobs/score.py",
            *(str(tmp_path / f"scans-{i}.zip") for i in range(4)),
            "--model",
            str(out),
            "--output",
            str(scored),
            "--labels-from",
            "dirname",
            "--concurrency",
            "2",
            "--cpus-per-actor",
            "1.5",
            "--batch-size",
            "64",
        ],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = pads.dataset(scored / "predictions", format="parquet").to_table().to_pylist()
    assert len(rows) == 1200
    assert all(r["error"] is None and r["model"] == "cnn" for r in rows)
    summary = json.loads((scored / "summary.json").read_text())
    assert summary["scored"] == 1200
    by_node = summary["images_by_node"]
    assert len(by_node) == 2, by_node
    assert all(n > 0 for n in by_node.values()), by_node
    assert sum(by_node.values()) == 1200, by_node
    assert pq.read_table(scored / "metrics.parquet").to_pydict()["num_nodes"] == [2]


def test_node_local_paths_are_refused_before_work_starts(cluster, tmp_path):
    local = cluster["node_local"]
    if local is None:
        pytest.skip("needs `unshare` (user and mount namespaces) to give the second node a path of its own")
    result = submit(cluster, ["jobs/compare.py", *SMALL, "--output", str(local / "results")])
    assert result.returncode != 0
    line = (
        f"jobs/compare.py: error: --output {local / 'results'}: a node-local path; 1 of the cluster's 2 nodes"
    )
    assert line in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not list((local / "results").iterdir())  # no marker or checkpoint left behind

    # --storage-path elsewhere on the same node-local folder; the output itself is shared.
    result = submit(
        cluster,
        ["jobs/compare.py", *SMALL, "--output", str(tmp_path / "ok"), "--storage-path", str(local / "ckpt")],
    )
    assert (
        "jobs/compare.py: error: --storage-path " + str(local / "ckpt") + ": a node-local path"
        in result.stdout
    )
    scans = tmp_path / "scans"
    ds = datasets.load("mnist", limit_test=20)
    samples.write(scans, samples.entries(ds.test.x, ds.test.y, ds.labels))
    model = tmp_path / "model.pt"  # an untrained cnn: these runs stop before scoring
    cfg = TrainConfig.from_recipe("cnn", ds)
    torch.save({"model": models.from_config(cfg).state_dict(), "config": cfg.as_dict()}, model)
    result = submit(
        cluster, ["jobs/score.py", str(scans), "--model", str(model), "--output", str(local / "scored")]
    )
    assert f"jobs/score.py: error: --output {local / 'scored'}: a node-local path" in result.stdout
    assert not (local / "scored").exists()
    assert not (local / "scored.partial").exists()
    local_scans = local / "scans"
    shutil.copytree(scans, local_scans)
    result = submit(
        cluster,
        ["jobs/score.py", str(local_scans), "--model", str(model), "--output", str(tmp_path / "scored")],
    )
    assert f"jobs/score.py: error: INPUT {local_scans}: a node-local path" in result.stdout


def test_a_run_waits_for_the_node_it_needs(cluster, tmp_path):
    """--workers 3 on two nodes of one worker each: the job waits, saying so, until a third node joins."""
    out = tmp_path / "results"
    result = submit(
        cluster,
        [
            "jobs/compare.py",
            *SMALL,
            "--workers",
            "3",
            "--cpus-per-worker",
            "2",
            "--placement-timeout",
            "300",
            "--output",
            str(out),
        ],
        "--no-wait",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job = re.search(r"(raysubmit_\w+)", result.stdout + result.stderr).group(1)
    deadline = time.time() + 180
    while "waiting up to 300 s for nodes" not in job_cli(cluster, "logs", job):
        assert time.time() < deadline, job_cli(cluster, "logs", job)[-3000:]
        time.sleep(2)
    subprocess.run(
        [
            RAY,
            "start",
            "--address",
            cluster["gcs"],
            "--num-cpus",
            "2",
            "--node-ip-address",
            "127.0.0.1",
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--disable-usage-stats",
        ],
        env=cluster["env"],
        check=True,
        capture_output=True,
        timeout=180,
    )
    deadline = time.time() + 400
    while not re.search(r"succeeded|failed|stopped", status := job_cli(cluster, "status", job), re.I):
        assert time.time() < deadline, status
        time.sleep(3)
    assert f"Job '{job}' succeeded" in status, job_cli(cluster, "logs", job)[-3000:]
    metrics = pq.read_table(out / "metrics.parquet").to_pydict()
    assert metrics["num_workers"] == [3]
    assert metrics["num_nodes"] == [3]
