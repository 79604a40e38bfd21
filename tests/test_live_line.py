"""The bulk driver's live line on its own: each job's word for what it did, and a rate a person can read
when it is below one a second (a forms job's first pages), with a real clock thread and committer."""

from __future__ import annotations

import io
import re
import time

import pyarrow as pa
from rich.console import Console

from hdr_dist.bulk import driver
from hdr_dist.bulk.actor import NODE
from hdr_dist.bulk.committer import Committer
from hdr_dist.jobs.forms import FORMS
from hdr_dist.jobs.score import SCORE


def test_rates_keep_two_digits_below_ten_and_are_whole_above():
    shown = {r: driver.rate_text(r) for r in (0, 0.0004, 0.0423, 0.42, 2.027, 9.94, 9.96, 12.6, 2472.3)}
    assert shown == {
        0: "0",
        0.0004: "<0.001",
        0.0423: "0.042",
        0.42: "0.42",
        2.027: "2.0",
        9.94: "9.9",
        9.96: "10",
        12.6: "13",
        2472.3: "2,472",
    }


def live_line(tmp_path, job, total: int | None) -> str:
    """What the clock prints first, without a terminal, for 4 rows (one an error) of a job that has been
    starting for ten seconds: a rate below one a second."""
    out = io.StringIO()
    received = driver.Received()
    committer = Committer(tmp_path / job.item, pa.schema([("n", pa.int64())]), rows=100, seconds=3600)
    clock = driver.Clock(received, committer, total, Console(file=out, width=200), job.item, job.done)
    clock.started -= 10  # as if the pipeline had been starting for ten seconds
    clock.start()
    received.add(pa.table({"error": [None, None, None, "not an image"], NODE: ["node-a"] * 4}))
    deadline = time.monotonic() + 15
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.1)
    clock.stop()
    clock.check()
    return out.getvalue()


def test_each_job_says_its_own_word_and_a_rate_below_one(tmp_path):
    # forms knows no total (a PDF's pages are known once it is open): its line comes every 10 s.
    forms = live_line(tmp_path, FORMS, None)
    assert re.fullmatch(r"read 4 pages, 0\.\d\d pages/s, 1 errors\n", forms), forms
    # score's comes at each tenth of its total as well: 4 of 40 is the first.
    score = live_line(tmp_path, SCORE, 40)
    assert re.fullmatch(r"scored 4/40 images \(10 %\), 0\.\d\d img/s, 1 errors\n", score), score
