"""Shared fixtures: one real local Ray cluster per test session, a user's MNIST folder, a small digit
model trained once for the scoring tests, the browser, a deep tree; and each test's random state
restored after it. Helpers shared by several modules are in ``tests/helpers.py``."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import chromium, fit_small, free_port, make_deep, remove_deep

# Markers by what a test uses, so `make test-fast` (-m "not ray and not cluster and not browser")
# leaves the unit tests: ray, the session's Ray cluster (or a Ray a job it runs starts itself);
# cluster, a multi-node `ray start` cluster; browser, Debian's chromium.
MARKERS = {"ray_cluster": "ray", "cluster": "cluster", "browser": "browser", "digits_model": "ray"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, marker in MARKERS.items():
            if fixture in item.fixturenames:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def ray_cluster():
    """A private local Ray for the whole session; jobs run in-process join it via ray.is_initialized().

    With its dashboard, as every real cluster has: Ray Train's placement-group cleaner asks its
    state API whether a run's controller still lives, and only then frees the workers' CPUs of
    a Train run whose Tune trial ASHA stopped. Started as the jobs start theirs
    (``cluster.start_private``), so that the cleaner finds this cluster while another Ray runs
    on the machine: a job a test starts, or another test session.
    """
    import ray

    from hdr_dist.common import cluster

    # A port of its own: a `ray start` head in another test takes the default.
    ctx = cluster.start_private(
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        logging_level="WARNING",
    )
    yield ctx
    ray.shutdown()


@pytest.fixture
def mnist_copy(tmp_path: Path) -> Path:
    """A user's MNIST folder: the embedded files, uncompressed (the other accepted spelling)."""
    from hdr_dist.data.datasets import mnist_folder

    folder = tmp_path / "mnist"
    folder.mkdir()
    for gz in mnist_folder().glob("*.gz"):
        (folder / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    return folder


@pytest.fixture(scope="session")
def mnist():
    from hdr_dist.data import datasets

    return datasets.load("mnist", limit_train=3000, limit_test=120)


@pytest.fixture(scope="session")
def digits_model(mnist, tmp_path_factory):
    return fit_small(mnist, tmp_path_factory.mktemp("digits-model"))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def deep(tmp_path):
    """2,500 nested folders under tmp_path, a digit at levels 1 and 1,100 (paths of 2,200 characters),
    and the tree removed afterwards."""
    from hdr_dist.data import datasets, samples

    digit = datasets.read_idx(datasets.mnist_folder() / "t10k-images-idx3-ubyte.gz", datasets.IDX_IMAGES)[0]
    make_deep(tmp_path, 2500, {1, 1100}, samples.render(digit))
    yield tmp_path
    remove_deep(tmp_path)


@pytest.fixture(autouse=True)
def restore_random_state():
    """Each test leaves the global random generators as it found them (as torchvision's tests do), so
    no test's result depends on which tests ran before it."""
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
