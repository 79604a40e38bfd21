"""Hostile and odd inputs end to end: ``jobs/score.py`` on the session's real Ray cluster over every
kind ``tests/hostile.py`` builds. Each source's exact rows and error text, the job's exit status,
what summary.json counts, and the peak memory of every process while the job runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import pyarrow.dataset as pads
import pytest

from benchmarks.peak_memory import Peak
from hdr_dist.common import names, tables
from hdr_dist.data import hostile
from tests.helpers import ROOT

# A read or decode task holds at most a block of 32 MiB plus one member of at most 256 MiB, which
# decoding copies once; the bound is what that allows, far below what the inputs would take whole
# (tens of GiB for the zip bomb, 9.6 TB for the naive speck mask of the 2 x 20,000,000 strip).
PROCESS_BOUND = 3 * 2**30


@pytest.fixture(scope="module")
def hostile_run(ray_cluster, mnist, digits_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cases = hostile.build(root / "in", mnist.test.x)
    out = root / "out"
    # The TIFF named a second time, as its own INPUT: scored once.
    argv = [
        sys.executable,
        str(ROOT / "jobs" / "score.py"),
        str(root / "in"),
        str(root / "in" / "thousands-of-pages.tif"),
        "--model",
        str(digits_model),
        "--output",
        str(out),
        "--address",
        ray_cluster.address_info["address"],
    ]
    # Every process below this one: the job's driver, and the session cluster's daemons and workers.
    with Peak(os.getpid(), descendants_only=True) as peak:
        job = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    return cases, out, job.returncode, job.stdout, job.stderr, peak


def test_every_hostile_input_finishes_with_exit_0(hostile_run):
    _, out, code, stdout, stderr, _ = hostile_run
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert not (out.parent / "out.partial").exists()
    assert "skipped 5 desktop junk files" in stdout
    assert "1 files named twice" in stdout


def test_each_source_has_exactly_its_rows(hostile_run):
    cases, out, *_ = hostile_run
    rows = (
        pads.dataset(out / "predictions", format="parquet", schema=tables.PREDICTION_SCHEMA)
        .to_table()
        .to_pylist()
    )
    by_source = defaultdict(list)
    for r in rows:
        by_source[names.unescape(r["source"])].append(r)
    assert set(by_source) == {str(c.path) for c in cases}
    for case in cases:
        got = by_source[str(case.path)]
        if case.pages:
            assert sorted(r["page"] for r in got) == list(range(case.pages)), case.path
            assert {r["pages"] for r in got} == {case.pages}
            continue
        if case.path.name == "truncated.tar.gz":  # where the cut falls decides how many members come first
            archive = [r for r in got if r["member"] is None]
            assert len(archive) == 1
            assert archive[0]["error"].startswith("corrupt archive: ")
            assert archive[0]["error"].endswith("the rest was not read")
            members = sorted(r["member"] for r in got if r["member"] is not None)
            assert 0 < len(members) < 8
            assert members == [f"{i}.png" for i in range(len(members))]
            continue
        assert len(got) == len(case.rows), case.path
        errors = {(r["member"], r["occurrence"]): r["error"] for r in got}
        assert set(errors) == set(case.rows), case.path
        for key, start in case.rows.items():
            if start is None:
                assert errors[key] is None, (case.path, key, errors[key])
            else:
                assert errors[key] is not None, (case.path, key, errors[key])
                assert errors[key].startswith(start), (case.path, key, errors[key])
                assert "\n" not in errors[key]


def test_every_row_is_one_member_occurrence_and_page(hostile_run):
    _, out, *_ = hostile_run
    t = pads.dataset(out / "predictions", format="parquet").to_table(
        columns=["source", "member", "occurrence", "page"]
    )
    keys = list(zip(*(t[c].to_pylist() for c in t.column_names)))
    assert len(keys) == len(set(keys))


def test_names_that_are_not_utf8_are_kept_losslessly(hostile_run):
    cases, out, *_ = hostile_run
    t = pads.dataset(out / "predictions", format="parquet").to_table(columns=["source", "member", "error"])
    sources = set(t["source"].to_pylist())
    latin1 = next(c.path for c in cases if b"\xe9" in bytes(c.path))
    assert names.escape(str(latin1)) in sources
    assert str(latin1).encode("utf-8", "surrogateescape") == bytes(latin1)
    assert any(
        s.endswith("back\\\\xslash.png") for s in sources
    )  # a real backslash, told apart from an escape
    assert "n\\xe4me.png" in t["member"].to_pylist()


def test_summary_counts_each_image_once_and_the_skipped(hostile_run):
    cases, out, *_ = hostile_run
    summary = json.loads((out / "summary.json").read_text())
    rows = pads.dataset(out / "predictions", format="parquet").count_rows()
    assert summary["images"] == summary["images_this_run"] == rows == summary["scored"] + summary["failed"]
    assert summary["skipped_junk"] == 5
    assert summary["skipped_duplicates"] == 1
    assert summary["checkpoint_sha256"]
    assert summary["model"] == "cnn"


def test_peak_memory_of_every_process_stays_bounded(hostile_run):
    *_, peak = hostile_run
    print("peak memory while scoring the hostile set:", peak.gib())
    assert 0 < peak.process < PROCESS_BOUND, peak.gib()
