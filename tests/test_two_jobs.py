"""Two jobs on one machine at once, each on the private Ray it starts: both finish quietly, and Ray Train's
placement-group cleaner, which asks Ray's state API about its own cluster, still frees a dead run's
workers while another Ray runs beside it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT

# The smallest compare that trains with Ray Train: one worker, one epoch of two batches.
TINY = ["--models", "cnn", "--limit-train", "500", "--limit-test", "100", "--epochs", "1", "--workers", "1"]
# A second job's Ray, started the way the jobs start theirs, up until its stdin closes.
SECOND_RAY = (
    "import sys; from hdr_dist.common import cluster; "
    "cluster.start_private(num_cpus=1, include_dashboard=False, logging_level='ERROR'); "
    "print('up', flush=True); sys.stdin.read()"
)


def own_env() -> dict[str, str]:
    """This environment without a cluster to join, so that each job starts a Ray of its own."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}


@pytest.mark.ray
def test_two_jobs_at_once_finish_without_a_traceback(tmp_path):
    jobs = {}
    for name in ("a", "b"):
        with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
            command = [
                sys.executable,
                str(ROOT / "jobs" / "compare.py"),
                *TINY,
                "--output",
                str(tmp_path / name),
            ]
            jobs[name] = subprocess.Popen(command, stdout=out, stderr=err, env=own_env(), cwd=tmp_path)
    for name, job in jobs.items():
        assert job.wait(timeout=300) == 0, (tmp_path / f"{name}.err").read_text()[-3000:]
    for name in jobs:
        err = (tmp_path / f"{name}.err").read_text()
        assert "multiple active Ray" not in err, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert (tmp_path / name / "metrics.parquet").is_file()


@pytest.fixture
def another_ray():
    """Another job's Ray on this machine, up for the length of the test."""
    ray = subprocess.Popen(
        [sys.executable, "-c", SECOND_RAY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=own_env(),
    )
    try:
        assert ray.stdout.readline().strip() == "up"
        yield
    finally:
        ray.stdin.close()
        ray.wait(timeout=60)


def test_the_placement_group_cleaner_frees_a_dead_runs_workers_beside_another_ray(ray_cluster, another_ray):
    """The cleaner as Train's callback launches it, watching a stand-in controller; the group is the test's
    own, so that only the cleaner removes it once the controller is killed."""
    import ray
    from ray.train.v2._internal.execution.controller.placement_group_cleaner import PlacementGroupCleaner
    from ray.util.placement_group import placement_group, placement_group_table

    group = placement_group([{"CPU": 1}])
    ray.get(group.ready(), timeout=60)

    @ray.remote(num_cpus=0)
    class Controller:
        def watched_over(self, group) -> None:
            cleaner = (
                ray.remote(num_cpus=0)(PlacementGroupCleaner)
                .options(lifetime="detached")
                .remote(
                    controller_actor_id=ray.get_runtime_context().get_actor_id(),
                    check_interval_s=0.2,
                    get_actor_timeout_s=5,
                    stop_timeout=2,
                )
            )
            ray.get(cleaner.register_placement_group.remote(group))
            ray.get(cleaner.start_monitoring.remote())

    controller = Controller.remote()
    ray.get(controller.watched_over.remote(group), timeout=60)
    ray.kill(controller)
    deadline = time.monotonic() + 30
    while placement_group_table(group)["state"] != "REMOVED" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert placement_group_table(group)["state"] == "REMOVED"
