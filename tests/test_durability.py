"""A score job that is killed, starved of disk or handed an impossible --model keeps its work.

The driver is SIGKILLed before its first commit, in the middle and while it writes its summary; the
disk fills up on a real tmpfs; --model names a real FIFO, a device and real oversized or implausible
checkpoint files. Each run is a real ``jobs/score.py`` process on the session's Ray cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from hdr_dist.bulk import committer
from hdr_dist.data import samples
from hdr_dist.jobs import score
from tests.helpers import ROOT

IMAGES = 3000
PIECE = 250  # --commit-rows: 12 pieces, so a kill has several committed pieces to keep


@pytest.fixture(scope="module")
def scans(mnist, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("durable-scans")
    x, y = mnist.test.x, mnist.test.y
    samples.write(
        folder,
        (
            (f"{mnist.labels[y[i % len(y)]]}/{i:05d}.png", samples.render(x[i % len(x)], 64))
            for i in range(IMAGES)
        ),
    )
    return folder


def driver(ray_cluster, scans: Path, model: Path, out: Path, *flags: str, **popen) -> subprocess.Popen:
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
            "--commit-rows",
            str(PIECE),
            "--labels-from",
            "dirname",
            "--threshold",
            "0.99",
            "--address",
            ray_cluster.address_info["address"],
            *flags,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def pieces(folder: Path) -> dict[str, int]:
    """Committed pieces -> their rows."""
    found = {}
    for f in sorted(folder.glob(f"{committer.PREFIX}*.parquet")):
        try:
            found[f.name] = pq.ParquetFile(f).metadata.num_rows
        except (OSError, ValueError):  # renamed between the glob and the read: not possible for a whole piece
            raise AssertionError(f"{f} is under its final name but not whole") from None
    return found


def wait_for(job: subprocess.Popen, ready, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert job.poll() is None, f"the job ended before the kill: {job.stderr.read()}"
        assert time.time() < deadline, "the job never reached the point to kill it at"
        time.sleep(0.01)


def assert_each_input_once(out: Path) -> dict:
    t = pads.dataset(out / "predictions", format="parquet").to_table(
        columns=["source", "page", "error", "true_label"]
    )
    keys = list(zip(t["source"].to_pylist(), t["page"].to_pylist()))
    assert len(keys) == len(set(keys)) == IMAGES
    assert t["error"].null_count == IMAGES
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["scored"], summary["failed"]) == (IMAGES, IMAGES, 0)
    assert sum(pq.read_table(out / "confusion.parquet")["count"].to_pylist()) == IMAGES
    return summary


@pytest.mark.parametrize("when", ["before the first commit", "mid-way", "during the summary"])
def test_a_killed_driver_keeps_every_committed_piece(ray_cluster, scans, digits_model, tmp_path, when):
    out = tmp_path / "out"
    partial = out.with_name("out.partial")
    preds = partial / "predictions"
    job = driver(ray_cluster, scans, digits_model, out)
    if when == "before the first commit":
        wait_for(job, lambda: (partial / "run.json").is_file())
    elif when == "mid-way":
        wait_for(job, lambda: len(pieces(preds)) >= 3)
    else:  # every row committed: the job is writing the review queue, the metrics and summary.json
        wait_for(job, lambda: sum(pieces(preds).values()) == IMAGES)
    job.send_signal(signal.SIGKILL)
    job.wait()
    kept = pieces(preds)
    kept_bytes = {name: (preds / name).read_bytes() for name in kept}
    assert not out.exists()
    assert len(kept) == 0 if when.startswith("before") else sum(kept.values()) > 0
    if when == "mid-way":
        assert sum(kept.values()) < IMAGES

    time.sleep(2)  # let Ray reap the dead driver's actors
    assert (
        score.main(
            [
                str(scans),
                "--model",
                str(digits_model),
                "--output",
                str(out),
                "--batch-size",
                "64",
                "--commit-rows",
                str(PIECE),
                "--labels-from",
                "dirname",
                "--threshold",
                "0.99",
                "--resume",
            ]
        )
        == 0
    )
    summary = assert_each_input_once(out)
    # Every piece committed before the kill is kept as it was, and its images were not scored again.
    assert {name: (out / "predictions" / name).read_bytes() for name in kept} == kept_bytes
    assert summary["skipped_already_scored"] == sum(kept.values())
    assert summary["images_this_run"] == IMAGES - sum(kept.values())
    assert not list((out / "predictions").glob(".*"))  # no half-written piece is left behind


@pytest.mark.parametrize("rows, seconds", [(1000, 600), (100_000, 0.001)], ids=["by rows", "by seconds"])
def test_rows_are_committed_in_bounded_pieces(ray_cluster, scans, digits_model, tmp_path, rows, seconds):
    """Pieces of exactly --commit-rows rows (the last one fewer); with --commit-seconds short, rows
    are committed as they come, long before --commit-rows of them have."""
    out = tmp_path / "out"
    assert (
        score.main(
            [
                str(scans),
                "--model",
                str(digits_model),
                "--output",
                str(out),
                "--batch-size",
                "64",
                "--commit-rows",
                str(rows),
                "--commit-seconds",
                str(seconds),
            ]
        )
        == 0
    )
    sizes = list(pieces(out / "predictions").values())
    assert sum(sizes) == IMAGES == pads.dataset(out / "predictions", format="parquet").count_rows()
    if rows < IMAGES:
        assert sizes == [1000, 1000, 1000]
    else:
        assert len(sizes) >= 2


def in_namespace(script: str) -> subprocess.CompletedProcess:
    """``script`` as root of a user and mount namespace of its own, where it may mount a tmpfs."""
    if subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True
    ).returncode:
        pytest.fail("the full-disk test needs `unshare --user --mount` (util-linux) to mount a real tmpfs")
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_full_disk_is_one_line_and_resume_finishes(ray_cluster, scans, digits_model, tmp_path):
    """A real tmpfs with room for a few pieces only: one line naming the output, exit 2; once space
    is freed, --resume completes with every row once."""
    disk = tmp_path / "disk"
    disk.mkdir()
    job = [
        sys.executable,
        str(ROOT / "jobs" / "score.py"),
        str(scans),
        "--model",
        str(digits_model),
        "--output",
        str(disk / "out"),
        "--batch-size",
        "64",
        "--commit-rows",
        "100",
        "--labels-from",
        "dirname",
        "--address",
        ray_cluster.address_info["address"],
    ]
    command = " ".join(shlex.quote(a) for a in job)
    script = f"""set -u
mount -t tmpfs -o size=4m tmpfs {disk}
head -c $((4 * 1024 * 1024 - 96 * 1024)) /dev/zero > {disk}/ballast 2>/dev/null
{command} 2> {tmp_path}/first.err; echo "first=$?"
rm {disk}/ballast
{command} --resume > /dev/null 2> {tmp_path}/second.err; echo "second=$?"
cp -r {disk}/out {tmp_path}/out
"""
    result = in_namespace(script)
    assert "first=2" in result.stdout, result.stdout + result.stderr
    assert "second=0" in result.stdout, result.stdout + result.stderr
    # One line of ours. Ray's core worker, in C++ below Python, also notes the inference actors' restart
    # setting once per run on the driver's stderr: that line is Ray's and is left alone.
    first = [
        line
        for line in (tmp_path / "first.err").read_text().strip().splitlines()
        if "core_worker.cc" not in line
    ]
    assert len(first) == 1, first
    assert first[0].startswith(f"jobs/score.py: error: --output {disk / 'out'}: the disk is full")
    assert "--resume" in first[0]
    assert_each_input_once(tmp_path / "out")


def run_line(*argv: str) -> tuple[int, list[str], int]:
    """A score process's exit status, its stderr lines and its peak memory (KiB), however it ends."""
    wrapper = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True, "
        "timeout=120); sys.stderr.write(r.stderr); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, str(ROOT / "jobs" / "score.py"), *argv],
        capture_output=True,
        text=True,
        timeout=180,
    )
    code, peak = result.stdout.split()
    return int(code), result.stderr.strip().splitlines(), int(peak)


def giant_config(model: Path, path: Path) -> None:
    state = torch.load(model / "model.pt", weights_only=True)
    state["config"]["labels"] = "0123456789" * 500_000  # 5 MB: under the pickle's bound, over the config's
    torch.save(state, path)


def giant_pickle(model: Path, path: Path) -> None:
    state = torch.load(model / "model.pt", weights_only=True)
    state["history"] = [{"epoch": i, "note": f"{i:030d}"} for i in range(400_000)]  # a pickle of some 20 MB
    torch.save(state, path)


@pytest.mark.parametrize("kind", ["fifo", "device", "oversized", "giant config", "giant pickle", "not a zip"])
def test_an_impossible_model_is_one_line(scans, digits_model, tmp_path, kind):
    path = tmp_path / "model.pt"
    expect = {
        "fifo": "not a regular file (a FIFO): not opened",
        "device": "not a regular file (a device): not opened",
        "oversized": "more than a checkpoint holds",
        "giant config": "its config is larger than",
        "giant pickle": "its config and history take",
        "not a zip": "not a torch checkpoint",
    }[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "oversized":
        with open(path, "wb") as f:
            f.truncate((1 << 30) + 1)  # sparse: a real file of that size, no disk spent
    elif kind == "giant config":
        giant_config(digits_model, path)
    elif kind == "giant pickle":
        giant_pickle(digits_model, path)
        assert (
            next(e.file_size for e in zipfile.ZipFile(path).infolist() if e.filename.endswith("data.pkl"))
            > 8 << 20
        )
    else:
        path.write_bytes(b"PK not really a checkpoint" * 100)
    code, lines, peak_kib = run_line(str(scans), "--model", str(path), "--output", str(tmp_path / "out"))
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"jobs/score.py: error: --model {path}"), lines
    assert expect in lines[0], lines
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()
    assert peak_kib < 2 * 2**20, f"{peak_kib} KiB to refuse it"  # refused before anything large is built


def test_no_helper_actor_of_the_job_can_stop_it(ray_cluster, scans, digits_model, tmp_path):
    """The counts come from the rows the driver receives, so the job has no actor of its own to lose
    but its inference actors (tests/test_faults.py kills those). Ray Data's own statistics actor,
    killed mid-run, costs nothing either: exit 0, every row once, the counts right."""
    out = tmp_path / "out"
    job = driver(ray_cluster, scans, digits_model, out, "--commit-rows", "1000")
    wait_for(job, lambda: len(pieces(out.with_name("out.partial") / "predictions")) >= 1)
    helpers = [p for p in psutil.Process().children(recursive=True) if "_StatsActor" in " ".join(p.cmdline())]
    assert helpers, "Ray Data's statistics actor was not found"
    for p in helpers:
        p.send_signal(signal.SIGKILL)
    _, err = job.communicate(timeout=600)
    assert job.returncode == 0, err
    assert_each_input_once(out)
