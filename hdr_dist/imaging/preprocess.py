"""Real scans -> MNIST space, the way MNIST itself was made.

MNIST's digits were fitted into a 20x20 box keeping their aspect ratio,
anti-aliased, and placed in a 28x28 field so that their centre of mass sits at
the centre (row and column 14: measured on the MNIST test set, every digit's
tightest box has a long side of exactly 20 and its mean centre of mass is
(13.99, 14.01)). A model trained on MNIST has only ever seen that, so a scan of
any size, ink colour and margin is brought to the same form before it is
scored. ``compare --preprocess scan`` runs the same function over the training
data, so a model can be trained on exactly what scoring will show it.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

BOX = 20  # the digit's long side, in pixels
FIELD = 28  # the image's side
CENTRE = 14.0  # where the centre of mass goes (row and column index)
LEVELS = np.arange(256, dtype=np.float32)  # an 8-bit image's levels, the table ink_on_black fills
MIN_CONTRAST = 0.1  # ink must differ from the paper by 10 % of the full scale, else "blank image"
NOISE_FLOOR = 0.1  # after contrast normalisation, fainter pixels are paper texture, not ink
MIN_SPECK = 0.005  # ink blobs carrying less than this share of all ink are specks, not strokes
SPECK_GRID = 64  # specks are looked for on a grid of at most this many cells a side
# Fields (whole numbers: a ZIP code, an amount), for the crnn
STRIP_HEIGHT = 32  # rows of the strip a field model reads
STRIP_INK = 24  # rows the ink of a field is scaled to in it (as fields.strips makes them)
STRIP_MARGIN = 4  # columns of paper either side
LINE_SHARE = 0.5  # a row of ink this share of the field's width long is a printed line
WALL_SHARE = 0.9  # a column of ink this share of the field's height long is a box's wall
MAX_FIELD_ASPECT = 40  # wider than this many times its height is not one field (12 digits are ~10)


class BlankImage(ValueError):
    """No ink: the image is left unscored rather than guessed."""

    def __init__(self):
        super().__init__("blank image")


class FieldTooWide(ValueError):
    """Ink far wider than one field of digits (a whole form line, a page): not read as a field."""

    def __init__(self, w: int, h: int):
        super().__init__(
            f"field too wide: its ink is {w}x{h} pixels, more than {MAX_FIELD_ASPECT} times as wide "
            "as it is high (one field is at most about 10 times)"
        )


def ink_on_black(gray: np.ndarray, paper_from: str = "border") -> np.ndarray:
    """Polarity and contrast: paper -> 0, the darkest (or brightest) ink -> 1, float32.

    The paper colour is the median of the border pixels, which in a crop are
    paper almost everywhere; if the paper is light, the ink is dark and the
    image is inverted (MNIST is white ink on black). A field's border may be
    a printed frame, so there (``paper_from="all"``) the median of every pixel
    is taken: digits never cover most of a field. An 8-bit image goes
    through a 256-entry table: one pass over its pixels.
    """
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    full = 255.0 if gray.dtype == np.uint8 else 1.0
    paper = float(np.median(border if paper_from == "border" else gray)) / full
    ink = float(gray.min() if paper > 0.5 else gray.max()) / full
    if abs(ink - paper) < MIN_CONTRAST:
        raise BlankImage()

    def scale(values):
        out = (np.asarray(values, np.float32) / full - paper) / (ink - paper)
        np.clip(out, 0.0, 1.0, out=out)
        out[out < NOISE_FLOOR] = 0.0
        return out

    return cv2.LUT(gray, scale(LEVELS)) if gray.dtype == np.uint8 else scale(gray)


def drop_specks(ink: np.ndarray) -> np.ndarray:
    """Remove dust and scanner specks, which would otherwise stretch the digit's bounding box.

    Blobs are found on a grid of cells at most SPECK_GRID to a side, so a large
    scan costs no more than a small one (a speck touching a stroke's cell counts
    as part of the stroke, as it would to the eye).
    """
    h, w = ink.shape
    cell = max(1, -(-max(h, w) // SPECK_GRID))
    coarse = np.asarray(Image.fromarray(ink).reduce(cell)) if cell > 1 else ink  # cell means
    n, blobs = cv2.connectedComponents((coarse > 0).astype(np.uint8), connectivity=8)
    if n <= 2:  # the paper and one blob
        return ink
    mass = np.bincount(blobs.ravel(), weights=coarse.ravel(), minlength=n)
    speck = mass < MIN_SPECK * mass[1:].sum()
    speck[0] = False  # the paper
    if not speck.any():
        return ink
    # Each pixel takes its cell's verdict; only a speck's cells are cleared (a cell of paper holds
    # no ink to clear), so a scan with no specks costs no pass over its pixels.
    out = ink.copy()
    for y, x in np.argwhere(speck[blobs]):
        out[y * cell : (y + 1) * cell, x * cell : (x + 1) * cell] = 0.0
    return out


def fit_box(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink and resize so the long side is BOX pixels, anti-aliased."""
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        raise BlankImage()
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return crop
    # Pillow's resampling widens its kernel when shrinking: that is the anti-aliasing.
    resized = np.asarray(
        Image.fromarray(np.ascontiguousarray(crop, np.float32)).resize(size, Image.Resampling.BILINEAR)
    )
    return np.clip(resized, 0.0, 1.0)


def centre(digit: np.ndarray) -> np.ndarray:
    """Place the digit in the 28x28 field with its centre of mass at (14, 14), whole-pixel shift."""
    h, w = digit.shape
    mass = digit.sum()
    r = (digit.sum(1) @ np.arange(h)) / mass
    c = (digit.sum(0) @ np.arange(w)) / mass
    top = int(min(max(round(CENTRE - r), 0), FIELD - h))  # np.clip on one number took 4 us of a 90 us scan
    left = int(min(max(round(CENTRE - c), 0), FIELD - w))
    field = np.zeros((FIELD, FIELD), np.float32)
    field[top : top + h, left : left + w] = digit
    return field


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """A grayscale image, uint8 (0 = black) or float in [0, 1], any size -> uint8 (28, 28), MNIST's form.

    Raises ``BlankImage`` when there is no ink to score.
    """
    gray = np.asarray(gray)
    if gray.dtype != np.uint8:
        gray = gray.astype(np.float32)
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise ValueError(f"expected a 2-D image of at least 2x2 pixels, got shape {gray.shape}")
    digit = fit_box(drop_specks(ink_on_black(gray)))
    if digit.sum() <= 0:
        raise BlankImage()
    return np.round(centre(digit) * 255).astype(np.uint8)


def batch(x_u8: np.ndarray) -> np.ndarray:
    """``to_mnist`` over a (N, 28, 28) uint8 training array; a blank image is kept as it is."""
    out = np.empty_like(x_u8)
    for i, img in enumerate(x_u8):
        try:
            out[i] = to_mnist(img)
        except BlankImage:
            out[i] = img
    return out


def remove_lines(ink: np.ndarray) -> np.ndarray:
    """Take out a form's printed lines: rows of ink running most of the field's width (underlines,
    a box's top and bottom) and columns running its whole height (a comb's walls, a frame's sides).
    Digits cross such lines; only the line's own thickness is lost where they do."""
    h, w = ink.shape
    on = (ink > NOISE_FLOOR).astype(np.uint8)
    across = opened(on, (1, max(3, int(w * LINE_SHARE))))
    down = opened(on, (max(3, int(h * WALL_SHARE)), 1))
    # A scanned line is blurred over two or three rows, and the fainter ones break up: take the
    # ink beside a line found whole too.
    line = (cv2.dilate(across, np.ones((3, 1), np.uint8)) | cv2.dilate(down, np.ones((1, 3), np.uint8))) & on
    return np.where(line, 0.0, ink).astype(np.float32)


def opened(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A binary opening by a ``shape`` rectangle, beyond the image taken as paper: scipy's
    ``binary_opening``, the same pixels, at a twentieth of its time on a field."""
    kernel, (h, w) = np.ones(shape, np.uint8), shape
    eroded = cv2.erode(mask, kernel, anchor=(w // 2, h // 2), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    # the dilation takes the kernel reflected (for an even side its anchor moves by one): a true opening
    reflected = (w - 1 - w // 2, h - 1 - h // 2)
    return cv2.dilate(eroded, kernel, anchor=reflected, borderType=cv2.BORDER_CONSTANT, borderValue=0)


def fit_strip(ink: np.ndarray, height: int = STRIP_HEIGHT, ink_rows: int = STRIP_INK) -> np.ndarray:
    """White ink on black -> a ``height``-row strip with the ink cropped, scaled to ``ink_rows`` rows
    (aspect ratio kept) and centred, STRIP_MARGIN columns of paper either side. Both a scanned
    field (``to_strip``) and a synthetic one (``fields``) end here, so the field model is trained
    on exactly the geometry scoring gives it.

    Raises ``BlankImage`` when there is no ink, ``FieldTooWide`` when the ink is wider than
    MAX_FIELD_ASPECT times its height (not one field of digits).
    """
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        raise BlankImage()
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    if w > MAX_FIELD_ASPECT * h:
        raise FieldTooWide(w, h)
    size = (max(1, round(w * ink_rows / h)), ink_rows)
    resized = np.asarray(
        Image.fromarray(np.ascontiguousarray(crop, np.float32)).resize(size, Image.Resampling.BILINEAR)
    )
    strip = np.zeros((height, size[0] + 2 * STRIP_MARGIN), np.float32)
    top = (height - ink_rows) // 2
    strip[top : top + ink_rows, STRIP_MARGIN : STRIP_MARGIN + size[0]] = np.clip(resized, 0.0, 1.0)
    return strip


def to_strip(gray: np.ndarray, height: int = STRIP_HEIGHT, ink_rows: int = STRIP_INK) -> np.ndarray:
    """A scanned field, any polarity and size -> a ``height``-row strip, white ink on black, without
    the form's printed lines: the space the field model was trained in (``fit_strip``)."""
    gray = np.asarray(gray)
    if gray.dtype != np.uint8:
        gray = gray.astype(np.float32)
    if gray.ndim != 2 or min(gray.shape) < 2:
        raise ValueError(f"expected a 2-D image of at least 2x2 pixels, got shape {gray.shape}")
    return fit_strip(drop_specks(remove_lines(ink_on_black(gray, paper_from="all"))), height, ink_rows)
