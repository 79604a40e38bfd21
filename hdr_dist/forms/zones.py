"""A registered page's zones as the models read them: the form's print dropped, each comb cell and digit
zone a 28x28 MNIST-space image, each free field a strip; an empty cell is known as empty, never guessed.

Two ways to drop the printed form, chosen by ``--dropout``:

- ``reference``: the registered reference's print (its dark strokes, widened by ``PRINT_MARGIN``
  pixels for what registration leaves) is painted over with paper, in every zone;
- ``lines``: nothing is subtracted; a cell is cut inside its walls, and a field's strip loses its
  printed lines in ``preprocess.to_strip``, as ``score`` reads a field.

A cell is empty when, its faint marks (paper texture, noise, a wall's last grey pixels) painted as
paper, the preprocessing ``score`` uses finds it blank; otherwise that preprocessing prepares it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from hdr_dist.forms.registration import Reference, Registration, ink_of
from hdr_dist.forms.template import Template, Zone, load
from hdr_dist.imaging import images

DROPOUTS = ("reference", "lines")
PRINT_MARGIN = 3  # pixels the reference's print is widened by before it is painted over
CELL_INSET = 0.08  # of a cell's side cut off each edge: its walls and the ink rubbing them
FIELD_INSET = 6  # pixels cut off each edge of a field's frame
FAINT = 60  # grey levels under the paper: lighter marks are paper, not pen


@dataclass(frozen=True)
class Read:
    """One image a zone gives a model: a cell's 28x28 bytes, or a field's strip; empty, or an error."""

    zone: int  # index in the template's zones
    cell: int  # a comb's cell (0 for a digit or a field zone)
    image: bytes  # what the model reads (empty bytes when the cell is empty or failed)
    empty: bool
    error: str | None


class Dropout:
    """A template's print as a mask over its reference, made once per worker."""

    def __init__(self, template: Template, how: str):
        self.how = how
        self.print = None
        if how == "reference":
            reference = template.reference_image()
            mask = ink_of(reference).astype(np.uint8)
            size = 2 * PRINT_MARGIN + 1
            self.print = cv2.dilate(mask, np.ones((size, size), np.uint8)).astype(bool)

    def apply(self, crop: np.ndarray, box: tuple[int, int, int, int], paper: int) -> np.ndarray:
        """The crop (of the mapped page at ``box``) with the print painted as paper."""
        if self.print is None:
            return crop
        x, y, w, h = box
        return np.where(self.print[y : y + h, x : x + w], paper, crop).astype(np.uint8)


def inset(box: tuple[int, int, int, int], share: float = 0.0, pixels: int = 0) -> tuple[int, int, int, int]:
    x, y, w, h = box
    dx, dy = max(pixels, round(w * share)), max(pixels, round(h * share))
    return x + dx, y + dy, max(1, w - 2 * dx), max(1, h - 2 * dy)


def read_zones(mapped: np.ndarray, template: Template, dropout: Dropout) -> list[Read]:
    """Every zone of the page mapped onto the reference: one ``Read`` per comb cell, digit and field."""
    paper = int(np.median(mapped))
    out = []
    for i, zone in enumerate(template.zones):
        if zone.kind == "field":
            out.append(
                prepared(mapped, i, 0, inset(zone.box, pixels=FIELD_INSET), dropout, paper, images.to_field)
            )
        else:
            out += [
                prepared(mapped, i, c, inset(box, share=CELL_INSET), dropout, paper, images.to_mnist)
                for c, box in enumerate(zone.cell_boxes())
            ]
    return out


def prepared(mapped, zone: int, cell: int, box, dropout: Dropout, paper: int, prepare) -> Read:
    """One cell or field: empty when, its faint marks painted as paper, ``preprocess`` finds it blank
    (``score``'s ink test); else prepared from the crop as it is, whose stroke edges are the digit's."""
    x, y, w, h = box
    crop = dropout.apply(mapped[y : y + h, x : x + w], box, paper)
    if prepare(np.where(crop > paper - FAINT, paper, crop).astype(np.uint8))[1] == "blank image":
        return Read(zone, cell, b"", True, None)
    image, error = prepare(crop)
    return Read(zone, cell, image if error is None else b"", False, error)


def page_box(zone: Zone, reg: Registration) -> list[int]:
    """Where the zone lies on the scanned page: the bounding box of its corners mapped back."""
    x, y, w, h = zone.box
    corners = np.float64([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]])
    page = corners @ cv2.invertAffineTransform(reg.matrix.astype(np.float64)).T
    left, top = page.min(0)
    right, bottom = page.max(0)
    return [int(round(left)), int(round(top)), int(round(right - left)), int(round(bottom - top))]


@functools.lru_cache(maxsize=4)
def prepared_template(path: str, dropout: str) -> tuple[Template, Reference, Dropout]:
    """The template, its reference's features and its print mask: made once per worker process, for
    the page stage and the review page alike."""
    template = load(path)
    return template, Reference(template.reference_image()), Dropout(template, dropout)
