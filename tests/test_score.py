"""score end to end on the session's real Ray cluster: folders and archives of real images,
Parquet read back, labels, bad inputs, resume and bad flags."""

from __future__ import annotations

import contextlib
import csv as csv_module
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from hdr_dist import models
from hdr_dist.common import tables
from hdr_dist.data import datasets, samples
from hdr_dist.inference import calibration, evaluate, readers
from hdr_dist.jobs import score
from hdr_dist.models import checkpoints
from tests.helpers import ROOT, fit_small, shared


def predictions(out: Path) -> pa.Table:
    return pads.dataset(out / "predictions", format="parquet").to_table()


def run(*argv) -> int:
    return score.main([str(a) for a in argv])


def test_folder_tar_and_zip_end_to_end(ray_cluster, mnist, digits_model, tmp_path):
    """Every image scored once; predictions match the model's in-memory ones; metrics agree with the rows."""
    x, y = mnist.test.x[:40], mnist.test.y[:40]
    n = samples.write(tmp_path / "folder", samples.entries(x, y, mnist.labels, (28,), ("PNG",)))
    n += samples.write(tmp_path / "scans.tar.gz", samples.entries(x, y, mnist.labels, (64,), ("JPEG",)))
    n += samples.write(tmp_path / "scans.zip", samples.entries(x, y, mnist.labels, (200,), ("PNG",)))
    out = tmp_path / "out"
    assert (
        run(
            tmp_path / "folder",
            tmp_path / "scans.tar.gz",
            tmp_path / "scans.zip",
            "--model",
            digits_model,
            "--output",
            out,
            "--labels-from",
            "dirname",
            "--batch-size",
            16,
        )
        == 0
    )

    t = predictions(out)
    assert t.schema.equals(tables.PREDICTION_SCHEMA)
    assert t.num_rows == n == 120
    rows = t.to_pylist()
    assert all(r["error"] is None and r["model"] == "cnn" and len(r["topk_labels"]) == 3 for r in rows)
    assert {r["member"] is None for r in rows if r["source"].endswith(".png")} == {True}
    assert {r["source"] for r in rows if r["member"] is not None} == {
        str(tmp_path / "scans.tar.gz"),
        str(tmp_path / "scans.zip"),
    }
    assert all(r["pred_label"] == r["topk_labels"][0] and r["confidence"] == r["topk_probs"][0] for r in rows)
    assert {(r["width"], r["height"]) for r in rows} == {(28, 28), (64, 64), (200, 200)}

    state = torch.load(digits_model / "model.pt", weights_only=True)
    model = models.build("cnn", 10)
    model.load_state_dict(state["model"])
    _, in_memory, _ = evaluate.predict(model, x, state["config"]["mean"], state["config"]["std"])
    by_index = {}
    for r in rows:
        by_index.setdefault(int(Path(r["member"] or r["source"]).stem), []).append(r["pred"])
    agree = np.mean([p == in_memory[i] for i, preds in by_index.items() for p in preds])
    assert agree >= 0.95

    m = pq.read_table(out / "metrics.parquet").to_pylist()[0]
    assert set(tables.METRIC_COLUMNS) <= set(m)
    correct = sum(r["pred_label"] == r["true_label"] for r in rows)
    assert m["accuracy"] == pytest.approx(correct / n)
    assert (m["scored"], m["failed"], m["unlabelled"]) == (n, 0, 0)
    cm = pq.read_table(out / "confusion.parquet").to_pydict()
    assert sum(cm["count"]) == n
    assert len(cm["count"]) == 100
    assert pq.read_table(out / "per_class.parquet").num_rows == 10
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["inputs_seen"], summary["scored"], summary["failed"]) == (n, n, 0)
    assert summary["images_per_s"] > 0
    assert not (tmp_path / "out.partial").exists()

    # Labels known: the report, with the most confident mistakes drawn from the scored images.
    from tests.helpers import check_report

    wrong = sorted((r for r in rows if r["pred_label"] != r["true_label"]), key=lambda r: -r["confidence"])
    mistakes = pq.read_table(out / "mistakes.parquet").to_pylist()
    assert [m["confidence"] for m in mistakes] == pytest.approx(
        [r["confidence"] for r in wrong][: tables.MISTAKES]
    )
    for m in mistakes:
        source, _, member = m["item"].partition("::")
        assert (source, member or None) in {(r["source"], r["member"]) for r in wrong}
        assert len(m["image"]) == 784
        assert m["true_label"] != m["pred_label"]
    check_report(
        out,
        {
            "comparison.png",
            "score_confidence.png",
            "score_errors.png",
            "confusion_cnn.png",
            "per_class_cnn.png",
        }
        | ({"mistakes_cnn.png"} if wrong else set()),
    )


def bad_inputs(folder: Path, good: bytes) -> dict[str, str]:
    """One file (or member) per kind of bad input, with the start of the error each must get."""
    folder.mkdir()
    blank = io.BytesIO()
    Image.new("L", (40, 40), 255).save(blank, "PNG")
    huge = io.BytesIO()
    Image.new("1", (3000, 3000), 1).save(huge, "PNG")
    files = {
        "empty.png": b"",
        "truncated.png": good[: len(good) // 2],
        "notes.txt": b"not an image\n",
        "blank.png": blank.getvalue(),
        "huge.png": huge.getvalue(),
        "fake.zip": b"PK\x03\x04 broken",
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    os.symlink(folder / "gone.png", folder / "dangling.png")
    with zipfile.ZipFile(folder / "members.zip", "w") as z:
        z.writestr("../escape.png", good)
        z.writestr("/absolute.png", good)
        z.writestr("ok.png", good)
    with zipfile.ZipFile(folder / "crc.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("damaged.png", good * 4)
    damaged = bytearray((folder / "crc.zip").read_bytes())
    damaged[60:70] = bytes(10)
    (folder / "crc.zip").write_bytes(bytes(damaged))
    with tarfile.open(folder / "links.tar", "w") as t:
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "ok.png"
        t.addfile(link)
    return {
        "empty.png": "empty file",
        "truncated.png": "corrupt image",
        "notes.txt": "not an image",
        "blank.png": "blank image",
        "huge.png": "image too large",
        "fake.zip": "corrupt archive",
        "dangling.png": "cannot read",
        "../escape.png": "unsafe member name",
        "/absolute.png": "unsafe member name",
        "damaged.png": "broken archive member",
        "link.png": "archive member is a link",
    }


def test_confidences_are_calibrated_by_the_checkpoints_temperature(
    ray_cluster, mnist, digits_model, tmp_path, capsys
):
    """The same images scored with the same weights at temperature 1 (a checkpoint from before
    calibration, which the job says) and at 2.5: the log-ratio of any two classes' probabilities
    is the logit gap over the temperature, so at 2.5 it is the plain one divided by 2.5."""
    samples.write(
        tmp_path / "in", samples.entries(mnist.test.x[:30], mnist.test.y[:30], mnist.labels, (28,), ("PNG",))
    )
    hot = tmp_path / "calibrated-model"
    hot.mkdir()
    (hot / "model.pt").write_bytes((digits_model / "model.pt").read_bytes())
    checkpoints.set_calibration(str(hot / "model.pt"), 2.5)
    runs = {}
    for name, model in (("plain", digits_model / "model.pt"), ("hot", hot / "model.pt")):
        assert run(tmp_path / "in", "--model", model, "--output", tmp_path / name) == 0
        said = capsys.readouterr().out
        assert ("no temperature" in said) == (name == "plain")
        runs[name] = {r["source"]: r for r in predictions(tmp_path / name).to_pylist()}
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["temperature"] == (None if name == "plain" else 2.5)
    for source, plain in runs["plain"].items():
        hot_row = runs["hot"][source]
        assert hot_row["topk_labels"] == plain["topk_labels"]
        assert hot_row["pred"] == plain["pred"]
        gap = np.log(plain["topk_probs"][0] / plain["topk_probs"][1])
        assert np.log(hot_row["topk_probs"][0] / hot_row["topk_probs"][1]) == pytest.approx(
            gap / 2.5, rel=1e-3, abs=1e-4
        )
        assert hot_row["confidence"] <= plain["confidence"] + 1e-6  # T > 1 only ever lowers the top one


def test_reject_option_splits_answers_at_the_threshold(ray_cluster, mnist, digits_model, tmp_path, capsys):
    """--target-error reads its threshold off the validation curve stored with the checkpoint; every
    scored image at or above it is accepted, the rest and every error go to review; the summary and
    the metrics say what was accepted and, with labels, how many of those were wrong."""
    x, y = mnist.test.x[:60], mnist.test.y[:60]
    samples.write(tmp_path / "in", samples.entries(x, y, mnist.labels, (28, 64), ("PNG",)))
    (tmp_path / "in" / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    model = tmp_path / "calibrated-model"
    model.mkdir()
    (model / "model.pt").write_bytes((digits_model / "model.pt").read_bytes())
    state = checkpoints.load(model / "model.pt")
    val = readers.DIGIT.test(state, {"val": (mnist.val.x, mnist.val.y)}, temperature=1.0).sets["val"]
    temperature = calibration.fit_temperature(
        calibration.class_nll(val["logits"], mnist.val.y), len(mnist.val.y)
    )
    curve = calibration.risk_coverage(*calibration.answers(val["logits"], mnist.val.y, temperature))
    checkpoints.set_calibration(str(model / "model.pt"), temperature, curve)
    expected_coverage, threshold = calibration.coverage_at(curve, 0.02)

    assert (
        run(
            tmp_path / "in",
            "--model",
            model,
            "--output",
            tmp_path / "out",
            "--labels-from",
            "dirname",
            "--target-error",
            "0.02",
        )
        == 0
    )
    assert "the rest: review" in capsys.readouterr().out
    rows = predictions(tmp_path / "out").to_pylist()
    assert len(rows) == 121
    for r in rows:
        want = "accept" if r["error"] is None and r["confidence"] >= np.float32(threshold) else "review"
        assert r["decision"] == want, r
    accepted = [r for r in rows if r["decision"] == "accept"]
    assert 0 < len(accepted) < 121
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["threshold"] == pytest.approx(threshold)
    assert summary["accepted"] == len(accepted)
    assert summary["expected_coverage"] == pytest.approx(expected_coverage)
    assert summary["threshold_source"].startswith("--target-error 0.02")
    m = pq.read_table(tmp_path / "out" / "metrics.parquet").to_pylist()[0]
    wrong = sum(r["pred_label"] != r["true_label"] for r in accepted)
    assert m["accepted_error"] == pytest.approx(wrong / len(accepted))
    assert m["accepted_coverage"] == pytest.approx(len(accepted) / 121)

    # The same rows at a threshold given directly; a resume at another threshold is refused.
    assert run(tmp_path / "in", "--model", model, "--output", tmp_path / "fixed", "--threshold", "0.99") == 0
    fixed = predictions(tmp_path / "fixed").to_pylist()
    assert {r["decision"] for r in fixed if r["error"] is not None} == {"review"}
    assert all(
        (r["decision"] == "accept") == (r["error"] is None and r["confidence"] >= np.float32(0.99))
        for r in fixed
    )
    capsys.readouterr()
    assert (
        run(
            tmp_path / "in",
            "--model",
            model,
            "--output",
            tmp_path / "fixed",
            "--threshold",
            "0.5",
            "--resume",
        )
        == 2
    )
    assert "two thresholds" in capsys.readouterr().err


def test_every_bad_input_is_a_row_with_its_error(ray_cluster, mnist, digits_model, tmp_path):
    good = samples.render(mnist.test.x[0], 28, "PNG")
    expected = bad_inputs(tmp_path / "in", good)
    tiff = io.BytesIO()
    pages = [Image.open(io.BytesIO(samples.render(mnist.test.x[i], 28, "PNG"))) for i in range(3)]
    pages[0].save(tiff, "TIFF", save_all=True, append_images=pages[1:])
    (tmp_path / "in" / "pages.tif").write_bytes(tiff.getvalue())
    out = tmp_path / "out"
    assert (
        run(tmp_path / "in", "--model", digits_model / "model.pt", "--output", out, "--max-pixels", 1_000_000)
        == 0
    )

    rows = predictions(out).to_pylist()
    errors = {
        Path(r["member"]).as_posix() if r["member"] else Path(r["source"]).name: r["error"] for r in rows
    }
    for name, start in expected.items():
        key = name if name in errors else Path(name).name
        assert errors[key] is not None, (name, errors.get(key))
        assert errors[key].startswith(start), (name, errors.get(key))
        assert "\n" not in errors[key]
    assert errors["ok.png"] is None
    assert sorted(r["page"] for r in rows if r["source"].endswith("pages.tif")) == [0, 1, 2]
    assert {r["pages"] for r in rows if r["source"].endswith("pages.tif")} == {3}
    failed = [r for r in rows if r["error"] is not None]
    assert all(r["pred"] is None and r["pred_label"] is None and r["topk_labels"] is None for r in failed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == len(expected)
    assert summary["scored"] == 4  # ok.png and 3 TIFF pages
    assert not (out / "metrics.parquet").exists()  # no labels given


def test_labels_from_csv_and_parquet(ray_cluster, mnist, digits_model, tmp_path):
    x, y = mnist.test.x[:12], mnist.test.y[:12]
    for i, img in enumerate(x):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i:02d}.png").write_bytes(samples.render(img, 28, "PNG"))
    labelled = {f"{i:02d}.png": mnist.labels[y[i]] for i in range(8)}  # the last 4 are unlabelled
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in labelled.items()))
    parquet = tmp_path / "labels.parquet"
    pq.write_table(pa.table({"path": list(labelled), "label": list(labelled.values())}), parquet)
    for i, labels in enumerate((csv, parquet)):
        out = tmp_path / f"out{i}"
        assert run(tmp_path / "in", "--model", digits_model, "--output", out, "--labels", labels) == 0
        rows = {Path(r["source"]).name: r["true_label"] for r in predictions(out).to_pylist()}
        assert rows == {f"{i:02d}.png": labelled.get(f"{i:02d}.png") for i in range(12)}
        m = pq.read_table(out / "metrics.parquet").to_pylist()[0]
        assert (m["scored"], m["unlabelled"]) == (12, 4)
        assert sum(pq.read_table(out / "confusion.parquet")["count"].to_pylist()) == 8


def test_a_labels_csv_reads_quoted_cells_back_exactly_and_parquet_as_it_is(tmp_path):
    """The quote that keeps a spreadsheet from running a name comes off a CSV's cell, and only that
    quote: any text written through ``labels.cell`` reads back as it was, a hand-written ``=5.png``
    as it is, and a Parquet file (no spreadsheet's) is never changed."""
    from hdr_dist.bulk import labels

    texts = ["=5.png", "+1", "-2", "@3", "\tx", "\rIcon", "'", "''", "'=", "'a", "a'=", "plain.png"]
    for text in [*texts, ""]:
        assert labels.uncell(labels.cell(text)) == text
        assert not labels.cell(text).startswith(tuple(labels.FORMULA_STARTS))
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as f:
        out = csv_module.writer(f)
        out.writerows([["path", "label"], *[[labels.cell(t), "1"] for t in texts], ["=hand.png", "2"]])
    assert labels.read_label_file(str(tmp_path / "labels.csv")).rows == [(t, "1") for t in texts] + [
        ("=hand.png", "2")
    ]
    pq.write_table(pa.table({"path": ["'=6.png"], "label": ["6"]}), tmp_path / "labels.parquet")
    assert labels.read_label_file(str(tmp_path / "labels.parquet")).rows == [("'=6.png", "6")]


def test_resume_adds_new_inputs_and_keeps_old_rows(ray_cluster, mnist, digits_model, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    samples.write(folder, samples.entries(mnist.test.x[:10], mnist.test.y[:10], mnist.labels))
    assert run(folder, "--model", digits_model, "--output", out) == 0
    first = {(r["source"], r["pred"]) for r in predictions(out).to_pylist()}
    samples.write(folder / "more", samples.entries(mnist.test.x[10:15], mnist.test.y[10:15], mnist.labels))
    assert run(folder, "--model", digits_model, "--output", out) == 2  # would overwrite: refused
    assert run(folder, "--model", digits_model, "--output", out, "--resume") == 0
    rows = predictions(out).to_pylist()
    assert len(rows) == 15
    assert len({r["source"] for r in rows}) == 15
    assert first <= {(r["source"], r["pred"]) for r in rows}
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["skipped_already_scored"], summary["images_this_run"], summary["images"]) == (10, 5, 15)


def test_resume_after_a_crash_drops_a_cut_file_and_finishes(ray_cluster, mnist, digits_model, tmp_path):
    """The state a crash leaves: OUTPUT.partial with written Parquet files and one cut short."""
    folder, out = tmp_path / "in", tmp_path / "out"
    samples.write(folder, samples.entries(mnist.test.x[:10], mnist.test.y[:10], mnist.labels))
    assert run(folder, "--model", digits_model, "--output", out) == 0
    work = tmp_path / "out.partial"
    out.rename(work)
    (work / "summary.json").unlink()
    good = next((work / "predictions").glob("*.parquet")).read_bytes()
    (work / "predictions" / "cut.parquet").write_bytes(good[: len(good) // 2])
    assert run(folder, "--model", digits_model, "--output", out) == 2  # an interrupted run is not thrown away
    assert run(folder, "--model", digits_model, "--output", out, "--resume") == 0
    assert not work.exists()
    assert not (out / "predictions" / "cut.parquet").exists()
    assert predictions(out).num_rows == 10
    assert json.loads((out / "summary.json").read_text())["images_this_run"] == 0


def test_killed_driver_leaves_no_complete_looking_output_and_resumes(
    ray_cluster, mnist, digits_model, tmp_path
):
    folder, out = tmp_path / "in", tmp_path / "out"
    samples.write(
        folder,
        samples.entries(mnist.test.x[:120], mnist.test.y[:120], mnist.labels, (28, 64, 200), ("PNG", "JPEG")),
    )
    args = [str(folder), "--model", str(digits_model), "--output", str(out), "--labels-from", "dirname"]
    driver = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "jobs" / "score.py"),
            *args,
            "--address",
            ray_cluster.address_info["address"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (tmp_path / "out.partial").exists() and time.time() < deadline and driver.poll() is None:
        time.sleep(0.2)
    time.sleep(3)  # the pipeline is running
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert not out.exists()
    assert (tmp_path / "out.partial").exists()
    time.sleep(2)  # let Ray reap the dead driver's actors
    assert score.main(args + ["--resume"]) == 0
    rows = predictions(out).to_pylist()
    assert len(rows) == 720
    assert len({r["source"] for r in rows}) == 720
    assert pq.read_table(out / "metrics.parquet")["scored"].to_pylist() == [720]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}", "--model", "{model}"], "no such file or folder"),
        (["{in}", "--model", "{missing}"], "--model"),
        (["{in}", "--model", "{junk}"], "not a readable hdr-dist checkpoint"),
        (["{in}", "--model", "{model}", "--model-name", "lstm"], "--model-name lstm"),
        (["{in}", "--model", "{model}", "--model-name", "cnn,lstm"], "score takes one"),
        (["{in}", "--model", "{model}", "--review-rows", "0"], "--review-rows"),
        (["{in}", "--model", "{model}", "--concurrency", "5"], "--concurrency 5"),
        (["{in}", "--model", "{model}", "--gpu", "on"], "no GPU"),
        (["{in}", "--model", "{model}", "--top-k", "0"], "--top-k"),
        (["{in}", "--model", "{model}", "--labels", "{junk}"], "--labels"),
        (["{in}", "--model", "{model}", "--labels-from", "dirname"], "'cat'"),
        (["{in}", "--model", "{model}", "--target-error", "0"], "--target-error"),
        (["{in}", "--model", "{model}", "--target-error", "1"], "--target-error"),
        (["{in}", "--model", "{model}", "--threshold", "1.5"], "--threshold"),
        (["{in}", "--model", "{model}", "--threshold", "-0.1"], "--threshold"),
        (["{in}", "--model", "{model}", "--threshold", "0.5", "--target-error", "0.01"], "not allowed with"),
        (["{in}", "--model", "{model}", "--target-error", "0.01"], "holds no validation curve"),
    ],
)
def test_bad_flags_and_paths_are_one_line(ray_cluster, mnist, digits_model, tmp_path, capsys, argv, message):
    (tmp_path / "in" / "cat").mkdir(parents=True)
    (tmp_path / "in" / "cat" / "a.png").write_bytes(samples.render(mnist.test.x[0]))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    paths = {
        "missing": tmp_path / "nope",
        "model": digits_model,
        "junk": tmp_path / "junk.pt",
        "in": tmp_path / "in",
    }
    argv = [a.format(**paths) for a in argv] + ["--output", str(tmp_path / "out")]
    flag_error = message in ("--top-k", "--review-rows", "--target-error", "--threshold", "not allowed with")
    with pytest.raises(SystemExit) if flag_error else contextlib.nullcontext():
        assert score.main(argv) == 2  # argparse exits with 2 itself for a bad flag value
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()


def test_output_that_is_not_a_score_output_is_refused(ray_cluster, mnist, digits_model, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    (tmp_path / "a.png").write_bytes(samples.render(mnist.test.x[0]))
    assert run(tmp_path / "a.png", "--model", digits_model, "--output", tmp_path / "out") == 2
    assert "not the output of hdr score" in capsys.readouterr().err
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_emnist_model_scores_letters_with_their_characters(ray_cluster, tmp_path):
    ds = datasets.load("emnist-bymerge", shared("emnist-bymerge"), limit_train=3000, limit_test=60)
    model = fit_small(ds, tmp_path / "model")
    samples.write(tmp_path / "in", samples.entries(ds.test.x, ds.test.y, ds.labels, (64,), ("PNG",)))
    assert (
        run(
            tmp_path / "in",
            "--model",
            model,
            "--output",
            tmp_path / "out",
            "--labels-from",
            "dirname",
            "--top-k",
            5,
        )
        == 0
    )
    rows = predictions(tmp_path / "out").to_pylist()
    assert len(rows) == 60
    assert all(r["error"] is None for r in rows)
    assert {r["true_label"] for r in rows} <= set(ds.labels)
    assert len({r["true_label"] for r in rows}) > 20
    assert all(r["pred_label"] in ds.labels and len(r["topk_labels"]) == 5 for r in rows)
    assert pq.read_table(tmp_path / "out" / "per_class.parquet").num_rows == 47


def test_console_script_and_job_script(tmp_path):
    for cmd in (
        [str(Path(sys.executable).parent / "hdr"), "score", "--help"],
        [sys.executable, str(ROOT / "jobs" / "score.py"), "--help"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0
        assert "--labels-from" in done.stdout


def test_resume_with_another_model_is_refused(ray_cluster, mnist, digits_model, tmp_path, capsys):
    """Rows from two checkpoints never mix in one output, finished or interrupted."""
    folder, out = tmp_path / "in", tmp_path / "out"
    samples.write(folder, samples.entries(mnist.test.x[:6], mnist.test.y[:6], mnist.labels))
    assert run(folder, "--model", digits_model, "--output", out) == 0
    state = torch.load(digits_model / "model.pt", weights_only=True)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, tmp_path / "retrained.pt")
    capsys.readouterr()
    for where in (out, tmp_path / "out.partial"):
        if where.name.endswith(".partial"):
            out.rename(where)
        assert run(folder, "--model", tmp_path / "retrained.pt", "--output", out, "--resume") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "were scored by cnn" in err
        assert "would mix two models' answers" in err
        assert where.is_dir()
        assert (where / "run.json").is_file()  # left as it was
    assert run(folder, "--model", digits_model, "--output", out, "--resume") == 0  # the same model goes on


def test_two_runs_into_one_output_at_once_are_refused(ray_cluster, mnist, digits_model, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    samples.write(
        folder, samples.entries(mnist.test.x[:120], mnist.test.y[:120], mnist.labels, (28, 200), ("PNG",))
    )
    args = [str(folder), "--model", str(digits_model), "--output", str(out)]
    first = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "jobs" / "score.py"),
            *args,
            "--address",
            ray_cluster.address_info["address"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while (
        not (tmp_path / "out.partial" / "run.json").exists()
        and time.time() < deadline
        and first.poll() is None
    ):
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended before the second could start"
    # run.json is written after the lock is taken. The first run is stopped while the others try, so it
    # cannot finish (and free its lock) before they start, however fast it scores.
    first.send_signal(signal.SIGSTOP)
    try:
        for extra in ([], ["--resume"]):
            second = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "jobs" / "score.py"),
                    *args,
                    *extra,
                    "--address",
                    ray_cluster.address_info["address"],
                ],
                capture_output=True,
                text=True,
            )
            assert second.returncode == 2, second.stderr
            assert second.stderr.count("\n") == 1, second.stderr
            assert "another hdr score is writing into it now" in second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    rows = predictions(out).to_pylist()
    assert len(rows) == 240
    assert len({(r["source"], r["page"]) for r in rows}) == 240


def test_resume_maps_each_row_to_one_member_occurrence(ray_cluster, mnist, digits_model, tmp_path):
    """A zip that repeats a name: a run cut short after the first occurrence scores only the second."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(folder / "dup.zip", "w") as z:
        for i in range(3):
            z.writestr("a.png", samples.render(mnist.test.x[i]))
    assert run(folder, "--model", digits_model, "--output", out) == 0
    rows = predictions(out).to_pylist()
    assert sorted(r["occurrence"] for r in rows) == [0, 1, 2]
    work = tmp_path / "out.partial"
    out.rename(work)
    (work / "summary.json").unlink()
    (file,) = (work / "predictions").glob("*.parquet")
    table = pq.read_table(file)
    pq.write_table(
        table.filter(pa.compute.equal(table["occurrence"], 1)), file
    )  # only the middle one was written
    assert run(folder, "--model", digits_model, "--output", out, "--resume") == 0
    rows = predictions(out).to_pylist()
    assert sorted(r["occurrence"] for r in rows) == [0, 1, 2]
    by_occurrence = {r["occurrence"]: r["pred"] for r in rows}
    assert by_occurrence == {r["occurrence"]: r["pred"] for r in table.to_pylist()}
    assert json.loads((out / "summary.json").read_text())["images_this_run"] == 2


def test_label_file_problems_are_reported_and_labels_stay_exact(
    ray_cluster, mnist, digits_model, tmp_path, capsys
):
    folder = tmp_path / "in"
    samples.write(
        folder / "x.zip",
        [("a.png", samples.render(mnist.test.x[0])), ("b.png", samples.render(mnist.test.x[1]))],
    )
    samples.write(folder / "y.zip", [("a.png", samples.render(mnist.test.x[2]))])
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text(
        "path,label\nx.zip/a.png,1\ny.zip/a.png,2\na.png,3\nx.zip/b.png,4\nx.zip/b.png,5\ny.zip/a.png,2\n"
    )
    capsys.readouterr()
    assert run(folder, "--model", digits_model, "--output", tmp_path / "out", "--labels", labels_csv) == 0
    out = capsys.readouterr().out
    got = {
        (Path(r["source"]).name, r["member"]): r["true_label"]
        for r in predictions(tmp_path / "out").to_pylist()
    }
    assert got == {("x.zip", "a.png"): "1", ("x.zip", "b.png"): None, ("y.zip", "a.png"): "2"}
    problems = json.loads((tmp_path / "out" / "summary.json").read_text())["labels"]["problems"]
    assert problems == {
        "duplicate rows": {"count": 1, "examples": ["y.zip/a.png"]},
        "rows that name no image": {"count": 1, "examples": ["a.png"]},
        "images given two labels (left unlabelled)": {
            "count": 1,
            "examples": [f"{(folder / 'x.zip').resolve()}/b.png"],
        },
    }
    assert f"--labels {labels_csv}: 1 rows that name no image: a.png" in out


def test_labels_from_dirname_skips_desktop_junk_and_uses_the_first_folder(
    ray_cluster, mnist, digits_model, tmp_path
):
    folder = tmp_path / "in"
    samples.write(
        folder / "forms.zip",
        [
            ("3/scan/a.png", samples.render(mnist.test.x[0])),
            ("__MACOSX/3/scan/._a.png", b"\x00\x05\x16\x07"),
            ("3/.DS_Store", b"Bud1"),
        ],
    )
    assert run(folder, "--model", digits_model, "--output", tmp_path / "out", "--labels-from", "dirname") == 0
    (row,) = predictions(tmp_path / "out").to_pylist()
    assert (row["member"], row["true_label"]) == ("3/scan/a.png", "3")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["skipped_junk"] == 2


def test_an_input_that_holds_nothing_is_one_line(ray_cluster, digits_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "Thumbs.db").write_bytes(b"\xd0\xcf")
    for name in ("empty", "junk"):
        assert run(tmp_path / name, "--model", digits_model, "--output", tmp_path / "out") == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"INPUT {tmp_path / name}: holds no files to score" in err
        assert not (tmp_path / "out").exists()
        assert not (tmp_path / "out.partial").exists()


def test_a_folder_thousands_of_levels_deep_is_scored_to_the_end(
    ray_cluster, digits_model, deep, tmp_path_factory
):
    """Its images at 1 and 1,100 levels are scored; the level past the system's path limit is a row."""
    (deep / "top.png").write_bytes(samples.render(datasets.load("mnist", limit_test=1).test.x[0]))
    out = tmp_path_factory.mktemp("deep-out") / "out"
    assert run(deep, "--model", digits_model, "--output", out) == 0
    rows = predictions(out).to_pylist()
    assert len(rows) == 4
    assert sum(r["error"] is None for r in rows) == 3
    assert [r["error"] for r in rows if r["error"]] == [
        "cannot list folder: File name too long; its files were not read"
    ]
