"""Ray's notices that are not about the user's run are kept off the terminal, in full in a log file;
every other line, Ray's real warnings included, passes as it came. The lines here are Ray 2.60's own,
as its driver prints them (colour codes and all); a Ray that rewords them fails here first."""

from __future__ import annotations

import io
import sys

from hdr_dist.common import ray_notices

PREEMPTION = (
    "\x1b[36m(TrainController pid=24399)\x1b[0m [2026-12-03 02:51:56,114 E 24399 24428] core_worker.cc:2465: "
    "Actor with class name: 'PreemptionWatcher' and ID: 'e2f4c94bbe5c4bcae4fd002801000000' has constructor "
    "arguments in the object store and max_restarts > 0. If the arguments in the object store go out of "
    "scope or are lost, the actor restart will fail. See https://github.com/ray-project/ray/issues/53727 "
    "for more details."
)
COORDINATOR = [
    f"\x1b[36m(TrainController pid=5120)\x1b[0m {line}"
    for line in (
        "Failed to send resource request for train-run-4f1e. If this only happens transiently during network "
        "partition or CPU being overloaded, it's safe to ignore this error. If this error persists, "
        "file a GitHub issue.",
        "Traceback (most recent call last):",
        '  File "/venv/lib/python3.11/site-packages/ray/train/v2/_internal/execution/scaling_policy/'
        'autoscaling_coordinator_client.py", line 58, in send_resource_request',
        "    ray.get(",
        "ray.exceptions.GetTimeoutError: Get timed out: some object(s) not ready.",
    )
]
PROGRESS = (
    "\x1b[36m(RayTrainWorker pid=24543)\x1b[0m [cnn] epoch 1/1 step 2/8 loss 2.3610 acc 9.38% 2,152 img/s"
)
REAL_WARNING = (
    "\x1b[36m(RayTrainWorker pid=24543)\x1b[0m WARNING: object store is full, spilling objects to disk "
    "(this is a real warning and must reach the terminal)"
)
OURS = "jobs/compare.py: error: --models nope: unknown model"


def test_notices_go_to_the_log_and_the_rest_to_the_terminal(tmp_path):
    terminal = io.StringIO()
    stream = ray_notices.Filtered(terminal, tmp_path / "ray-notices.log")
    for line in [PROGRESS, PREEMPTION, *COORDINATOR, PROGRESS, *COORDINATOR, REAL_WARNING, OURS]:
        print(line, file=stream)
    stream.flush()
    shown = terminal.getvalue().splitlines()
    note = shown[1]
    assert shown == [PROGRESS, note, PROGRESS, REAL_WARNING, OURS]
    assert note.startswith("note: Ray Train's autoscaling coordinator")
    assert str(tmp_path / "ray-notices.log") in note
    assert sum(line.startswith("note:") for line in shown) == 1  # once per kind, however often Ray says it
    logged = (tmp_path / "ray-notices.log").read_text().splitlines()
    assert len(logged) == 1 + 2 * len(COORDINATOR)
    assert "PreemptionWatcher" in logged[0]
    assert "GetTimeoutError" in logged[-1]


def test_a_line_written_in_parts_and_a_partial_line_at_the_end(tmp_path):
    terminal = io.StringIO()
    stream = ray_notices.Filtered(terminal, tmp_path / "log")
    stream.write(PREEMPTION[:40])
    stream.write(PREEMPTION[40:] + "\n" + "no newline yet")
    assert terminal.getvalue() == ""
    stream.flush()
    assert terminal.getvalue() == "no newline yet"
    assert "PreemptionWatcher" in (tmp_path / "log").read_text()


def test_the_job_restores_stderr(tmp_path):
    before = sys.stderr
    with ray_notices.kept_off_the_terminal(tmp_path / "log"):
        assert isinstance(sys.stderr, ray_notices.Filtered)
    assert sys.stderr is before
