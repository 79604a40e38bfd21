"""Field models end to end on the session's real Ray cluster: a small crnn trained by compare beside
the segmentation baseline, resumed after Ctrl-C, then a zip of rendered fields scored with a
labels CSV, Parquet read back and its metrics recounted by hand."""

from __future__ import annotations

import base64
import csv
import io
import json
import signal
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hdr_dist.data import fields
from hdr_dist.imaging import images, preprocess
from hdr_dist.inference.readers import FIELD
from hdr_dist.jobs import compare, score
from hdr_dist.models import checkpoints
from tests.helpers import (
    checkpoint_files,
    driver_with_a_checkpoint,
    open_page,
    save_corrections,
    table,
)

# About 300 training fields (2,000 digits in fields of 1 to 12), one epoch.
SMALL = ["--limit-train", "2000", "--limit-test", "200", "--epochs", "1", "--batch-size", "16"]


@pytest.fixture(scope="module")
def field_models(ray_cluster, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fields-compare")
    assert compare.main([*SMALL, "--models", "cnn,crnn", "--output", str(out)]) == 0
    return out


def test_compare_tests_crnn_beside_the_segmentation_baseline(field_models):
    m = {r["model"]: r for r in pq.read_table(field_models / "metrics.parquet").to_pylist()}
    assert set(m) == {"cnn", "crnn", "cnn-segmented"}
    crnn, seg = m["crnn"], m["cnn-segmented"]
    for row in (crnn, seg):
        assert all(0.0 <= row[k] <= 1.0 for k in ("field_accuracy", "field_accuracy_5"))
        assert row["cer"] >= 0
        assert row["accuracy"] == pytest.approx(max(0.0, 1 - row["cer"]))
    assert m["cnn"]["field_accuracy"] is None  # a digit model has no field figures of its own
    # Both field readers quote a read rate at 1 % error on the 5-digit scans (readers.read_rate, tested by
    # hand in test_calibration); a digit model has none.
    for row in (crnn, seg):
        assert 0.0 <= row["read_rate_at_0.01"] <= 1.0
        assert 0.0 <= row["read_error_at_0.01"] <= 1.0
    assert m["cnn"]["read_rate_at_0.01"] is None
    assert seg["checkpoint"] is None
    assert seg["method"].startswith("connected components")
    # The field model is calibrated like the digit models: a temperature and the validation curve.
    state = checkpoints.load(crnn["checkpoint"])
    assert state["temperature"] == pytest.approx(crnn["temperature"])
    assert state["val_risk_coverage"]["risk"]
    # Accuracy by length: both readers, on the same test fields (each of the 200 test digits once).
    lengths = pq.read_table(field_models / "field_lengths.parquet").to_pylist()
    counts = {
        name: {r["length"]: r["fields"] for r in lengths if r["model"] == name}
        for name in ("crnn", "cnn-segmented")
    }
    assert counts["crnn"] == counts["cnn-segmented"]
    assert set(counts["crnn"]) <= set(range(1, fields.MAX_DIGITS + 1))
    assert 150 <= sum(n * k for n, k in counts["crnn"].items()) <= 200
    assert {
        r["split"]
        for r in pq.read_table(field_models / "risk_coverage.parquet").to_pylist()
        if r["model"] == "crnn"
    } == {"val", "test"}
    page = (field_models / "report.html").read_text()
    assert "field_lengths.png" in page
    assert "5-digit field %" in page
    assert (field_models / "figures/field_lengths.png").is_file()


def test_crnn_training_resumes_after_ctrl_c(ray_cluster, tmp_path):
    args = [
        "--models",
        "crnn",
        "--limit-train",
        "2000",
        "--limit-test",
        "100",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--output",
        str(tmp_path),
    ]
    driver = driver_with_a_checkpoint(ray_cluster, args, tmp_path, stderr=subprocess.PIPE, text=True)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130
    assert "interrupted; run the same command again to resume" in err
    first = checkpoints.load(checkpoint_files(tmp_path)[0])["history"][0]
    assert compare.main(args) == 0
    h = table(tmp_path, "history")
    assert h["epoch"] == [1, 2, 3]
    assert h["model"] == ["crnn"] * 3
    assert h["seconds"][0] == first["seconds"]  # epoch 1 came from the checkpoint, not a re-run


def edit_distance(a: str, b: str) -> int:
    """Levenshtein by the textbook table, to check the library's count against."""
    d = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, cb in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (ca != cb))
    return d[len(b)]


@pytest.fixture(scope="module")
def field_zip(mnist, tmp_path_factory) -> tuple[Path, Path, dict]:
    """A zip of 12 rendered fields (1 to 12 digits, test digits, PNG and JPEG, with form lines), a blank
    field and one far too wide; and a labels CSV naming each field's digit string."""
    folder = tmp_path_factory.mktemp("field-zip")
    rng = np.random.default_rng(4)
    picks = fields.picks_of(rng.permutation(len(mnist.test.y)), np.arange(1, 13))
    scans = fields.scans(
        mnist.test.x, mnist.test.y, picks, [28 + 3 * i for i in range(12)], ["PNG", "JPEG"] * 6, seed=9
    )
    truth = {}
    archive = folder / "fields.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i, (text, data) in enumerate(scans):
            name = f"forms/field{i:02d}.{'png' if i % 2 == 0 else 'jpg'}"
            z.writestr(name, data)
            truth[name] = text
        for name, gray in (("blank.png", np.full((40, 200), 235, np.uint8)), ("wide.png", wide_field())):
            out = io.BytesIO()
            Image.fromarray(gray).save(out, "PNG")
            z.writestr(name, out.getvalue())
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *truth.items()])
    return archive, labels, truth


def wide_field() -> np.ndarray:
    wide = np.full((20, 3000), 255, np.uint8)
    for left in range(10, 2990, 30):  # a hundred dots in a row: ink 2,976 wide and 6 high
        wide[7:13, left : left + 6] = 0
    return wide


def test_score_reads_a_zip_of_fields(ray_cluster, field_models, field_zip, tmp_path, capsys):
    archive, labels, truth = field_zip
    out = tmp_path / "out"
    assert (
        score.main(
            [
                str(archive),
                "--model",
                str(field_models),
                "--model-name",
                "crnn",
                "--output",
                str(out),
                "--labels",
                str(labels),
                "--threshold",
                "0.5",
                "--batch-size",
                "5",
            ]
        )
        == 0
    )
    assert "character error rate" in capsys.readouterr().out
    rows = {
        r["member"]: r for r in pads.dataset(out / "predictions", format="parquet").to_table().to_pylist()
    }
    assert set(rows) == set(truth) | {"blank.png", "wide.png"}  # every input has its row
    assert rows["blank.png"]["error"] == "blank image"
    assert rows["blank.png"]["decision"] == "review"
    assert rows["wide.png"]["error"].startswith("field too wide: its ink is 2976x6 pixels")
    scored = [rows[name] for name in truth]
    for r in scored:
        assert r["error"] is None
        assert r["model"] == "crnn"
        assert r["pred"] is None
        assert r["topk_labels"] is None
        assert r["text"] == r["pred_label"]
        assert set(r["text"]) <= set("0123456789")
        assert len(r["char_confidences"]) == len(r["text"])
        assert 0 <= r["confidence"] <= 1
        assert all(0 < c <= 1 for c in r["char_confidences"])
        assert r["decision"] == ("accept" if r["confidence"] >= 0.5 else "review")

    # The actors read what the model reads in memory from the same images, at the same temperature.
    state = checkpoints.for_scoring(str(field_models), "crnn")[0]
    model, cfg = checkpoints.model_from_state(state)
    with zipfile.ZipFile(archive) as z:
        strips = [
            images.strip_of(images.to_field(np.asarray(Image.open(z.open(name)).convert("L")))[0])
            for name in truth
        ]
    reads = FIELD.read(
        FIELD.step_logits(model, strips, cfg.mean, cfg.std), state.temperature, list(cfg.labels)
    )
    assert [r[0] for r in reads] == [r["text"] for r in scored]
    assert [r[2] for r in reads] == pytest.approx([r["confidence"] for r in scored], rel=1e-3)

    # The metrics, recounted by hand from the rows: exact matches, and edits over true characters.
    m = pq.read_table(out / "metrics.parquet").to_pylist()[0]
    assert m["field_accuracy"] == pytest.approx(np.mean([r["text"] == truth[r["member"]] for r in scored]))
    edits = sum(edit_distance(truth[r["member"]], r["text"]) for r in scored)
    assert m["cer"] == pytest.approx(edits / sum(len(t) for t in truth.values()))
    lengths = pq.read_table(out / "field_lengths.parquet").to_pylist()
    assert {r["length"]: r["fields"] for r in lengths} == dict.fromkeys(range(1, 13), 1)
    assert "field_lengths.png" in (out / "report.html").read_text()
    assert (out / "figures/field_lengths.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warnings"] == []
    assert summary["failed"] == 2
    assert summary["scored"] == 12
    queue = pq.read_table(out / "review" / "queue.parquet").to_pylist()
    assert {r["member"] for r in queue} == {r["member"] for r in rows.values() if r["decision"] == "review"}
    assert 'img class="strip"' in (out / "review" / "review.html").read_text()


def test_a_digit_model_given_fields_is_warned_about(ray_cluster, digits_model, field_zip, tmp_path, capsys):
    archive, _, truth = field_zip
    out = tmp_path / "out"
    assert score.main([str(archive), "--model", str(digits_model), "--output", str(out)]) == 0
    said = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["warnings"]) == 1
    assert "look like fields of several digits" in summary["warnings"][0]
    assert "warning: " in said
    assert "compare --models crnn" in said


def test_field_labels_must_be_strings_of_digits(ray_cluster, field_models, field_zip, tmp_path, capsys):
    archive, _, truth = field_zip
    bad = tmp_path / "labels.csv"
    bad.write_text("path,label\nforms/field00.png,12a4\n")
    assert (
        score.main(
            [
                str(archive),
                "--model",
                str(field_models),
                "--model-name",
                "crnn",
                "--output",
                str(tmp_path / "out"),
                "--labels",
                str(bad),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "not strings of the characters field model crnn reads" in err[0]
    assert "'12a4'" in err[0]


def test_preprocessing_keeps_the_aspect_ratio_and_polarity():
    """A field 3 times as wide as high stays so, whatever its size and ink colour."""
    dark = np.full((60, 180), 230, np.uint8)
    for left in range(20, 160, 20):
        dark[10:50, left : left + 4] = 20  # seven dark strokes on light paper: ink 124 wide, 40 high
    for gray in (dark, 255 - dark, np.asarray(Image.fromarray(dark).resize((90, 30)))):
        strip = preprocess.to_strip(gray)
        ink = np.flatnonzero((strip > 0.5).any(0))
        assert strip.shape[0] == preprocess.STRIP_HEIGHT
        assert strip.max() > 0.9  # white ink on black
        assert (ink[-1] - ink[0] + 1) / preprocess.STRIP_INK == pytest.approx(124 / 40, rel=0.08)


def test_field_review_page_round_trip(ray_cluster, field_models, field_zip, tmp_path, browser):
    """The review page of a field model, in chromium: each row shows the strip the model read and the
    digit string as its guess; a correction is a string of digits, saved as a CSV that scoring reads back."""
    archive, _, truth = field_zip
    out = tmp_path / "out"
    assert (
        score.main(
            [
                str(archive),
                "--model",
                str(field_models),
                "--model-name",
                "crnn",
                "--output",
                str(out),
                "--threshold",
                "1",
            ]
        )
        == 0
    )
    queue = pq.read_table(out / "review" / "queue.parquet").to_pylist()
    assert len(queue) == len(truth) + 2  # at threshold 1 every field is reviewed, and the two errors
    page, trouble = open_page(browser, out / "review" / "review.html")
    shown = page.locator("tr.item").evaluate_all("""trs => trs.map(tr => ({
        path: JSON.parse(tr.dataset.key)[0],
        strip: tr.querySelector('img.strip') && tr.querySelector('img.strip').src,
        height: tr.querySelector('img.strip') ? tr.querySelector('img.strip').naturalHeight : 0,
        guesses: Array.from(tr.querySelectorAll('button.guess'), b => b.dataset.label)}))""")
    assert [s["path"] for s in shown] == [r["path"] for r in queue]
    state = checkpoints.for_scoring(str(field_models), "crnn")[0]
    model, cfg = checkpoints.model_from_state(state)
    for s, r in zip(shown, queue):
        if r["error"] is not None:
            assert s["strip"] is None
            continue
        # A field read as no digits has no guess to click (an empty button would label it "").
        assert s["height"] == preprocess.STRIP_HEIGHT
        assert s["guesses"] == ([r["text"]] if r["text"] else [])
        # The strip is what the model read: reading it again gives the row's digit string.
        strip = (
            np.asarray(Image.open(io.BytesIO(base64.b64decode(s["strip"].split(",", 1)[1]))), np.float32)
            / 255
        )
        read = FIELD.read(
            FIELD.step_logits(model, [strip], cfg.mean, cfg.std), state.temperature, list(cfg.labels)
        )
        assert read[0][0] == r["text"]
    first = next(i for i, r in enumerate(queue) if r["error"] is None)
    label = page.locator("input.label").nth(first)
    label.fill("12a4")
    page.click("#save")
    assert "has a character the model does not read" in page.inner_text("#status")
    label.fill(truth[queue[first]["member"]])
    corrections = save_corrections(page, tmp_path / "corrections.csv")
    assert trouble == []
    again = tmp_path / "again"
    assert (
        score.main(
            [
                str(archive),
                "--model",
                str(field_models),
                "--model-name",
                "crnn",
                "--output",
                str(again),
                "--labels",
                str(corrections),
            ]
        )
        == 0
    )
    labelled = [r for r in pads.dataset(again / "predictions").to_table().to_pylist() if r["true_label"]]
    assert [(r["member"], r["true_label"]) for r in labelled] == [
        (queue[first]["member"], truth[queue[first]["member"]])
    ]
