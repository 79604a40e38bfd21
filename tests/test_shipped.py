"""The readers shipped in the package: they match their cards byte for byte and figure for figure, score and
forms read with them when no model is given and say so first, and a damaged one is one line naming it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch

from hdr_dist.data import datasets
from hdr_dist.forms import samples
from hdr_dist.jobs import forms, models, score
from hdr_dist.jobs import samples as digit_samples
from hdr_dist.models import checkpoints, config, recipes, shipped
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import kinds
from tests.helpers import ROOT

# The allowance between a card's figures and the same figures computed again here.
FIGURE_TOLERANCE = 0.0005
MAX_SHIPPED_BYTES = 10 << 20


def test_every_shipped_reader_has_a_card_that_matches_its_file():
    assert shipped.FOLDER == ROOT / "hdr_dist" / "weights"
    assert set(shipped.names()) == set(shipped.TRAINING) == set(shipped.DEFAULT.values())
    total = 0
    for name in shipped.names():
        card = shipped.card(name)
        path = shipped.FOLDER / card["file"]
        assert shipped.sha256_of(path) == card["sha256"], name
        assert path.stat().st_size == card["bytes"]
        total += card["bytes"]
        assert card["kind"] == recipes.recipe(name).kind
        assert card["settings"] == shipped.TRAINING[name]
        state, cfg, found = checkpoints.for_scoring(None, name)
        assert (
            Path(found) == path
            and cfg.model == name
            and state.temperature == card["calibration"]["temperature"]
        )
        assert [p["epoch"] for p in card["learning_curve"]] == list(range(1, cfg.epochs + 1))
        assert card["config"]["epochs"] == shipped.TRAINING[name]["epochs"]
    assert total <= MAX_SHIPPED_BYTES


@pytest.mark.parametrize("name", sorted(shipped.TRAINING))
def test_a_shipped_reader_reaches_its_cards_figures(name):
    """The figures computed here, from the embedded MNIST, as compare computed them for the card."""
    card = shipped.card(name)
    state = torch.load(shipped.checkpoint(name), map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(state["config"])
    ds = datasets.load(cfg.dataset, seed=cfg.seed)
    tested = kinds.of(cfg).tested(state, ds)
    found = shipped.figures_of(tested["scores"] | tested["row"], cfg.kind)
    assert found.keys() == card["figures"].keys()
    off = {
        k: (found[k], card["figures"][k])
        for k in found
        if abs(found[k] - card["figures"][k]) > FIGURE_TOLERANCE
    }
    assert not off, off


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """240 MNIST test digits as scans (6 sizes and formats), in a zip, each under its digit's folder."""
    path = tmp_path_factory.mktemp("scans") / "try.zip"
    assert digit_samples.main([str(path), "--limit", "40"]) == 0
    return path


def test_score_without_a_model_reads_with_the_shipped_digit_reader(ray_cluster, scans, tmp_path, capsys):
    assert score.main([str(scans), "--output", str(tmp_path / "out")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert (
        first.startswith("reading with the shipped reader cnn (") and shipped.card("cnn")["summary"] in first
    )
    rows = pads.dataset(tmp_path / "out" / "predictions").to_table().to_pylist()
    assert len(rows) == 40 * 6 and all(r["error"] is None for r in rows)
    right = [r["pred_label"] == r["member"].split("/")[0] for r in rows]
    assert sum(right) / len(right) >= 0.95
    assert {r["model"] for r in rows} == {"cnn"}


def test_forms_without_a_model_reads_with_both_shipped_readers(ray_cluster, tmp_path, capsys):
    made = samples.write(tmp_path / "forms", pages=3, seed=4)
    out = tmp_path / "out"
    argv = [tmp_path / "forms" / "pages", "--template", tmp_path / "forms" / f"{made['template']}.yaml"]
    assert forms.main([str(a) for a in (*argv, "--output", out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("reading with the shipped readers cnn (") and " and crnn (" in first
    fields = pads.dataset(out / "fields").to_table().to_pylist()
    assert {f["kind"] for f in fields} == {"comb", "digit", "field"}
    assert len({(f["source"], f["page"]) for f in fields}) == 3 and all(f["error"] is None for f in fields)


@pytest.mark.ray
def test_the_readers_job_trains_a_reader_and_writes_it_with_a_card_the_jobs_read(tmp_path, monkeypatch):
    """A rehearsal of make readers (one epoch on 2,000 images): the same flow, compare in a process
    of its own with a Ray of its own, then the file and its card."""
    weights, work = tmp_path / "weights", tmp_path / "work"
    weights.mkdir()
    argv = ["--readers", "cnn", "--epochs", "1", "--limit-train", "2000", "--work", work, "--output", weights]
    done = subprocess.run(
        [sys.executable, "-m", "hdr_dist.jobs.cli", "models", "--train", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((weights / "cnn.json").read_text())
    assert card["settings"] == shipped.TRAINING["cnn"] | {"epochs": 1, "limit_train": 2000}
    assert "--epochs 1" in card["command"] and "--limit-train 2000" in card["command"]
    assert (
        card["sha256"] == shipped.sha256_of(weights / "cnn.pt")
        and card["bytes"] == (weights / "cnn.pt").stat().st_size
    )
    row = pq.read_table(work / "cnn" / "metrics.parquet").to_pylist()[0]
    assert card["figures"] == shipped.figures_of(row, "digit")
    assert [p["epoch"] for p in card["learning_curve"]] == [1] and card["training"]["workers"] == 1
    monkeypatch.setenv(shipped.FOLDER_VARIABLE, str(weights))
    state, cfg, path = checkpoints.for_scoring(None, "cnn")
    assert (cfg.epochs, cfg.width, cfg.cell_artefacts) == (1, 2.0, 0.4)
    assert state.temperature == card["calibration"]["temperature"] and state.val_risk_coverage
    assert "optimizer" not in torch.load(path, weights_only=True)  # inference needs none of it


@pytest.fixture
def copied(tmp_path, monkeypatch) -> Path:
    """The shipped readers copied to a folder of their own, which HDR_READERS points the jobs at."""
    folder = tmp_path / "weights"
    shutil.copytree(shipped.FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv(shipped.FOLDER_VARIABLE, str(folder))
    return folder


def test_a_damaged_shipped_reader_is_one_line_naming_it(copied, scans, tmp_path, capsys):
    path = copied / "cnn.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    assert score.main([str(scans), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "damaged" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_shipped_file_its_card_vouches_for_still_passes_the_checkpoint_checks(
    copied, scans, tmp_path, capsys
):
    """A card rewritten to match a file that is no checkpoint: the checks any checkpoint gets refuse it."""
    path = copied / "cnn.pt"
    path.write_bytes(b"PK\x03\x04 not a checkpoint")
    card = json.loads((copied / "cnn.json").read_text()) | {"sha256": shipped.sha256_of(path)}
    (copied / "cnn.json").write_text(json.dumps(card))
    assert score.main([str(scans), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "not a readable hdr-dist checkpoint" in err


def test_an_unknown_shipped_name_and_a_missing_file_are_one_line(copied, scans, tmp_path, capsys):
    assert score.main([str(scans), "--output", str(tmp_path / "a"), "--model-name", "lstm"]) == 2
    assert "--model-name lstm: no shipped reader of that name (shipped: cnn, crnn)" in capsys.readouterr().err
    (copied / "crnn.pt").unlink()
    assert score.main([str(scans), "--output", str(tmp_path / "b"), "--model-name", "crnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(copied / "crnn.pt") in err and "cannot be read" in err


def test_hdr_models_lists_each_shipped_reader_and_says_which_are_damaged(copied, capsys):
    assert models.main([]) == 0
    shown = capsys.readouterr().out
    for name in shipped.names():
        assert shipped.card(name)["sha256"][:12] in shown
    assert shown.count("… ok") == 2
    (copied / "crnn.pt").write_bytes(b"damaged")
    assert models.main([]) == 0
    assert "DAMAGED" in capsys.readouterr().out


def test_a_short_run_gets_a_batch_that_gives_it_steps_and_a_whole_run_keeps_its_recipe():
    ds = datasets.load("mnist", limit_train=6000, limit_test=200)
    short = TrainConfig.from_recipe("cnn", ds, epochs=1)
    assert short.batch_size == config.MIN_BATCH and short.lr == recipes.recipe("cnn").settings["lr"]
    assert TrainConfig.from_recipe("cnn", ds, epochs=1, batch_size=256).batch_size == 256  # as given
    assert TrainConfig.from_recipe("cnn", ds, epochs=12).batch_size == 128  # 64,800 images: 506 steps
    whole = datasets.load("mnist")
    for name in ("cnn", "lstm", "crnn"):
        recipe = config.defaults(name)
        assert TrainConfig.from_recipe(name, whole).batch_size == recipe["batch_size"]
