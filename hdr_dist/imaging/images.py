"""Image bytes -> grayscale pages -> MNIST-space 28x28 images, with every way a file can be bad
turned into a one-line error.

Scoring never stops for one bad input: ``decode`` returns an error string for
the page (or the whole file) instead of raising, so the job can write a row for
it and go on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from hdr_dist.common.errors import flag, one_line
from hdr_dist.imaging import pdf, preprocess

FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF", "GIF")  # MPO: a camera's JPEG with a second picture
# --max-pixels is checked here, per page, from the header before any pixel is decoded. Pillow's
# own check (a process-wide setting, left alone) only warns below twice its limit of 89 M pixels,
# and that warning is silenced; beyond 179 M it refuses the image, which is then too large too.
DEFAULT_MAX_PIXELS = 50_000_000  # a 300 dpi A3 page is 17.4 M; far beyond that is a decompression bomb
# The setting, as a page's row names it: rows are output, never shown through a job, so the row spells
# the flag itself.
MAX_PIXELS = flag("max_pixels")
PIXELS = preprocess.FIELD * preprocess.FIELD
BLANK = bytes(PIXELS)
OUT_ROWS = 4096  # page rows per table decoding yields
DECODED_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("member", pa.string()),
        ("occurrence", pa.int32()),
        ("page", pa.int32()),
        ("pages", pa.int32()),
        ("true_label", pa.string()),
        ("error", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image", pa.binary(PIXELS)),
    ]
)  # the 28x28 uint8 image, zeros where there is an error
# For a field model: the strip (STRIP_HEIGHT rows, uint8, row by row) of any width; empty where there is
# an error.
FIELD_SCHEMA = DECODED_SCHEMA.set(DECODED_SCHEMA.get_field_index("image"), pa.field("image", pa.binary()))


def grayscale(img: Image.Image) -> np.ndarray:
    """Any of Pillow's modes -> (H, W), 0 = black: uint8 for 8-bit images (the fast path of
    ``preprocess``), float32 in [0, 1] for 16- and 32-bit ones; transparency is paper (white)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        top = float(a.max()) if a.size else 0.0
        full = 1.0 if img.mode == "F" and top <= 1.0 else 255.0 if top <= 255 else 65535.0
        return a / full
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        paper = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, img.convert("RGBA"))
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8)


def colour_or_grey(img: Image.Image) -> np.ndarray:
    """A colour page as (H, W, 3) RGB uint8, for a reader that drops a form's print by its colour;
    any page without colour as ``grayscale`` gives it."""
    if img.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        return grayscale(img)
    if img.mode in ("RGBA", "P", "RGBa"):
        paper = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, img.convert("RGBA"))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def page_count(img: Image.Image) -> tuple[int, str | None]:
    """A TIFF's pages, from its page directory alone (no pixels), and why the directory breaks off
    early if it does: the pages before the break are still scored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd tags in a page's directory
        try:
            return img.n_frames, None
        except Exception:  # noqa: BLE001 - walk it page by page to find where it breaks
            pages = 1
            while True:
                try:
                    img.seek(pages)
                    pages += 1
                except EOFError:
                    return pages, None
                except Exception as e:  # any failure past the first page ends the count there
                    return pages, one_line(e)


def decode(
    data: bytes | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    pdf_width: int | None = None,
    colour: bool = False,
):
    """Yield ``(page, pages, width, height, gray, error)`` for each page of an image file or a PDF
    (rendered ``pdf_width`` pixels wide, else at ``pdf.DPI``); with ``colour``, a colour page comes as
    (H, W, 3) RGB.

    ``gray`` is None exactly when ``error`` is set. A file that cannot be opened
    at all yields one page-0 item with the error. Pages come one at a time, so a
    TIFF of thousands of pages never sits whole in memory.
    """
    if not data:
        yield 0, 1, None, None, None, "empty file (0 bytes)"
        return
    if data.startswith(pdf.SIGNATURE):
        yield from pdf.pages(data, max_pixels, pdf_width, colour)
        return
    img, error = opened(data)
    if img is None:
        yield 0, 1, None, None, None, error
        return
    if img.format not in FORMATS:
        yield 0, 1, *img.size, None, f"unsupported image format {img.format} (accepted: {', '.join(FORMATS)})"
        return
    # Each page of a multi-page TIFF is an image; an animated GIF or PNG is scored on its first frame.
    pages, broken = page_count(img) if img.format == "TIFF" else (1, None)
    total = pages + (broken is not None)
    for page in range(pages):
        yield one_page(img, page, total, max_pixels, colour)
    if broken is not None:
        yield pages, total, None, None, None, f"corrupt image: page {pages + 1} unreadable: {broken}"


def opened(data: bytes) -> tuple[Image.Image | None, str | None]:
    """The file opened from its header alone (no pixels), or None and why it cannot be."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd but readable metadata
            return Image.open(io.BytesIO(data)), None
    except UnidentifiedImageError:
        return None, "not an image (no PNG, JPEG, BMP, TIFF, GIF or PDF header)"
    except Image.DecompressionBombError as e:
        return None, f"image too large: {one_line(e)}"
    except Exception as e:  # noqa: BLE001 - any failure to parse a header is that file's error
        return None, f"corrupt image: {one_line(e)}"


def one_page(img: Image.Image, page: int, total: int, max_pixels: int, colour: bool = False) -> tuple:
    """``decode``'s item for one page of an open file: its pixels, or why not (a page larger than
    ``max_pixels``, from its header, is refused before any pixel is decoded)."""
    try:
        with warnings.catch_warnings():  # held only within this call: the caller's filters are its own
            warnings.simplefilter("ignore")
            if page:
                img.seek(page)
            w, h = img.size
            if w * h > max_pixels:
                return (
                    page,
                    total,
                    w,
                    h,
                    None,
                    f"image too large: {w}x{h} pixels exceeds {MAX_PIXELS} {max_pixels:,}",
                )
            img.load()
            gray = colour_or_grey(img) if colour else grayscale(img)
    except Image.DecompressionBombError as e:  # a TIFF page beyond Pillow's own limit
        return page, total, None, None, None, f"image too large: {one_line(e)}"
    except Exception as e:  # noqa: BLE001 - truncated or corrupt pixel data, a page that will not seek
        return page, total, *img.size, None, f"corrupt image: {one_line(e)}"
    return page, total, w, h, gray, None


def to_mnist(gray) -> tuple[bytes, str | None]:
    """A decoded page in MNIST space, or why not: no failure of one page may stop the batch."""
    try:
        return preprocess.to_mnist(gray).tobytes(), None
    except preprocess.BlankImage as e:
        return BLANK, str(e)
    except Exception as e:  # noqa: BLE001 - too few pixels, or anything a strange page does to numpy or scipy
        return BLANK, f"cannot preprocess: {one_line(e)}"


def to_field(gray) -> tuple[bytes, str | None]:
    """A decoded page as a field model's strip (``preprocess.to_strip``), or why not."""
    try:
        return (preprocess.to_strip(gray) * 255).round().astype(np.uint8).tobytes(), None
    except (preprocess.BlankImage, preprocess.FieldTooWide) as e:
        return b"", str(e)
    except Exception as e:  # noqa: BLE001 - as to_mnist
        return b"", f"cannot preprocess: {one_line(e)}"


def strip_of(data: bytes) -> np.ndarray:
    """``to_field``'s bytes -> the strip, white ink on black, on [0, 1]."""
    return np.frombuffer(data, np.uint8).reshape(preprocess.STRIP_HEIGHT, -1).astype(np.float32) / 255.0


@dataclass(frozen=True)
class Preparation:
    """How a page is made what a model reads (a reader kind's part in decoding): the decoded rows'
    schema, the function, and what a row that failed holds in its image column."""

    schema: pa.Schema
    prepare: Callable[[np.ndarray], tuple[bytes, str | None]]
    blank: bytes


DIGIT = Preparation(DECODED_SCHEMA, to_mnist, BLANK)
FIELD = Preparation(FIELD_SCHEMA, to_field, b"")


def decode_batch(batch: pa.Table, max_pixels: int, preparation: Preparation = DIGIT) -> Iterator[pa.Table]:
    """Read rows (one per file) -> page rows with the image a model reads (``preparation``: the 28x28
    MNIST-space image, or a field model's strip), or an error; in tables of at most OUT_ROWS rows,
    however many pages the files hold."""
    schema, prepare, blank = preparation.schema, preparation.prepare, preparation.blank
    rows: dict[str, list] = {name: [] for name in schema.names}

    def add(row, page, pages, w, h, image, error) -> bool:
        for k, v in (
            ("source", row["source"]),
            ("member", row["member"]),
            ("occurrence", row["occurrence"]),
            ("page", page),
            ("pages", pages),
            ("true_label", row["true_label"]),
            ("error", error),
            ("width", w),
            ("height", h),
            ("image", image),
        ):
            rows[k].append(v)
        return len(rows["source"]) >= OUT_ROWS

    def table() -> pa.Table:
        out = pa.Table.from_pydict(rows, schema=schema)
        for values in rows.values():
            values.clear()
        return out

    for row in batch.to_pylist():
        if row["error"] is not None:
            if add(row, 0, 1, None, None, blank, row["error"]):
                yield table()
            continue
        skip = set(row["skip_pages"] or ())
        for page, pages, w, h, gray, error in decode(row["data"], max_pixels):
            if page in skip:
                continue
            image = blank
            if error is None:
                image, error = prepare(gray)
            if add(row, page, pages, w, h, image, error):
                yield table()
    if rows["source"]:
        yield table()
