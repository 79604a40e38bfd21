"""hdr forms end to end on the session's Ray cluster: sample pages in every format (PNG, JPEG, TIFF, G4
TIFF, PDF) in a zip, with stray pages, an upside-down page, an encrypted and a truncated PDF; rows and
metrics recounted here from the truth; --resume after Ctrl-C; bad templates; registration recovering a
known transform; the review page in chromium with its corrections read back."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hdr_dist.bulk import inputs
from hdr_dist.bulk import labels as bulk_labels
from hdr_dist.common.errors import UserError
from hdr_dist.forms import registration, samples, truth
from hdr_dist.forms import template as templates
from hdr_dist.jobs import forms
from tests.helpers import ROOT, kept_models, open_page, save_corrections

DATA = ROOT / "tests" / "data"
# Member names a spreadsheet would run as formulas (OWASP's CSV injection), and a name that starts with
# the quote that guards them. No slash: in a name it would be a folder (and "//" one empty folder less).
FORMULA_NAMES = ['=HYPERLINK("evil.example","y").png', "+1.png", "-2.png", "@3.png", "'=4.png"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A compare-style folder naming the calibrated cnn and crnn checkpoints kept in tests/data."""
    return kept_models(tmp_path_factory.mktemp("form-models"))


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """Sample pages in every format, zipped as an operations team receives them, plus odd pages: another
    form, a blank sheet, an upside-down form, an encrypted PDF and a truncated one."""
    root = tmp_path_factory.mktemp("forms")
    samples.write(root, pages=14, seed=3)
    rng, digits = np.random.default_rng(5), samples.Digits(5)
    form = samples.reference()
    filled, truth = samples.fill(form, digits, rng)
    upside, _ = samples.scan(filled, rng, upside_down=True)
    upside.save(root / "pages" / "upside-down.png")
    with open(root / "truth.csv", "a", newline="") as f:
        csv.writer(f).writerows([["upside-down.png", 0, k, v] for k, v in truth.items()])
    other, _ = samples.scan(samples.stray("other-form", rng), rng)
    blank, _ = samples.scan(samples.stray("blank", rng), rng)
    other.save(root / "pages" / "another-form.png")
    blank.save(root / "pages" / "blank.jpg", quality=85)
    pdf = (root / "pages").glob("*.pdf").__next__().read_bytes()
    (root / "pages" / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    encrypted(pdf, root / "pages" / "encrypted.pdf")
    (root / "pages" / "garbage.png").write_bytes(np.random.default_rng(1).bytes(5000))
    (root / "pages" / "empty.tif").write_bytes(b"")
    with zipfile.ZipFile(root / "batch.zip", "w") as z:
        for f in sorted((root / "pages").iterdir()):
            z.write(f, f.name)
    return root


def encrypted(pdf: bytes, out: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt("secret")
    with out.open("wb") as f:
        writer.write(f)


def run(*argv) -> int:
    return forms.main([str(a) for a in argv])


def read_csv(path: Path, reader=csv.DictReader) -> list:
    """Every row of a CSV file, the file closed again."""
    with open(path) as f:
        return list(reader(f))


def truth_of(root: Path) -> dict[tuple, str]:
    return {(r["path"], int(r["page"]), r["field"]): r["label"] for r in read_csv(root / "truth.csv")}


def test_a_zip_of_pages_in_every_format_reads_one_row_per_page_and_per_zone(
    ray_cluster, models, batch, tmp_path
):
    out = tmp_path / "out"
    assert (
        run(
            batch / "batch.zip",
            "--template",
            batch / "claim-v1.yaml",
            "--model",
            models,
            "--output",
            out,
            "--labels",
            batch / "truth.csv",
            "--target-error",
            "0.01",
            "--calibration-pages",
            "6",
        )
        == 0
    )
    source = json.loads((out / "summary.json").read_text())["threshold_source"]
    assert (
        source.startswith("--target-error 0.01, a threshold per zone off ")
        and "of 6 generated form pages" in source
    )
    template = templates.load(batch / "claim-v1.yaml")
    kinds = {(r["path"], int(r["page"])): r["kind"] for r in read_csv(batch / "pages.csv")}
    formed = pads.dataset(out / "forms").to_table().to_pylist()
    fields = pads.dataset(out / "fields").to_table().to_pylist()
    by_page = {(f["member"], f["page"]): f for f in formed}
    # Every page a row: the samples' pages, the upside-down form, the strays, one row per broken PDF or
    # unreadable file.
    assert len(formed) == len(kinds) + 7
    assert len(by_page) == len(formed)
    for (name, page), kind in kinds.items():
        row = by_page[(name, page)]
        if kind == "form":
            assert row["error"] is None, row
            assert row["registration"]["score"] >= registration.MIN_SCORE, row
        else:
            assert row["error"].startswith("does not match template claim-v1 (score "), row
    assert by_page[("upside-down.png", 0)]["error"] is None
    assert abs(abs(by_page[("upside-down.png", 0)]["registration"]["rotation"]) - 180) < 5
    assert by_page[("another-form.png", 0)]["error"].startswith("does not match template claim-v1")
    assert by_page[("blank.jpg", 0)]["error"].startswith("does not match template claim-v1")
    assert by_page[("encrypted.pdf", 0)]["error"].startswith("encrypted PDF")
    assert by_page[("truncated.pdf", 0)]["error"].startswith("corrupt PDF")
    assert by_page[("garbage.png", 0)]["error"].startswith("not an image")
    assert by_page[("empty.tif", 0)]["error"] == "empty file (0 bytes)"
    g4 = [r for r in formed if r["member"].endswith("-tiff-g4.tif")]
    pdfs = [r for r in formed if r["member"].endswith("-pdf.pdf")]
    assert g4
    assert pdfs
    assert all(r["error"] is None for r in g4 + pdfs if kinds[(r["member"], r["page"])] == "form")
    assert len(pdfs) > 1
    assert {r["pages"] for r in pdfs} == {len(pdfs)}
    # One field row per zone of every matched page, none for the others; each form row carries the texts.
    matched = [r for r in formed if r["error"] is None]
    assert len(fields) == len(matched) * len(template.zones)
    for f in fields:
        page = by_page[(f["member"], f["page"])]
        assert page[f"field_{f['field']}"] == f["text"]
        assert len(f["box"]) == 4
        assert page["decision"] == "accept" or any(
            g["decision"] == "review" for g in fields if (g["member"], g["page"]) == (f["member"], f["page"])
        )
    # Metrics recounted here from the truth and the rows.
    truth = truth_of(batch)
    labelled = [
        (truth[(f["member"], f["page"], f["field"])], f)
        for f in fields
        if (f["member"], f["page"], f["field"]) in truth
    ]
    metrics = {(m["group"], m["name"]): m for m in pq.read_table(out / "metrics.parquet").to_pylist()}
    overall = metrics[("all", "all")]
    assert overall["fields"] == len(labelled)
    assert overall["field_accuracy"] == pytest.approx(np.mean([t == (f["text"] or "") for t, f in labelled]))
    took = [(t, f) for t, f in labelled if f["decision"] == "accept"]
    assert overall["accepted"] == len(took)
    assert overall["accepted_error"] == pytest.approx(
        np.mean([t != f["text"] for t, f in took]) if took else 0.0
    )
    empties = [f for t, f in labelled if t == ""]
    assert empties
    assert all(f["text"] == "" and f["decision"] == "accept" for f in empties)  # empty optional zones
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["pages"], summary["forms_matched"]) == (len(formed), len(matched))
    assert summary["pages_unmatched"] == sum(k != "form" for k in kinds.values()) + 2
    assert summary["pages_failed"] == 4  # the two broken PDFs, the garbage and the empty file
    lines = read_csv(out / "forms.csv", csv.reader)
    assert lines[0][-len(template.zones) :] == [z.name for z in template.zones]
    assert len(lines) == len(formed) + 1


def test_bad_templates_are_one_line_naming_the_key(batch, tmp_path, capsys):
    good = (batch / "claim-v1.yaml").read_text()
    (tmp_path / "claim-v1.png").write_bytes((batch / "claim-v1.png").read_bytes())
    cases = {
        "box outside": (
            good.replace("box: [330, 420, 450, 90]", "box: [1500, 420, 450, 90]"),
            "fields[0] (postcode).box: [1500, 420, 450, 90] is outside the 1700x2200 page",
        ),
        "overlap": (
            good.replace("box: [330, 620, 720, 90]", "box: [330, 440, 720, 90]"),
            "fields[1] (account).box: overlaps zone 'postcode'",
        ),
        "missing reference": (
            good.replace("reference: claim-v1.png", "reference: nowhere.png"),
            "reference: " + str(tmp_path / "nowhere.png") + ": no such file",
        ),
        "unknown kind": (
            good.replace("kind: digit", "kind: signature"),
            "fields[5] (copies).kind: unknown kind 'signature'",
        ),
        "no cells": (
            good.replace("cells: 5", "cells: 0"),
            "fields[0] (postcode).cells: want at least 1 cell, got 0",
        ),
        "uneven cells that do not fill the box": (
            good.replace("cells: 5", "cells: [90, 90, 90]"),
            "add up to 270, not the box's width 450",
        ),
        "not yaml": ("name: [unclosed", "not a YAML file"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.yaml"
        path.write_text(text)
        assert run("--check-template", path) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1, (name, err)
        assert f"--template {path}" in err, (name, err)
        assert message in err, (name, err)
    (tmp_path / "uneven.yaml").write_text(good.replace("cells: 5", "cells: [100, 80, 90, 90, 90]"))
    uneven = templates.load(tmp_path / "uneven.yaml")
    assert [b[2] for b in uneven.zones[0].cell_boxes()] == [100, 80, 90, 90, 90]


def test_check_template_draws_the_zones(batch, capsys):
    assert run("--check-template", batch / "claim-v1.yaml") == 0
    drawn = batch / "claim-v1.zones.png"
    with Image.open(drawn) as image, Image.open(batch / "claim-v1.png") as reference:
        assert image.size == reference.size
        red = np.asarray(image.convert("RGB"))[..., 0].astype(int) - np.asarray(image.convert("RGB"))[..., 1]
        assert (red > 100).sum() > 1000  # the combs' cells, outlined in red
    assert str(drawn) in capsys.readouterr().out


def test_a_field_zone_without_a_field_model_is_one_line(batch, tmp_path, capsys):
    folder = tmp_path / "digits-only"
    folder.mkdir()
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "dataset": "mnist",
                    "model": "cnn",
                    "accuracy": 0.99,
                    "checkpoint": str(DATA / "cnn-before-the-layout.pt"),
                }
            ]
        ),
        folder / "metrics.parquet",
    )
    assert (
        run(
            batch / "batch.zip",
            "--template",
            batch / "claim-v1.yaml",
            "--model",
            folder,
            "--output",
            tmp_path / "out",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "its field zones (amount) need a field model" in err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("flag", ["--digit-model-name", "--field-model-name"])
def test_a_model_name_the_folder_lacks_is_one_line_naming_the_flag_given(
    models, batch, tmp_path, capsys, flag
):
    assert (
        run(
            batch / "batch.zip",
            "--template",
            batch / "claim-v1.yaml",
            "--model",
            models,
            flag,
            "rnn",
            "--output",
            tmp_path / "out",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{flag} rnn: {models / 'metrics.parquet'} has no such model; it has cnn, crnn" in err
    assert "--model-name rnn" not in err.replace(flag, "")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.partial").exists()


def test_ctrl_c_then_resume_reads_every_page_once(ray_cluster, models, batch, tmp_path):
    out = tmp_path / "out"
    # The pages twice (the folder and the zip of it), read two at a time: still running at the first piece.
    argv = [
        sys.executable,
        str(ROOT / "jobs" / "forms.py"),
        str(batch / "pages"),
        str(batch / "batch.zip"),
        "--template",
        str(batch / "claim-v1.yaml"),
        "--model",
        str(models),
        "--output",
        str(out),
        "--commit-rows",
        "2",
        "--batch-size",
        "2",
        "--address",
        ray_cluster.address_info["address"],
    ]
    job = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list((out.with_name("out.partial") / "forms").glob("part-*.parquet")):
        assert job.poll() is None, job.stderr.read() if job.poll() is not None else ""
        assert time.time() < deadline, job.stderr.read() if job.poll() is not None else ""
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130, err
    assert "interrupted; run the same command with --resume" in err, err
    kept = pads.dataset(out.with_name("out.partial") / "forms").count_rows()
    assert kept > 0
    time.sleep(2)
    assert subprocess.run([*argv, "--resume"], capture_output=True, text=True).returncode == 0
    formed = (
        pads.dataset(out / "forms").to_table(columns=["source", "member", "occurrence", "page"]).to_pylist()
    )
    keys = [(r["source"], r["member"], r["occurrence"], r["page"]) for r in formed]
    expected = 2 * (len(read_csv(batch / "pages.csv")) + 7)  # and the odd pages
    assert len(keys) == len(set(keys)) == expected
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_already_read"] >= 1
    assert summary["pages"] == expected
    fields = pads.dataset(out / "fields").to_table(
        columns=["source", "member", "occurrence", "page", "field"]
    )
    assert len({tuple(f.values()) for f in fields.to_pylist()}) == fields.num_rows


@pytest.mark.parametrize("seed", range(6))
def test_registration_recovers_a_known_rotation_scale_and_shift(seed):
    """A filled form scanned with a known transform (up to 3 degrees, 5 % of scale, 5 % of shift, and
    upside down for odd seeds): the registration maps every zone's corners back within 2 pixels and its
    rotation within 0.3 degrees."""
    rng = np.random.default_rng(seed)
    form = samples.reference()
    filled, _ = samples.fill(form, samples.Digits(seed), rng)
    page, how = samples.scan(filled, rng, upside_down=bool(seed % 2))
    reg = registration.register(np.asarray(page), registration.Reference(np.asarray(form)))
    assert reg.matched
    w, h = samples.SIZE
    a = math.radians(how.rotation)
    turn = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    points = np.array(
        [[x + dx, y + dy] for _, _, (x, y, bw, bh), *_ in samples.ZONES for dx in (0, bw) for dy in (0, bh)],
        float,
    )
    on_page = (points - [w / 2, h / 2]) @ (how.scale * turn).T + [w / 2 + how.dx, h / 2 + how.dy]
    if how.upside_down:
        on_page = np.array([w - 1, h - 1]) - on_page  # PIL turns pixel (x, y) to (w - 1 - x, h - 1 - y)
    back = np.c_[on_page, np.ones(len(on_page))] @ reg.matrix.T
    assert np.abs(back - points).max() <= 2.0
    again = registration.from_row(reg.as_dict())  # what the review page rebuilds from a form row
    assert np.abs(np.c_[on_page, np.ones(len(on_page))] @ again.matrix.T - points).max() <= 2.0
    expected = how.rotation + (180 if how.upside_down else 0)
    assert abs((reg.rotation - expected + 180) % 360 - 180) <= 0.3
    assert reg.scale == pytest.approx(how.scale, abs=0.005)


def test_a_length_constrained_decode_is_the_best_path_of_that_length():
    """Against every path of a small lattice: the most probable path whose string has low..high classes."""
    import itertools

    from scipy.special import log_softmax

    from hdr_dist.inference import ctc

    rng = np.random.default_rng(0)
    for _ in range(150):
        steps, blank = int(rng.integers(1, 6)), 3
        lp = log_softmax(rng.normal(0, 2, (steps, 4)), axis=1)
        low = int(rng.integers(0, 3))
        high = low + int(rng.integers(0, 2))
        best = None
        for path in itertools.product(range(4), repeat=steps):
            string, previous = [], blank
            for c in path:
                if c != blank and c != previous:
                    string.append(c)
                previous = c
            score = sum(lp[t, c] for t, c in enumerate(path))
            if low <= len(string) <= high and (best is None or score > best[0]):
                best = (score, string)
        found = ctc.best_path_of_length(lp, blank, low, high)
        assert (found is None) == (best is None)
        assert best is None or found[0] == best[1]


def test_the_review_page_shows_each_zone_and_its_corrections_read_back(
    ray_cluster, models, batch, tmp_path, browser
):
    out = tmp_path / "out"
    assert (
        run(
            batch / "pages",
            "--template",
            batch / "claim-v1.yaml",
            "--model",
            models,
            "--output",
            out,
            "--target-error",
            "0.001",
            "--calibration-pages",
            "0",
            "--review-rows",
            "12",
        )
        == 0
    )
    queue = pq.read_table(out / "review" / "queue.parquet").to_pylist()
    assert queue
    assert all(r["decision"] == "review" for r in queue)
    page, trouble = open_page(browser, out / "review" / "review.html")
    items = page.locator("tr.item")
    assert items.count() == min(12, len(queue))
    shown = items.evaluate_all("""trs => trs.map(tr => ({key: JSON.parse(tr.dataset.key),
        crop: tr.querySelector('img.strip') ? tr.querySelector('img.strip').naturalWidth : 0,
        thumb: tr.querySelector('img.original') ? tr.querySelector('img.original').naturalWidth : 0}))""")
    assert all(s["crop"] > 0 and s["thumb"] > 0 for s in shown), shown
    truth = truth_of(batch)
    typed = {}
    for i, s in enumerate(shown[:3]):
        path, page_number, field = s["key"]
        label = truth[(Path(path).name, page_number, field)] or "0"
        page.locator("input.label").nth(i).fill(label)
        typed[(Path(path).name, page_number, field)] = label
    corrections = save_corrections(page, tmp_path / "corrections.csv")
    assert trouble == []
    rows = read_csv(corrections)
    assert list(rows[0]) == ["path", "page", "field", "label"]
    assert len(rows) == 3
    again = tmp_path / "again"
    assert (
        run(
            batch / "pages",
            "--template",
            batch / "claim-v1.yaml",
            "--model",
            models,
            "--output",
            again,
            "--labels",
            corrections,
        )
        == 0
    )
    summary = json.loads((again / "summary.json").read_text())
    metrics = {(m["group"], m["name"]): m for m in pq.read_table(again / "metrics.parquet").to_pylist()}
    assert metrics[("all", "all")]["fields"] == len(typed)
    assert summary["labelled_forms"] >= 1


def test_names_a_spreadsheet_would_run_are_text_in_forms_csv_and_exact_everywhere_else(
    ray_cluster, models, batch, tmp_path, browser
):
    """forms.csv writes a formula-like member name behind a quote; the Parquet rows keep it as it is; the
    review page counts fields, and a labels file quoted by its script reads back to the exact names."""
    form = next(
        r["path"] for r in read_csv(batch / "pages.csv") if r["kind"] == "form" and r["path"].endswith(".png")
    )
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in FORMULA_NAMES:
            z.write(batch / "pages" / form, name)
    out = tmp_path / "out"
    argv = [archive, "--template", batch / "claim-v1.yaml", "--model", models, "--output", out]
    assert run(*argv, "--target-error", "0.001", "--calibration-pages", "0") == 0
    assert sorted(r["member"] for r in pads.dataset(out / "forms").to_table().to_pylist()) == sorted(
        FORMULA_NAMES
    )
    lines = read_csv(out / "forms.csv", csv.reader)
    assert not [c for line in lines for c in line if c.startswith(tuple(bulk_labels.FORMULA_STARTS))]
    assert sorted(line[1] for line in lines[1:]) == sorted("'" + n for n in FORMULA_NAMES)
    assert sorted(bulk_labels.uncell(line[1]) for line in lines[1:]) == sorted(FORMULA_NAMES)

    page, trouble = open_page(browser, out / "review" / "review.html")
    queued = pq.read_metadata(out / "review" / "queue.parquet").num_rows
    assert page.title() == f"Review queue: {queued:,} field{'' if queued == 1 else 's'}"
    assert re.search(r"run forms again", page.inner_text("body"))
    # The page's own quoting (the script's quoted()) of rows naming the members as --labels does.
    saved = page.evaluate(
        "rows => rows.map((r) => r.map((c) => quoted(String(c))).join(',')).join('\\r\\n')",
        [["path", "page", "field", "label"], *[[n, 0, "postcode", "12345"] for n in FORMULA_NAMES]],
    )
    assert trouble == []
    assert '"\'=HYPERLINK(""evil.example"",""y"").png"' in saved
    assert "\"''=4.png\"" in saved
    (tmp_path / "corrections.csv").write_text(saved, encoding="utf-8")
    template = templates.load(batch / "claim-v1.yaml")
    found, problems = truth.read(
        str(tmp_path / "corrections.csv"), template, inputs.find([str(archive)]).items
    )
    assert problems == {}
    assert sorted(key[1] for key in found) == sorted(FORMULA_NAMES)
    # score's --labels reads the same quoting.
    saved = page.evaluate(
        "rows => rows.map((r) => r.map(quoted).join(',')).join('\\r\\n')",
        [["path", "label"], *[[n, "7"] for n in FORMULA_NAMES]],
    )
    (tmp_path / "score-corrections.csv").write_text(saved, encoding="utf-8")
    assert bulk_labels.read_label_file(str(tmp_path / "score-corrections.csv")).rows == [
        (n, "7") for n in FORMULA_NAMES
    ]


def test_template_keys_are_checked_before_anything_is_read(tmp_path):
    (tmp_path / "t.yaml").write_text("name: x\nsize: [100, 100]\nreference: r.png\nfields: []\n")
    Image.new("L", (100, 100), 255).save(tmp_path / "r.png")
    with pytest.raises(UserError, match="fields: want a list of at least one zone"):
        templates.load(tmp_path / "t.yaml")


def test_a_bad_labels_file_is_one_line_and_odd_rows_are_counted(batch, tmp_path):
    from hdr_dist.bulk import inputs
    from hdr_dist.forms import truth

    template = templates.load(batch / "claim-v1.yaml")
    items = inputs.find([str(batch / "pages")]).items
    cases = {
        "path,label\nx.png,3\n": "needs a header line 'path,page,field,label'",
        "path,page,field,label\nblank.jpg,0,signature,1\n": (
            "fields the template claim-v1 does not have: 'signature'"
        ),
        "path,page,field,label\nblank.jpg,0,postcode,12a\n": "labels that are not digit strings: '12a'",
    }
    for text, message in cases.items():
        (tmp_path / "labels.csv").write_text(text)
        with pytest.raises(UserError, match=message):
            truth.read(str(tmp_path / "labels.csv"), template, items)
    with pytest.raises(UserError, match="no such file"):
        truth.read(str(tmp_path / "nowhere.csv"), template, items)
    (tmp_path / "labels.csv").write_text(
        "path,page,field,label\nupside-down.png,one,postcode,1\n"
        "nowhere.png,0,postcode,1\nupside-down.png,0,copies,1\n"
        "upside-down.png,0,copies,2\nupside-down.png,0,amount,15\n"
    )
    found, problems = truth.read(str(tmp_path / "labels.csv"), template, items)
    assert list(found.values()) == ["15"]
    assert problems == {
        "rows whose page is not a number": ["upside-down.png"],
        "rows that name no image": ["nowhere.png"],
        "fields given two labels (left unlabelled)": [str(batch / "pages" / "upside-down.png")],
    }


@pytest.mark.parametrize("kind", [k for k in samples.SETS if k != "claim"])
def test_each_sample_layout_reads_end_to_end(ray_cluster, models, kind, tmp_path):
    """Every layout of our own design (dropout colours, uneven cells, thin and thick walls, colour, grey
    and bilevel scans at 100-400 dpi, digits over the walls), through the whole job: each form page
    registered, its comb fields read mostly right, its empty zones read as empty."""
    root = tmp_path / kind
    made = samples.write(root, pages=4, seed=11, layout=samples.SETS[kind][0], writers=samples.SETS[kind][1])
    out = tmp_path / "out"
    argv = [root / "pages", "--template", root / f"{made['template']}.yaml", "--model", models]
    assert (
        run(
            *argv,
            "--output",
            out,
            "--labels",
            root / "truth.csv",
            "--target-error",
            "0.01",
            "--calibration-pages",
            "3",
        )
        == 0
    )
    kinds = {(r["path"], int(r["page"])): r["kind"] for r in read_csv(root / "pages.csv")}
    formed = {
        (r["member"] or Path(r["source"]).name, r["page"]): r
        for r in pads.dataset(out / "forms").to_table().to_pylist()
    }
    assert formed.keys() == kinds.keys()
    assert all((formed[k]["error"] is None) == (v == "form") for k, v in kinds.items())
    truth = {(r["path"], int(r["page"]), r["field"]): r["label"] for r in read_csv(root / "truth.csv")}
    fields = pads.dataset(out / "fields").to_table().to_pylist()
    pairs = [(truth[(f["member"] or Path(f["source"]).name, f["page"], f["field"])], f) for f in fields]
    combs = [want == f["text"] for want, f in pairs if want and f["kind"] == "comb"]
    # scikit-learn's digits are 8x8 scans brought up to a cell: the kept 3-epoch cnn reads far fewer
    floor = 0.3 if samples.SETS[kind][1] == "sklearn" else 0.7
    assert len(combs) >= 4 and sum(combs) / len(combs) >= floor, combs
    assert all(f["text"] == "" for want, f in pairs if want == "")
