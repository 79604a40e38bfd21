"""What several test modules share, so that no test module imports another: paths, real data, a
quickly trained model, the report check, a compare driver started as its own process, the browser
page helpers and the deep trees a test builds."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# EMNIST is too large to ship; the tests read it where the workplace keeps it, beside the repo.
SHARED = ROOT.parent / "shared" / "datasets"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def kept_models(folder: Path, data: Path | None = None) -> Path:
    """A compare-style folder naming the calibrated cnn and crnn checkpoints kept in tests/data (or in
    ``data``, a copy of it), as forms takes them."""
    data = data or ROOT / "tests" / "data"
    rows = [
        {
            "dataset": "mnist",
            "model": "cnn",
            "accuracy": 0.99,
            "field_accuracy": None,
            "checkpoint": str(data / "cnn-before-the-layout.pt"),
        },
        {
            "dataset": "mnist",
            "model": "crnn",
            "accuracy": 0.9,
            "field_accuracy": 0.5,
            "checkpoint": str(data / "crnn-before-the-layout.pt"),
        },
    ]
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "metrics.parquet")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the EMNIST data in {SHARED}")
    return path


def fit_small(ds, folder: Path) -> Path:
    """A quickly trained cnn, saved the way compare saves one, with a compare-style metrics.parquet."""
    import torch

    from hdr_dist.common import tables
    from hdr_dist.inference import readers
    from hdr_dist.models.config import TrainConfig
    from hdr_dist.training import train

    cfg = TrainConfig.from_recipe("cnn", ds, epochs=1, batch_size=64)
    model, history = train.train_plain(cfg, train.arrays_of(ds), torch.device("cpu"))
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "model.pt"
    torch.save({"model": model.state_dict(), "config": cfg.as_dict(), "history": history}, checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    scores = readers.DIGIT.test(state, {"test": (ds.test.x, ds.test.y)}, temperature=1.0).scores
    tables.write_tables(
        folder, {"metrics": [tables.metrics_row(ds.name, "cnn", scores, checkpoint=str(checkpoint))]}
    )
    return folder


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("the review page's test needs Debian's chromium: `make browser` installs it")
    return found


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


def min_height(folder: Path, name: str) -> int:
    """200 px, except for a grid of mistakes: its height follows how many mistakes the run made, which
    moves between CPUs and runs (one row of eight is 189 px), so it is asked for 150 px per row."""
    if not name.startswith("mistakes_"):
        return 200
    model = name.removeprefix("mistakes_").removesuffix(".png")
    count = sum(
        m == model for m in pq.read_table(folder / "mistakes.parquet", columns=["model"])["model"].to_pylist()
    )
    return 150 * max(1, -(-count // 8))


def check_report(folder: Path, expected: set[str]) -> str:
    """Exactly the ``expected`` figures, each a valid PNG with something drawn on it, each embedded
    in report.html byte for byte; the results table (when there is one) before any figure."""
    assert {p.name for p in (folder / "figures").glob("*.png")} == expected
    page = (folder / "report.html").read_text()
    for name in expected:
        png = (folder / "figures" / name).read_bytes()
        assert png.startswith(PNG_MAGIC), name
        assert len(png) > 5000, name
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        with Image.open(io.BytesIO(png)) as im:
            assert im.width >= 300, name
            assert im.height >= min_height(folder, name), name
            low, high = im.convert("L").getextrema()
            assert low < 100 < high, name  # ink on paper, not a blank canvas
        embedded = re.search(
            rf'<img src="data:image/png;base64,([^"]+)" alt="figures/{re.escape(name)}">', page
        )
        assert embedded, name
        assert base64.b64decode(embedded.group(1)) == png, name
    assert page.count("<img ") == len(expected)
    assert 'src="http' not in page  # self-contained
    if "<h2>Results on " in page:
        assert page.index("<table>") < page.index("<img ")
    return page


def table(folder: Path, name: str) -> dict:
    return pq.read_table(folder / f"{name}.parquet").to_pydict()


def checkpoint_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("ray_train/*/checkpoint_*"))


def registered(folder: Path) -> bool:
    """Train V2 has recorded a reported checkpoint in its snapshot: what a restart resumes from."""
    return any(folder.glob("ray_train/*/checkpoint_manager_snapshot.json"))


def driver_with_a_checkpoint(ray_cluster, args: list[str], output: Path, **popen) -> subprocess.Popen:
    """Start compare as a separate driver on the session's cluster; return once it has a checkpoint."""
    driver = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "jobs" / "compare.py"),
            *args,
            "--address",
            ray_cluster.address_info["address"],
        ],
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        **({"stdout": subprocess.DEVNULL} | popen),
    )
    deadline = time.time() + 240
    while not registered(output) and time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert registered(output), "no checkpoint was reported before the deadline"
    return driver
