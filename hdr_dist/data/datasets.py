"""Datasets: the embedded MNIST copy, a user's MNIST folder, and official EMNIST files.

Everything is read from local IDX files; nothing is ever downloaded, because the
machines this runs on (air-gapped clusters, CI) often cannot reach the internet.
Images come out upright, uint8, shape (N, 28, 28); labels are class indices
0..C-1 with ``labels[i]`` the character class i stands for.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from hdr_dist.common.errors import SettingError, UserError, setting
from hdr_dist.imaging import preprocess

DATASETS = ("mnist", "emnist-balanced", "emnist-letters", "emnist-digits", "emnist-bymerge")

# MD5 of the official *uncompressed* MNIST files: the gzip wrapper may differ
# between copies, the bytes inside must not.
MNIST_FILES = {
    "train": (
        ("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
        ("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    ),
    "test": (
        ("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
        ("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
    ),
}
IDX_IMAGES, IDX_LABELS = 2051, 2049
VAL_FRACTION = 0.1
# ByMerge ships only its test split here; 85/15 is the re-split the data README describes.
BYMERGE_RESPLIT_TEST_FRACTION = 0.15


@dataclass
class Split:
    x: np.ndarray  # (N, 28, 28) uint8, 0 = background
    y: np.ndarray  # (N,) int64 class indices


@dataclass
class Dataset:
    name: str  # what every output calls it, e.g. "emnist-bymerge-test-resplit"
    labels: list[str]  # character of each class index
    train: Split
    val: Split
    test: Split
    mean: float  # pixel statistics of the training split, on the [0, 1] scale
    std: float

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def read_idx_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it ends in .gz, with a readable error otherwise."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise UserError(f"{path}: corrupt or truncated gzip data ({e})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def parse_idx(data: bytes, path: Path, magic: int) -> np.ndarray:
    """Parse IDX bytes (unsigned-byte type only, as MNIST and EMNIST use) and check the header."""
    if len(data) < 4:
        raise UserError(f"{path}: not an IDX file (only {len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        kind = "images" if magic == IDX_IMAGES else "labels"
        raise UserError(f"{path}: wrong magic number {found}, expected {magic} for IDX {kind}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise UserError(
            f"{path}: header says {expected} bytes of data for shape {shape}, "
            f"file has {len(data) - header} (truncated or corrupt)"
        )
    # A copy: frombuffer's view of the file bytes is read-only, which torch warns about.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx(path: Path, magic: int) -> np.ndarray:
    return parse_idx(read_idx_bytes(path), path, magic)


def find_idx(folder: Path, stem: str) -> Path | None:
    """An IDX file may be stored gzipped or not; accept either spelling."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_pair(
    images: Path, labels: Path, images_bytes: bytes | None = None, labels_bytes: bytes | None = None
) -> Split:
    x = parse_idx(images_bytes if images_bytes is not None else read_idx_bytes(images), images, IDX_IMAGES)
    y = parse_idx(labels_bytes if labels_bytes is not None else read_idx_bytes(labels), labels, IDX_LABELS)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise UserError(f"{images}: images must be 28x28, found shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{labels}: {y.shape} labels for {len(x)} images in {images.name}")
    return Split(x, y.astype(np.int64))


def mnist_folder() -> Path:
    return Path(str(resources.files("hdr_dist.data") / "mnist"))


def load_mnist(folder: Path) -> tuple[list[str], Split, Split]:
    splits = {}
    for split, ((img_stem, img_md5), (lbl_stem, lbl_md5)) in MNIST_FILES.items():
        paths = [find_idx(folder, img_stem), find_idx(folder, lbl_stem)]
        missing = [s for s, p in zip((img_stem, lbl_stem), paths) if p is None]
        if missing:
            raise UserError(f"{folder}: incomplete MNIST folder, missing {', '.join(missing)}[.gz]")
        blobs = [read_idx_bytes(p) for p in paths]
        splits[split] = read_pair(paths[0], paths[1], *blobs)  # format errors first: they say more
        for path, blob, md5 in zip(paths, blobs, (img_md5, lbl_md5)):
            if hashlib.md5(blob).hexdigest() != md5:
                raise UserError(
                    f"{path}: checksum mismatch, not the official MNIST file (corrupt or modified copy)"
                )
    return [str(d) for d in range(10)], splits["train"], splits["test"]


def read_mapping(path: Path) -> tuple[np.ndarray, list[str]]:
    """EMNIST's ``label ascii_code`` lines: a raw-label -> class-index table and the characters."""
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        raw = [int(r[0]) for r in rows]
        chars = [chr(int(r[1])) for r in rows]
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (EMNIST needs its mapping file)") from None
    except (ValueError, IndexError, UnicodeDecodeError):
        raise UserError(f"{path}: not an EMNIST mapping file (want 'label ascii_code' lines)") from None
    table = np.full(max(raw) + 1, -1, dtype=np.int64)
    table[raw] = np.arange(len(raw))
    return table, chars


def to_classes(split: Split, table: np.ndarray, labels_path: Path) -> Split:
    bad = split.y[(split.y >= len(table)) | (table[np.minimum(split.y, len(table) - 1)] < 0)]
    if len(bad):
        raise UserError(f"{labels_path}: label {int(bad[0])} is not in the mapping file")
    # Official EMNIST images are stored transposed; .T per image makes them upright.
    return Split(np.ascontiguousarray(split.x.transpose(0, 2, 1)), table[split.y])


def load_emnist(name: str, folder: Path) -> tuple[str, list[str], Split, Split]:
    split = name.removeprefix("emnist-")
    mapping = folder / f"emnist-{split}-mapping.txt"
    stems = {
        part: (f"emnist-{split}-{part}-images-idx3-ubyte", f"emnist-{split}-{part}-labels-idx1-ubyte")
        for part in ("train", "test")
    }
    found = {part: [find_idx(folder, s) for s in pair] for part, pair in stems.items()}
    missing = [s for part in found for s, p in zip(stems[part], found[part]) if p is None]
    if split == "bymerge" and None in found["train"] and None not in found["test"]:
        table, chars = read_mapping(mapping)
        every = to_classes(read_pair(*found["test"]), table, found["test"][1])
        train_idx, test_idx = stratified(every.y, BYMERGE_RESPLIT_TEST_FRACTION, seed=0)
        return (
            f"{name}-test-resplit",
            chars,
            Split(every.x[train_idx], every.y[train_idx]),
            Split(every.x[test_idx], every.y[test_idx]),
        )
    if missing:
        raise UserError(f"{folder}: incomplete {name} folder, missing {', '.join(missing)}[.gz]")
    table, chars = read_mapping(mapping)
    train = to_classes(read_pair(*found["train"]), table, found["train"][1])
    test = to_classes(read_pair(*found["test"]), table, found["test"][1])
    return name, chars, train, test


def stratified(y: np.ndarray, take: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, taken): ``take`` is a fraction or a count, drawn per class in proportion."""
    idx = np.arange(len(y))
    try:
        rest, taken = train_test_split(idx, test_size=take, stratify=y, random_state=seed)
    except ValueError:  # too few samples to give every class a share: draw without strata
        rest, taken = train_test_split(idx, test_size=take, random_state=seed)
    return np.sort(rest), np.sort(taken)


def subsample(split: Split, limit: int | None, seed: int) -> Split:
    if limit is None or limit >= len(split.y):
        return split
    _, keep = stratified(split.y, limit, seed)
    return Split(split.x[keep], split.y[keep])


def load(
    name: str = "mnist",
    data_dir: str | Path | None = None,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    scan_preprocess: bool = False,
) -> Dataset:
    """Load ``name``, hold out a stratified, seeded 10 % of train for validation, apply limits.

    The test split is kept apart and is only ever used for the final evaluation.
    ``scan_preprocess`` passes every image through ``preprocess.to_mnist`` first.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    folder = Path(data_dir).expanduser() if data_dir else None
    if folder is not None and not folder.is_dir():
        raise SettingError("data_dir", folder, "no such folder")
    if name == "mnist":
        labels, train, test = load_mnist(folder or mnist_folder())
    else:
        if folder is None:
            needs = f"needs {setting('data_dir')} pointing at the official EMNIST files"
            raise UserError(f"{setting('dataset')} {name} {needs}")
        name, labels, train, test = load_emnist(name, folder)
    train = subsample(train, limit_train, seed)
    test = subsample(test, limit_test, seed)
    if scan_preprocess:  # exactly what ``score`` does to a scan, so training sees what scoring will
        train, test = (Split(preprocess.batch(s.x), s.y) for s in (train, test))
    fit_idx, val_idx = stratified(train.y, VAL_FRACTION, seed)
    fit = Split(train.x[fit_idx], train.y[fit_idx])
    return Dataset(
        name=name,
        labels=labels,
        train=fit,
        val=Split(train.x[val_idx], train.y[val_idx]),
        test=test,
        mean=float(fit.x.mean(dtype=np.float64) / 255),
        std=float(fit.x.std(dtype=np.float64) / 255),
    )
