"""Shared fixtures: one real local Ray cluster per test session, paths to real data, and a small
digit model trained once for the scoring tests."""

from __future__ import annotations

import gzip
import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# EMNIST is too large to ship; the tests read it where the workplace keeps it, beside the repo.
SHARED = ROOT.parent / "shared" / "datasets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the EMNIST data in {SHARED}")
    return path


@pytest.fixture(scope="session")
def ray_cluster():
    """A private local Ray for the whole session; jobs run in-process join it via ray.is_initialized().

    With its dashboard, as every real cluster has: Ray Train's placement-group cleaner asks its
    state API whether a run's controller still lives, and only then frees the workers' CPUs of
    a Train run whose Tune trial ASHA stopped.
    """
    import ray

    # A port of its own: a `ray start` head in another test takes the default.
    ctx = ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                   dashboard_port=free_port(), logging_level="WARNING")
    yield ctx
    ray.shutdown()


@pytest.fixture
def mnist_copy(tmp_path: Path) -> Path:
    """A user's MNIST folder: the embedded files, uncompressed (the other accepted spelling)."""
    from hdr_dist.data import mnist_folder

    folder = tmp_path / "mnist"
    folder.mkdir()
    for gz in mnist_folder().glob("*.gz"):
        (folder / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    return folder


def fit_small(ds, folder: Path) -> Path:
    """A quickly trained cnn, saved the way compare saves one, with a compare-style metrics.parquet."""
    import torch

    from hdr_dist import evaluate, tables, train
    from hdr_dist.config import TrainConfig

    cfg = TrainConfig.from_recipe("cnn", ds, epochs=1, batch_size=64)
    model, history = train.train_plain(cfg, train.arrays_of(ds), torch.device("cpu"))
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "model.pt"
    torch.save({"model": model.state_dict(), "config": cfg.as_dict(), "history": history}, checkpoint)
    scores = evaluate.evaluate_state(torch.load(checkpoint, weights_only=True), ds.test.x, ds.test.y)
    tables.write_tables(folder, {"metrics": [tables.metrics_row(ds.name, "cnn", scores, checkpoint=str(checkpoint))]})
    return folder


@pytest.fixture(scope="session")
def mnist():
    from hdr_dist import data

    return data.load("mnist", limit_train=3000, limit_test=120)


@pytest.fixture(scope="session")
def digits_model(mnist, tmp_path_factory):
    return fit_small(mnist, tmp_path_factory.mktemp("digits-model"))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("the review page's test needs Debian's chromium: `make browser` installs it")
    return found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, path: Path):
    """The page, and what it did that a person would see as broken: script errors and dialogs."""
    page = browser.new_context(accept_downloads=True).new_page()
    trouble = []
    page.on("pageerror", lambda e: trouble.append(f"script error: {e}"))
    page.on("dialog", lambda d: (trouble.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, trouble
