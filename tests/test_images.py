"""Decoding real encoded images (every accepted format and mode) and every way a file can be bad."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from hdr_dist.bulk import reading
from hdr_dist.data import datasets
from hdr_dist.imaging import images, preprocess


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """The first MNIST test digits, white on black."""
    return datasets.read_idx(datasets.mnist_folder() / "t10k-images-idx3-ubyte.gz", datasets.IDX_IMAGES)[:5]


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def scan(digit: np.ndarray) -> Image.Image:
    return Image.fromarray(255 - digit)  # dark ink on white paper


def tiff_pages(digits) -> bytes:
    first, *rest = (scan(d) for d in digits[:3])
    return encode(first, "TIFF", save_all=True, append_images=rest)


def as_mode(digit: np.ndarray, mode: str) -> bytes:
    paper = scan(digit)
    if mode == "RGBA":  # black everywhere, the ink given by alpha alone: transparent background = paper
        rgba = np.zeros((*digit.shape, 4), np.uint8)
        rgba[..., 3] = digit
        return encode(Image.fromarray(rgba, "RGBA"), "PNG")
    if mode == "I;16":
        return encode(Image.fromarray((255 - digit).astype(np.uint16) * 257), "PNG")
    if mode == "P":
        return encode(paper.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    if mode in ("JPEG", "BMP", "GIF"):
        return encode(paper, mode)
    return encode(paper.convert(mode), "PNG")


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "I;16", "JPEG", "BMP", "GIF"])
def test_every_accepted_mode_and_format_decodes(digits, mode):
    raw = as_mode(digits[0], mode)
    pages = list(images.decode(raw))
    assert len(pages) == 1
    page, count, w, h, gray, error = pages[0]
    assert (page, count, w, h, error) == (0, 1, 28, 28, None)
    assert gray.ndim == 2
    assert gray.shape == (28, 28)
    out, ref = preprocess.to_mnist(gray), preprocess.to_mnist(digits[0])
    # "1" is thresholded and JPEG lossy (measured 6.6 and 1.6); another digit is ~40 away.
    assert np.abs(out.astype(int) - ref).mean() < 10


def test_16_bit_png_is_float_in_unit_range(digits):
    ((_, _, _, _, gray, _),) = images.decode(as_mode(digits[0], "I;16"))
    assert gray.dtype == np.float32
    assert gray.max() == 1.0
    assert gray.min() < 0.1


def test_multipage_tiff_gives_every_page(digits):
    pages = list(images.decode(tiff_pages(digits)))
    assert [(p, n, e) for p, n, _, _, _, e in pages] == [(0, 3, None), (1, 3, None), (2, 3, None)]
    for (_, _, _, _, gray, _), d in zip(pages, digits):
        assert np.array_equal(preprocess.to_mnist(gray), preprocess.to_mnist(d))


def test_float_tiff_in_unit_range_is_not_blank(digits):
    """PACKAGE BUG: a 32-bit float ("F") TIFF with values in [0, 1] is divided by 255 in grayscale."""
    raw = encode(Image.fromarray((255 - digits[0]).astype(np.float32) / 255), "TIFF")
    ((_, _, _, _, gray, error),) = images.decode(raw)
    assert error is None
    assert gray.max() == pytest.approx(1.0), f"grayscale() gave max {gray.max():.5f}, expected 1.0"


def errors(raw: bytes, **kw) -> list[str]:
    return [e for *_, e in images.decode(raw, **kw)]


def test_empty_file():
    assert errors(b"") == ["empty file (0 bytes)"]


def test_random_bytes_are_not_an_image():
    (error,) = errors(np.random.default_rng(0).bytes(1000))
    assert error.startswith("not an image")


def test_truncated_png_is_corrupt(digits):
    raw = as_mode(digits[0], "L")
    (error,) = errors(raw[: len(raw) // 2])
    assert error.startswith("corrupt image")
    assert "\n" not in error


def test_image_over_max_pixels():
    raw = encode(Image.new("L", (2000, 2000), 255), "PNG")
    assert errors(raw, max_pixels=1_000_000) == [
        "image too large: 2000x2000 pixels exceeds --max-pixels 1,000,000"
    ]
    assert errors(raw, max_pixels=4_000_000) == [None]


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "WEBP"])
def test_unsupported_format(digits, fmt):
    (error,) = errors(encode(scan(digits[0]), fmt))
    assert error.startswith(f"unsupported image format {fmt}")


def read_row(source, data=None, error=None, skip=(), label=None):
    return {
        "source": source,
        "member": None,
        "occurrence": 0,
        "true_label": label,
        "data": data,
        "error": error,
        "skip_pages": list(skip),
    }


def test_decode_batch(digits):
    tiff = tiff_pages(digits)
    table = pa.Table.from_pylist(
        [
            read_row("good.png", as_mode(digits[0], "L"), label="7"),
            read_row("blank.png", encode(Image.new("L", (40, 30), 255), "PNG")),
            read_row("pages.tif", tiff),
            read_row("denied.png", error="cannot read: Permission denied"),
            read_row("resumed.tif", tiff, skip=[0, 1]),
        ],
        schema=reading.READ_SCHEMA,
    )
    (out,) = images.decode_batch(table, images.DEFAULT_MAX_PIXELS)
    assert out.schema == images.DECODED_SCHEMA
    rows = out.to_pylist()
    assert [(r["source"], r["page"], r["pages"], r["error"]) for r in rows] == [
        ("good.png", 0, 1, None),
        ("blank.png", 0, 1, "blank image"),
        ("pages.tif", 0, 3, None),
        ("pages.tif", 1, 3, None),
        ("pages.tif", 2, 3, None),
        ("denied.png", 0, 1, "cannot read: Permission denied"),
        ("resumed.tif", 2, 3, None),
    ]
    assert all(len(r["image"]) == 784 for r in rows)
    assert rows[0]["image"] == preprocess.to_mnist(digits[0]).tobytes()
    assert rows[0]["true_label"] == "7"
    assert rows[6]["image"] == rows[4]["image"] == preprocess.to_mnist(digits[2]).tobytes()
    assert rows[1]["image"] == bytes(784)
    assert rows[5]["image"] == bytes(784)
    assert (rows[1]["width"], rows[1]["height"]) == (40, 30)
    assert rows[5]["width"] is None


def test_a_broken_page_directory_keeps_the_pages_before_it(digits):
    from hdr_dist.data.hostile import cut_tiff_directory, tiff

    got = list(images.decode(cut_tiff_directory(tiff(digits, 6), 4)))
    assert [(p, n) for p, n, *_ in got] == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5)]
    assert [e for *_, e in got[:4]] == [None] * 4
    assert got[4][5].startswith("corrupt image: page 5 unreadable")


def test_thousands_of_pages_come_out_in_bounded_tables(digits):
    """One file of 5,000 pages: tables of at most OUT_ROWS rows, every page once."""
    from hdr_dist.data.hostile import tiff

    table = pa.Table.from_pylist([read_row("many.tif", tiff(digits, 5000))], schema=reading.READ_SCHEMA)
    out = list(images.decode_batch(table, images.DEFAULT_MAX_PIXELS))
    assert [t.num_rows for t in out] == [images.OUT_ROWS, 5000 - images.OUT_ROWS]
    rows = pa.concat_tables(out)
    assert rows["page"].to_pylist() == list(range(5000))
    assert set(rows["pages"].to_pylist()) == {5000}
    assert rows["error"].null_count == 5000


def test_whatever_a_page_raises_becomes_its_error():
    """Not only ValueError: any exception preprocessing raises is that page's row, never the batch's."""
    image, error = images.to_mnist(np.zeros((3, 3, 3), np.uint8))
    assert image == images.BLANK
    assert error.startswith("cannot preprocess: expected a 2-D image")
    image, error = images.to_mnist(np.array([["a", "b"], ["c", "d"]], dtype=object))
    assert image == images.BLANK
    assert error.startswith("cannot preprocess: ")
