"""Faults in the middle of real runs on the session's Ray cluster: an inference actor, a decode
task's worker and a Ray Train worker killed with SIGKILL. Each job still finishes, with every input
exactly once (score) or every epoch exactly once (compare)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from hdr_dist.data import samples
from tests.helpers import ROOT, driver_with_a_checkpoint

IMAGES = 8000


def ray_process(title: str) -> psutil.Process | None:
    """A live process of the session cluster whose title (Ray sets ``ray::<task or actor>``) holds
    ``title``."""
    for p in psutil.Process().children(recursive=True):
        try:
            if title in " ".join(p.cmdline()):
                return p
        except psutil.Error:
            continue
    return None


def kill_when_running(driver: subprocess.Popen, title: str, timeout: float = 180) -> int:
    """SIGKILL the first process running ``title`` while ``driver`` still runs; its pid."""
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        p = ray_process(title)
        if p is not None:
            p.send_signal(signal.SIGKILL)
            assert driver.poll() is None, (
                "the job had ended before the kill: not a fault in the middle of a run"
            )
            return p.pid
        time.sleep(0.01)
    raise AssertionError(f"no process ran {title!r} while the job ran")


@pytest.fixture(scope="module")
def scans(mnist, tmp_path_factory) -> Path:
    """8,000 scans, 64 and 200 px: enough work that a fault lands in the middle of it."""
    folder = tmp_path_factory.mktemp("fault-scans")
    x = mnist.test.x
    samples.write(
        folder,
        ((f"{i % 10}/{i:05d}.png", samples.render(x[i % len(x)], (64, 200)[i % 2])) for i in range(IMAGES)),
    )
    return folder


def score_driver(ray_cluster, scans: Path, model: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "jobs" / "score.py"),
            str(scans),
            "--model",
            str(model),
            "--output",
            str(out),
            "--batch-size",
            "64",
            "--address",
            ray_cluster.address_info["address"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_each_input_once(out: Path) -> None:
    t = pads.dataset(out / "predictions", format="parquet").to_table(columns=["source", "page", "error"])
    keys = list(zip(t["source"].to_pylist(), t["page"].to_pylist()))
    assert len(keys) == len(set(keys)) == IMAGES
    assert t["error"].null_count == IMAGES
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["images_this_run"], summary["scored"]) == (IMAGES, IMAGES, IMAGES)
    assert sum(summary["images_by_node"].values()) == IMAGES


@pytest.mark.parametrize(
    "title",
    ["MapBatches(Predictor)", "MapBatches(decode_batch)"],
    ids=["inference-actor", "decode-task-worker"],
)
def test_a_killed_score_process_costs_no_input(ray_cluster, scans, digits_model, tmp_path, title):
    driver = score_driver(ray_cluster, scans, digits_model, tmp_path / "out")
    if title == "MapBatches(Predictor)":
        # Once the actor has results out, so that work in flight and work done are both at stake.
        deadline = time.time() + 180
        while not ray_process(title) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(2)
    killed = kill_when_running(driver, title)
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    assert_each_input_once(tmp_path / "out")


def test_a_killed_train_worker_resumes_from_its_checkpoint(ray_cluster, tmp_path):
    """--max-failures 1: Ray Train restarts the workers, which go on from the last checkpoint."""
    args = [
        "--models",
        "cnn",
        "--limit-train",
        "3000",
        "--limit-test",
        "200",
        "--epochs",
        "3",
        "--max-failures",
        "1",
        "--output",
        str(tmp_path),
    ]
    driver = driver_with_a_checkpoint(
        ray_cluster, args, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    time.sleep(1)  # into epoch 2
    kill_when_running(driver, "ray::RayTrainWorker")
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out
    assert "[cnn] resuming after epoch" in out  # the workers restarted from a checkpoint, not from scratch
    h = pq.read_table(tmp_path / "history.parquet").to_pydict()
    assert h["epoch"] == [1, 2, 3]
    assert pq.read_table(tmp_path / "metrics.parquet").to_pydict()["epochs"] == [3]
