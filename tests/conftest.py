"""Shared fixtures: one real local Ray cluster per test session, paths to real data, and a small
digit model trained once for the scoring tests."""

from __future__ import annotations

import gzip
import os
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


def save_corrections(page, path: Path) -> Path:
    """Press the page's save button and keep the CSV it downloads at ``path``."""
    with page.expect_download() as download:
        page.click("#save")
    assert download.value.suggested_filename == "corrections.csv"
    download.value.save_as(path)
    return path


def open_page(browser, path: Path):
    """The page, and what it did that a person would see as broken: script errors and dialogs."""
    page = browser.new_context(accept_downloads=True).new_page()
    trouble = []
    page.on("pageerror", lambda e: trouble.append(f"script error: {e}"))
    page.on("dialog", lambda d: (trouble.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, trouble


def make_deep(top: Path, levels: int, files_at: set[int], image: bytes) -> None:
    """``levels`` nested folders ``d/d/…`` under ``top`` (made level by level through folder descriptors:
    os.makedirs itself recurses once per level), with an image at each level in ``files_at``."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for level in range(1, levels + 1):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
            if level in files_at:
                out = os.open("a.png", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
                os.write(out, image)
                os.close(out)
    finally:
        os.close(fd)


def remove_deep(top: Path) -> None:
    """The tree ``make_deep`` made, removed level by level (shutil.rmtree, and pytest's clean-up of old
    temporary folders with it, would recurse once per level)."""
    fds = [os.open(top, os.O_RDONLY)]
    while "d" in os.listdir(fds[-1]):
        fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
    for parent, fd in zip(reversed(fds[:-1]), reversed(fds[1:])):
        for name in os.listdir(fd):
            os.unlink(name, dir_fd=fd)
        os.close(fd)
        os.rmdir("d", dir_fd=parent)
    os.close(fds[0])


@pytest.fixture
def deep(tmp_path):
    """2,500 nested folders under tmp_path, a digit at levels 1 and 1,100 (paths of 2,200 characters),
    and the tree removed afterwards."""
    from hdr_dist import data, samples

    digit = data.read_idx(data.mnist_folder() / "t10k-images-idx3-ubyte.gz", data.IDX_IMAGES)[0]
    make_deep(tmp_path, 2500, {1, 1100}, samples.render(digit))
    yield tmp_path
    remove_deep(tmp_path)
