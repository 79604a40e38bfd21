"""The review queue end to end: a real score run writes review/queue.parquet and review.html, Debian's
chromium (driven by playwright) renders the page with its images, a person's corrections are saved
as a CSV by the page itself, and a second score run reads that CSV back through --labels."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from hdr_dist.data import samples
from hdr_dist.inference import evaluate
from hdr_dist.jobs import score
from hdr_dist.models import checkpoints
from hdr_dist.review import queue as review_queue
from tests.helpers import open_page, save_corrections

HOSTILE = '<img src=x onerror=alert(1)>, "quoted".png'  # a file name that is also markup, with a comma


def run(*argv) -> int:
    return score.main([str(a) for a in argv])


def inputs(folder: Path, mnist) -> dict[str, str]:
    """Digits in a folder and a zip, a two-page TIFF, a hostile file name and a broken file; returns
    each readable image's label path and true label."""
    x, y, names = mnist.test.x, mnist.test.y, mnist.labels
    truth = {}
    for i in range(24):
        path = folder / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(samples.render(x[i], 28 if i % 2 else 64))
        truth[str(path)] = names[y[i]]
    samples.write(
        folder / "batch.zip", ((f"m{i}.jpg", samples.render(x[i], 120, "JPEG")) for i in range(30, 36))
    )
    truth |= {f"{folder / 'batch.zip'}/m{i}.jpg": names[y[i]] for i in range(30, 36)}
    # Two digits blended: an ambiguous image, so a weak model is unsure of it.
    (folder / HOSTILE).write_bytes(samples.render(((x[40].astype(int) + x[41]) // 2).astype(np.uint8), 40))
    truth[str(folder / HOSTILE)] = names[y[40]]
    pages = [Image.open(io.BytesIO(samples.render(x[i], 28))) for i in (50, 51)]
    tiff = io.BytesIO()
    pages[0].save(tiff, "TIFF", save_all=True, append_images=pages[1:])
    (folder / "pages.tif").write_bytes(tiff.getvalue())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return truth


def picture(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,")
    return np.array(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def test_review_queue_page_and_corrections_round_trip(ray_cluster, mnist, digits_model, tmp_path, browser):
    truth = inputs(tmp_path / "in", mnist)
    out = tmp_path / "out"
    # Threshold 1: this weak model is sure of almost nothing, so nearly every image goes to review.
    assert run(tmp_path / "in", "--model", digits_model, "--output", out, "--threshold", "1") == 0

    # queue.parquet: every review row (errors included), least confident first, errors last.
    rows = pads.dataset(out / "predictions").to_table().to_pylist()
    queue = pq.read_table(out / "review" / "queue.parquet").to_pylist()
    assert (
        len(queue)
        == sum(r["decision"] == "review" for r in rows)
        == json.loads((out / "summary.json").read_text())["review"]
    )
    confidences = [r["confidence"] for r in queue if r["error"] is None]
    assert confidences == sorted(confidences)
    assert queue[-1]["error"] is not None
    assert all(
        r["path"] == (r["source"] if r["member"] is None else f"{r['source']}/{r['member']}") for r in queue
    )
    paths = {r["path"] for r in queue}
    assert str(tmp_path / "in" / HOSTILE) in paths
    assert str(tmp_path / "in" / "pages.tif") in paths

    page, trouble = open_page(browser, out / "review" / "review.html")
    items = page.locator("tr.item")
    assert items.count() == len(queue)
    shown = items.evaluate_all("""trs => trs.map(tr => ({
        path: JSON.parse(tr.dataset.key)[0],
        crop: tr.querySelector('img.crop') && tr.querySelector('img.crop').src,
        cropWidth: tr.querySelector('img.crop') ? tr.querySelector('img.crop').naturalWidth : 0,
        originalWidth: tr.querySelector('img.original') ? tr.querySelector('img.original').naturalWidth : 0,
        guesses: Array.from(tr.querySelectorAll('button.guess'), b => b.dataset.label),
        text: tr.innerText}))""")
    assert [s["path"] for s in shown] == [r["path"] for r in queue]  # the hostile name intact, not markup
    # Every scored image is there twice, decoded by the browser: the crop and the original.
    model, cfg = checkpoints.model_from_state(torch.load(digits_model / "model.pt", weights_only=True))
    for s, r in zip(shown, queue):
        if r["error"] is not None:
            assert s["cropWidth"] == 0
            assert s["originalWidth"] == 0
            assert r["error"] in s["text"]
            continue
        assert s["cropWidth"] == 28, s
        assert 0 < s["originalWidth"] <= review_queue.ORIGINAL_PX, s
        assert s["guesses"] == r["topk_labels"]
        # The crop is what the model saw: scoring it again gives the row's answer.
        z, pred, _ = evaluate.predict(model, picture(s["crop"])[None], cfg.mean, cfg.std)
        assert pred[0] == r["pred"]
        assert torch.softmax(torch.from_numpy(z), 1).max().item() == pytest.approx(r["confidence"], abs=1e-4)
    assert trouble == []  # no script error, and the file name's onerror never ran

    # A person works through it: types labels, takes a guess, makes a typo.
    index = {s["path"]: i for i, s in enumerate(shown)}
    fields = page.locator("input.label")
    corrections = {p: truth[p] for p in list(truth)[:5]} | {
        str(tmp_path / "in" / HOSTILE): truth[str(tmp_path / "in" / HOSTILE)]
    }
    for path, label in corrections.items():
        fields.nth(index[path]).fill(label)
    zip_member = f"{tmp_path / 'in' / 'batch.zip'}/m30.jpg"
    items.nth(index[zip_member]).locator("button.guess").first.click()
    corrections[zip_member] = shown[index[zip_member]]["guesses"][0]
    typo = next(i for i, s in enumerate(shown) if s["path"] not in corrections and s["guesses"])
    fields.nth(typo).fill("x")
    page.click("#save")
    assert "not a class of the model" in page.inner_text("#status")  # nothing saved while a label is wrong
    fields.nth(typo).fill("")
    tiff_pages = [i for i, s in enumerate(shown) if s["path"].endswith("pages.tif")]
    fields.nth(tiff_pages[0]).fill("1")
    fields.nth(tiff_pages[1]).fill("2")
    page.click("#save")
    assert "a file takes one label" in page.inner_text("#status")
    fields.nth(tiff_pages[1]).fill("")
    fields.nth(tiff_pages[0]).fill("")

    # Typed labels survive a reload (kept in the browser), and the page saves them as a CSV.
    page.reload()
    assert page.locator("input.label").nth(index[zip_member]).input_value() == corrections[zip_member]
    csv = save_corrections(page, tmp_path / "corrections.csv")
    assert trouble == []

    # The loop closes: scoring again reads the corrections as true labels, exactly those images.
    again = tmp_path / "again"
    assert (
        run(
            tmp_path / "in",
            "--model",
            digits_model,
            "--output",
            again,
            "--labels",
            csv,
            "--threshold",
            "1",
            "--review-rows",
            "5",
        )
        == 0
    )
    labelled = {
        r["source"] if r["member"] is None else f"{r['source']}/{r['member']}": r["true_label"]
        for r in pads.dataset(again / "predictions").to_table().to_pylist()
        if r["true_label"]
    }
    assert labelled == corrections
    summary = json.loads((again / "summary.json").read_text())
    assert summary["labels"]["problems"] == {}
    assert summary["labels"]["rows"] == len(corrections)
    assert summary["review_page_rows"] == 5 < summary["review"]
    capped, trouble = open_page(browser, again / "review" / "review.html")
    assert capped.locator("tr.item").count() == 5
    assert "queue.parquet" in capped.inner_text("body")
    assert trouble == []


def test_without_a_threshold_only_errors_are_queued(ray_cluster, mnist, digits_model, tmp_path, browser):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(samples.render(mnist.test.x[i]))
    (folder / "empty.png").write_bytes(b"")
    Image.new("L", (60, 40), 250).save(folder / "blank.png")
    assert run(folder, "--model", digits_model, "--output", tmp_path / "out") == 0
    queue = pq.read_table(tmp_path / "out" / "review" / "queue.parquet").to_pylist()
    assert [(Path(r["path"]).name, r["error"]) for r in queue] == [
        ("blank.png", "blank image"),
        ("empty.png", "empty file (0 bytes)"),
    ]
    page, trouble = open_page(browser, tmp_path / "out" / "review" / "review.html")
    rows = page.locator("tr.item")
    assert rows.count() == 2
    assert "empty file (0 bytes)" in rows.nth(1).inner_text()
    # A blank page has no crop, but its original is shown: a person can see whether it is blank.
    assert rows.nth(0).locator("img.crop").count() == 0
    assert rows.nth(0).locator("img.original").evaluate("img => img.naturalWidth") == 60
    assert page.title() == "Review queue: 2 images"
    assert "no threshold set: every image with an answer was accepted" in page.inner_text("body")
    assert "run score again" in page.inner_text("body")
    assert trouble == []


def test_names_with_cr_lf_and_tab_keep_their_corrections(ray_cluster, mnist, digits_model, tmp_path, browser):
    """A macOS "Icon\\r" file, a name with a line feed, one with a tab: the page carries every byte of each
    name, so the corrections it saves name exactly those files when scored again."""
    folder = tmp_path / "in"
    folder.mkdir()
    odd = ["Icon\r", "two\nlines.png", "tab\there.png", "crlf\r\nname.png"]
    truth = {}
    for i, name in enumerate(odd):
        (folder / name).write_bytes(samples.render(mnist.test.x[i], 40))
        truth[str(folder / name)] = mnist.labels[mnist.test.y[i]]
    out = tmp_path / "out"
    assert run(folder, "--model", digits_model, "--output", out, "--threshold", "1") == 0
    page, trouble = open_page(browser, out / "review" / "review.html")
    shown = page.locator("tr.item").evaluate_all("trs => trs.map(tr => JSON.parse(tr.dataset.key)[0])")
    assert sorted(shown) == sorted(truth)
    for i, path in enumerate(shown):
        page.locator("input.label").nth(i).fill(truth[path])
    csv = save_corrections(page, tmp_path / "corrections.csv")
    assert trouble == []
    again = tmp_path / "again"
    assert run(folder, "--model", digits_model, "--output", again, "--labels", csv) == 0
    labelled = {
        r["source"]: r["true_label"] for r in pads.dataset(again / "predictions").to_table().to_pylist()
    }
    assert labelled == truth
    assert json.loads((again / "summary.json").read_text())["labels"]["problems"] == {}
