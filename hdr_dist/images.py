"""Image bytes -> grayscale pages -> MNIST-space 28x28 images, with every way a file can be bad
turned into a one-line error.

Scoring never stops for one bad input: ``decode`` returns an error string for
the page (or the whole file) instead of raising, so the job can write a row for
it and go on.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pyarrow as pa
from PIL import Image, ImageSequence, UnidentifiedImageError

from hdr_dist import preprocess

FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF")
DEFAULT_MAX_PIXELS = 50_000_000  # a 300 dpi A3 page is 17.4 M; far beyond that is a decompression bomb
PIXELS = preprocess.FIELD * preprocess.FIELD
DECODED_SCHEMA = pa.schema([
    ("source", pa.string()), ("member", pa.string()), ("page", pa.int32()), ("pages", pa.int32()),
    ("true_label", pa.string()), ("error", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("image", pa.binary(PIXELS))])  # the 28x28 uint8 image, zeros where there is an error

# The pixel limit is checked here, per page, from the header before any pixel is decoded;
# Pillow's own global check would only warn below twice its limit.
Image.MAX_IMAGE_PIXELS = None


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


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]


def decode(data: bytes | None, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Yield ``(page, width, height, gray, error)`` for each page of an image file.

    ``gray`` is None exactly when ``error`` is set. A file that cannot be opened
    at all yields one page-0 item with the error.
    """
    if not data:
        yield 0, None, None, None, "empty file (0 bytes)"
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd but readable metadata
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        yield 0, None, None, None, "not an image (no PNG, JPEG, BMP, TIFF or GIF header)"
        return
    except Exception as e:  # noqa: BLE001 - any failure to parse a header is that file's error
        yield 0, None, None, None, f"corrupt image: {one_line(e)}"
        return
    if img.format not in FORMATS:
        yield 0, *img.size, None, f"unsupported image format {img.format} (accepted: {', '.join(FORMATS)})"
        return
    # Each page of a multi-page TIFF is an image; an animated GIF is scored on its first frame.
    frames = ImageSequence.Iterator(img) if img.format == "TIFF" else [img]
    page = -1
    try:
        for page, frame in enumerate(frames):
            w, h = frame.size
            if w * h > max_pixels:
                yield page, w, h, None, f"image too large: {w}x{h} pixels exceeds --max-pixels {max_pixels:,}"
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    frame.load()
                    gray = grayscale(frame)
            except Exception as e:  # noqa: BLE001 - truncated or corrupt pixel data
                yield page, w, h, None, f"corrupt image: {one_line(e)}"
                continue
            yield page, w, h, gray, None
    except Exception as e:  # noqa: BLE001 - a broken page directory ends the file here
        yield page + 1, None, None, None, f"corrupt image: page {page + 1} unreadable: {one_line(e)}"


def decode_batch(batch: pa.Table, max_pixels: int) -> pa.Table:
    """Read rows (one per file) -> page rows with the 28x28 MNIST-space image, or an error."""
    rows = {name: [] for name in DECODED_SCHEMA.names}
    blank = bytes(PIXELS)

    def add(row, page, pages, w, h, image, error):
        for k, v in (("source", row["source"]), ("member", row["member"]), ("page", page), ("pages", pages),
                     ("true_label", row["true_label"]), ("error", error), ("width", w), ("height", h),
                     ("image", image)):
            rows[k].append(v)

    for row in batch.to_pylist():
        if row["error"] is not None:
            add(row, 0, 1, None, None, blank, row["error"])
            continue
        skip = set(row["skip_pages"] or ())
        pages = []  # each page shrinks to 28x28 at once: a large multi-page scan never sits whole in memory
        for page, w, h, gray, error in decode(row["data"], max_pixels):
            image = blank
            if error is None and page not in skip:
                try:
                    image = preprocess.to_mnist(gray).tobytes()
                except ValueError as e:  # BlankImage, or too few pixels to be a character
                    error = str(e)
            pages.append((page, w, h, image, error))
        for page, w, h, image, error in pages:
            if page not in skip:
                add(row, page, len(pages), w, h, image, error)
    return pa.Table.from_pydict(rows, schema=DECODED_SCHEMA)
