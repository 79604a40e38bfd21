"""Scan-like image sets made from MNIST or EMNIST: what the scoring tests and benchmarks read.

Each image is rendered as black ink on white paper at a given size and format,
named ``<label>/<size>px-<format>/<index>.<ext>`` so that the label is the
first folder (torchvision's ImageFolder convention, ``--labels-from dirname``).
``python -m hdr_dist.samples`` (``hdr_dist.jobs.samples``) writes such a set for a quick try of
``hdr score``.
"""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}


def render(img_u8: np.ndarray, size: int = 28, fmt: str = "PNG") -> bytes:
    """A white-on-black 28x28 digit -> an encoded image of dark ink on light paper, ``size`` px."""
    im = Image.fromarray(255 - img_u8)
    if size != img_u8.shape[0]:
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    im.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def entries(x: np.ndarray, y: np.ndarray, labels: list[str], sizes=(28,), formats=("PNG",)):
    """(name, bytes) for every image at every size and format."""
    for size in sizes:
        for fmt in formats:
            for i, (img, cls) in enumerate(zip(x, y)):
                yield (
                    f"{labels[cls]}/{size}px-{fmt.lower()}/{i:05d}.{EXTENSIONS[fmt]}",
                    render(img, size, fmt),
                )


def write_folder(root: Path, items) -> int:
    n = 0
    for name, data in items:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        n += 1
    return n


def write_tar(path: Path, items) -> int:
    n = 0
    with tarfile.open(path, "w:gz" if path.name.endswith(("gz", "tgz")) else "w") as t:
        for name, data in items:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            t.addfile(info, io.BytesIO(data))
            n += 1
    return n


def write_zip(path: Path, items) -> int:
    n = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in items:
            z.writestr(name, data)
            n += 1
    return n


def write(path: Path, items) -> int:
    """Into a folder, or a .zip / .tar / .tar.gz archive, chosen by the path's name."""
    name = path.name.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".zip"):
        return write_zip(path, items)
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return write_tar(path, items)
    return write_folder(path, items)


if __name__ == "__main__":  # the command is a job's now; the library cannot import the jobs
    raise SystemExit("this is a library module; write a sample set with `python -m hdr_dist.samples`")
