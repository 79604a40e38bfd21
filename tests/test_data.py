"""The IDX reader and dataset loading on the real MNIST and EMNIST files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from hdr_dist.common.errors import UserError
from hdr_dist.data import datasets
from tests.helpers import shared

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="module")
def mnist():
    return datasets.load("mnist")


def test_embedded_mnist_splits_and_stratified_holdout(mnist):
    assert (len(mnist.train.y), len(mnist.val.y), len(mnist.test.y)) == (54000, 6000, 10000)
    assert mnist.train.x.shape[1:] == (28, 28)
    assert mnist.train.x.dtype == np.uint8
    counts = np.bincount(mnist.train.y, minlength=10) + np.bincount(mnist.val.y, minlength=10)
    assert counts.tolist() == MNIST_TRAIN_COUNTS
    # Stratified: every class gives 10 % (within rounding) to validation.
    val_share = np.bincount(mnist.val.y, minlength=10) / np.array(MNIST_TRAIN_COUNTS)
    assert np.allclose(val_share, 0.1, atol=0.002)
    assert mnist.labels == [str(d) for d in range(10)]
    assert abs(mnist.mean - 0.1307) < 0.002
    assert abs(mnist.std - 0.3081) < 0.002


def test_holdout_is_seeded():
    a, b = datasets.load("mnist", limit_train=2000, seed=1), datasets.load("mnist", limit_train=2000, seed=1)
    c = datasets.load("mnist", limit_train=2000, seed=2)
    assert np.array_equal(a.val.x, b.val.x)
    assert not np.array_equal(a.val.x, c.val.x)
    assert len(a.train.y) + len(a.val.y) == 2000
    assert len(np.unique(a.val.y)) == 10


def test_user_folder_uncompressed(mnist_copy, mnist):
    ds = datasets.load("mnist", mnist_copy, limit_test=500)
    assert np.array_equal(ds.train.x, mnist.train.x)
    assert len(ds.test.y) == 500
    assert np.bincount(ds.test.y).min() >= 40


def test_incomplete_folder_names_missing_files(mnist_copy):
    (mnist_copy / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(UserError, match="incomplete MNIST folder, missing t10k-images-idx3-ubyte"):
        datasets.load("mnist", mnist_copy)


def test_checksum_catches_modified_copy(mnist_copy):
    path = mnist_copy / "train-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="train-labels-idx1-ubyte: checksum mismatch"):
        datasets.load("mnist", mnist_copy)


def test_missing_folder():
    with pytest.raises(UserError, match="no such folder"):
        datasets.load("mnist", "/nonexistent/mnist")


def idx(magic: int, shape: tuple, payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + payload


def test_idx_reader_accepts_valid_and_rejects_bad(tmp_path: Path):
    good = tmp_path / "good-images-idx3-ubyte.gz"
    good.write_bytes(gzip.compress(idx(2051, (2, 28, 28), bytes(range(256)) * 6 + bytes(32))))
    x = datasets.read_idx(good, datasets.IDX_IMAGES)
    assert x.shape == (2, 28, 28)
    assert x[0, 0, 5] == 5

    truncated = tmp_path / "truncated-images-idx3-ubyte"
    truncated.write_bytes(idx(2051, (2, 28, 28), bytes(1000)))
    with pytest.raises(
        UserError, match=r"truncated-images-idx3-ubyte: header says 1568 bytes.*file has 1000"
    ):
        datasets.read_idx(truncated, datasets.IDX_IMAGES)

    corrupt = tmp_path / "corrupt-images-idx3-ubyte.gz"
    corrupt.write_bytes(gzip.compress(idx(2051, (2, 28, 28), bytes(1568)))[:40])
    with pytest.raises(UserError, match="corrupt-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        datasets.read_idx(corrupt, datasets.IDX_IMAGES)

    not_gzip = tmp_path / "plain-text.gz"
    not_gzip.write_text("hello")
    with pytest.raises(UserError, match="plain-text.gz: corrupt or truncated gzip"):
        datasets.read_idx(not_gzip, datasets.IDX_IMAGES)

    labels_as_images = tmp_path / "labels-idx1-ubyte"
    labels_as_images.write_bytes(idx(2049, (3,), bytes(3)))
    with pytest.raises(UserError, match="wrong magic number 2049, expected 2051"):
        datasets.read_idx(labels_as_images, datasets.IDX_IMAGES)

    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(UserError, match="not an IDX file"):
        datasets.read_idx(tiny, datasets.IDX_IMAGES)


def test_pair_checks_shape_and_count(tmp_path: Path):
    images, labels = tmp_path / "i", tmp_path / "l"
    images.write_bytes(idx(2051, (2, 27, 27), bytes(2 * 27 * 27)))
    labels.write_bytes(idx(2049, (2,), bytes(2)))
    with pytest.raises(UserError, match="images must be 28x28"):
        datasets.read_pair(images, labels)
    images.write_bytes(idx(2051, (2, 28, 28), bytes(2 * 784)))
    labels.write_bytes(idx(2049, (3,), bytes(3)))
    with pytest.raises(UserError, match=r"\(3,\) labels for 2 images"):
        datasets.read_pair(images, labels)


def balanced_dir(tmp_path: Path) -> Path:
    """The real EMNIST Balanced slices under their official names, as a user's complete folder."""
    part = shared("emnist-balanced", "partial")
    folder = tmp_path / "emnist"
    folder.mkdir()
    for src in part.iterdir():
        kind = "train" if "-train-" in src.name else "test"
        what = "images-idx3" if "images" in src.name else "labels-idx1"
        (folder / f"emnist-balanced-{kind}-{what}-ubyte.gz").write_bytes(src.read_bytes())
    (folder / "emnist-balanced-mapping.txt").write_bytes(
        shared("emnist-balanced", "emnist-balanced-mapping.txt").read_bytes()
    )
    return folder


def test_emnist_official_files_upright_with_characters(tmp_path: Path):
    ds = datasets.load("emnist-balanced", balanced_dir(tmp_path))
    assert ds.name == "emnist-balanced"
    assert ds.num_classes == 47
    assert len(ds.train.y) + len(ds.val.y) == 9120
    assert len(ds.test.y) == 304
    assert ds.labels[:11] == [*"0123456789", "A"]
    assert ds.labels[-1] == "t"
    # Upright: a "1" is a tall stroke, so it covers more rows than columns.
    ones = np.concatenate([ds.train.x[ds.train.y == 1], ds.val.x[ds.val.y == 1]])
    rows = (ones.max(axis=2) > 128).sum(axis=1).mean()
    cols = (ones.max(axis=1) > 128).sum(axis=1).mean()
    assert rows > 1.5 * cols


def test_emnist_partial_folder_is_incomplete():
    with pytest.raises(
        UserError, match="incomplete emnist-balanced folder, missing emnist-balanced-train-images"
    ):
        datasets.load("emnist-balanced", shared("emnist-balanced"))


def test_emnist_unknown_label(tmp_path: Path):
    folder = balanced_dir(tmp_path)
    (folder / "emnist-balanced-mapping.txt").write_text("0 48\n1 49\n")
    with pytest.raises(
        UserError, match=r"emnist-balanced-train-labels-idx1-ubyte.gz: label \d+ is not in the mapping file"
    ):
        datasets.load("emnist-balanced", folder)


def test_emnist_needs_data_dir():
    with pytest.raises(UserError, match="--dataset emnist-letters needs --data-dir"):
        datasets.load("emnist-letters")


def test_bymerge_test_only_is_resplit_and_named_so():
    ds = datasets.load("emnist-bymerge", shared("emnist-bymerge"), limit_test=3000)
    assert ds.name == "emnist-bymerge-test-resplit"
    assert ds.num_classes == 47
    total = len(ds.train.y) + len(ds.val.y)
    assert abs(total - 0.85 * 116323) < 2
    assert len(np.unique(ds.train.y)) == 47
