"""A registered page's zones as the models read them: the form's print dropped, each comb cell and digit
zone a 28x28 MNIST-space image, each free field a strip; an empty cell is known as empty, never guessed.

People write over a comb's walls, so the print is dropped without dropping the strokes that cross it,
and a cell is cut by its ink, not by its walls. ``--dropout`` chooses how the print goes:

- ``colour`` (the default): on a colour scan whose print has a colour, the print is the pixels of its
  colour (on the line from the paper's colour to the print's) near where the reference puts it, not a
  widened copy of the reference's: ink beside a wall keeps its edge, and what registration left is
  still found; then the strokes that cross it are restored as below. A grey or bilevel scan, or a
  black print, is read as ``reference``;
- ``reference``: the registered reference's print (widened by ``PRINT_MARGIN`` pixels for what
  registration leaves) is painted over with paper, then the strokes that cross it are restored: a
  painted pixel comes back where ink lies on both sides of the line within the line's width;
- ``paint``: as ``reference`` without the restoring (what this project did before; kept to measure);
- ``lines``: no reference: the zone's long straight runs of ink are its printed lines, removed and
  restored the same way.

A cell's digit is the ink that belongs to it: the connected strokes of the zone's surroundings with most
of their ink inside the cell, whether or not they overflow its walls; a neighbour's overflow has most of
its ink in the neighbour. A cell with no such stroke is empty, however thick its walls.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from hdr_dist.forms.registration import Reference, Registration, print_of
from hdr_dist.forms.template import Template, Zone, load
from hdr_dist.imaging import images

DROPOUTS = ("colour", "reference", "paint", "lines")
PRINT_MARGIN = 3  # pixels the reference's print is widened by before it is painted over
FAINT = 60  # grey levels under the paper: lighter marks are paper, not pen
# A print is dropped by its colour when its colour is this far from grey (the sine of its angle to the
# grey axis: the samples' dark green print is 0.30 away, the others 0.41-0.57); black print is left to
# the reference.
COLOUR_CHROMA = 0.2
# RGB distance from the paper-to-print line that is still print: at 30, a 150-dpi JPEG of a light blue
# print (its colour resolution halved) left its frames' lines in empty price frames; 45 took them
COLOUR_TOLERANCE = 45
COLOUR_DEPTH = 1.3  # as dark as the print or a little darker (two prints overlapping) is print
OVERFLOW = 0.45  # of a cell's height (and width at a comb's ends) searched beyond it for its strokes
OWN_SHARE = 0.4  # a stroke belongs to the cell holding this share of its ink, if one does
SPLIT = 0.3  # a stroke with this share of its ink in each of two cells is two digits touching
SLIVER = 2  # a stroke no thicker than this many pixels, and long, is what a printed line left
MIN_STROKE = 0.003  # of a cell's area: smaller blobs are dust
JOINED = 6  # pixels around a cell's strokes searched for the fainter ink joined to them


@dataclass(frozen=True)
class Read:
    """One image a zone gives a model: a cell's 28x28 bytes, or a field's strip; empty, or an error."""

    zone: int  # index in the template's zones
    cell: int  # a comb's cell (0 for a digit or a field zone)
    image: bytes  # what the model reads (empty bytes when the cell is empty or failed)
    empty: bool
    error: str | None


@dataclass(frozen=True)
class Look:
    """How one page's colours read, taken once per page."""

    paper: int  # the paper's grey level
    fill: tuple[float, ...]  # the paper's colour (or grey), given to what lies beyond the page
    axis: np.ndarray | None = None  # unit vector from the print's colour to the paper's, if it has one
    strength: float = 0.0  # how far the print's colour lies from the paper's


class Dropout:
    """A template's print as a mask over its reference, made once per worker, and how it is dropped."""

    def __init__(self, template: Template, how: str):
        self.how = how
        reference = template.reference_image()
        self.print = print_of(reference)  # every printed pixel, faint ones included
        self.mask = self.near = None
        if how != "lines":
            self.mask = widened(self.print, PRINT_MARGIN)
            self.near = widened(self.print, 3 * PRINT_MARGIN)
        # how far a crossing stroke is looked for: the widest printed line in a zone, with its margins
        self.reach = 2 * PRINT_MARGIN + 2 + line_width(self.print, template.zones)

        self.points = np.argwhere(self.print)[:, ::-1].astype(np.float64)  # (x, y): where its colour is read

    def look(self, page: np.ndarray, matrix: np.ndarray | None = None) -> Look:
        """How ``page`` reads (``matrix``: page -> reference pixels; None when it is on them): its paper,
        and, on a colour page whose print has a colour, the colour line from paper to print. The print's
        colour is read where the reference's print falls on the page, so the page is never warped whole."""
        sample = np.ascontiguousarray(page[::4, ::4])
        channels = page.shape[2] if page.ndim == 3 else 1
        fill = tuple(float(v) for v in np.median(sample.reshape(-1, channels), axis=0))
        if page.ndim == 2:
            return Look(int(fill[0]), fill)
        paper = int(np.median(cv2.cvtColor(sample, cv2.COLOR_RGB2GRAY)))
        colours = self.print_colours(page, matrix, fill) if self.how == "colour" else ()
        if not len(colours):
            return Look(paper, fill)
        axis = np.float32(fill) - np.median(colours, axis=0).astype(np.float32)
        strength = float(np.linalg.norm(axis))
        if strength < COLOUR_TOLERANCE or chroma(axis) < COLOUR_CHROMA:
            return Look(paper, fill)
        return Look(paper, fill, axis / strength, strength)

    def print_colours(self, page: np.ndarray, matrix: np.ndarray | None, fill) -> np.ndarray:
        """The page's colours where the reference's print lands on it, as a warp of the whole page
        would hold them there (bilinear, and paper beyond the page)."""
        if matrix is None:
            return page[self.print]
        to_page = cv2.invertAffineTransform(matrix.astype(np.float64))
        at = (self.points @ to_page[:, :2].T + to_page[:, 2]).astype(np.float32)
        rows = -(-len(at) // 1024)  # remap takes maps under 32,767 a side: the points in rows of 1,024
        at = np.pad(at, ((0, rows * 1024 - len(at)), (0, 0))).reshape(rows, 1024, 2)
        found = cv2.remap(page, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
        return found.reshape(-1, page.shape[2])[: len(self.points)]

    def split(self, part: np.ndarray, look: Look) -> tuple[np.ndarray, np.ndarray | None]:
        """A region of the page in grey, and, where the page's print has a colour, which of its pixels
        have it: on the line from the paper's colour to the print's, and no darker than the print. Ink
        is grey or another colour, so where it crosses the print it is not of them."""
        if part.ndim == 2:
            return part, None
        luminance = cv2.cvtColor(part, cv2.COLOR_RGB2GRAY)
        if look.axis is None:
            return luminance, None
        # In one pass (OpenCV's transform): the distance along the line from paper to print, and the
        # two distances across it, of each pixel from the paper's colour.
        basis = np.linalg.svd(look.axis[None, :])[2]  # the axis and two directions square to it
        basis[0] = look.axis
        fill = np.float32(look.fill)
        d = cv2.transform(part.astype(np.float32), np.hstack([-basis, (basis @ fill)[:, None]]))
        off = d[..., 1] ** 2 + d[..., 2] ** 2
        return luminance, (off < COLOUR_TOLERANCE**2) & (d[..., 0] < COLOUR_DEPTH * look.strength)

    def apply(self, crop: np.ndarray, box, paper: int, span=None, coloured=None) -> np.ndarray:
        """The crop (of the mapped page at ``box``) without its print, the strokes crossing it kept;
        ``lines`` takes runs of ink ``span`` (height, width) long for printed lines; ``coloured`` (the
        crop's pixels of the print's colour), where given, are the print near the reference's."""
        x, y, w, h = box
        if self.mask is None:
            mask = lines_in(crop < paper - FAINT, span or (h * 4 // 5, w * 4 // 5))
        else:
            mask = self.mask[y : y + h, x : x + w]
        if coloured is not None:  # the print is what has its colour, near where the reference puts it
            mask = self.near[y : y + h, x : x + w] & widened(coloured, 1)
        if self.how == "paint":
            return np.where(mask, paper, crop).astype(np.uint8)
        erase = mask & ~crossing(crop < paper - FAINT, mask, self.reach)
        return np.where(erase, paper, crop).astype(np.uint8)


def widened(mask: np.ndarray, margin: int) -> np.ndarray:
    size = 2 * margin + 1
    return cv2.dilate(mask.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)


def chroma(axis: np.ndarray) -> float:
    """How far a colour difference is from grey: the sine of its angle to (1, 1, 1)."""
    grey = axis.sum() / np.sqrt(3)
    return float(np.sqrt(max(0.0, float(axis @ axis) - grey**2)) / max(np.linalg.norm(axis), 1e-6))


def line_width(print_mask: np.ndarray, zones) -> int:
    """The thickest printed line inside the zones, in pixels (twice the deepest distance to paper)."""
    deepest = 0.0
    for zone in zones:
        x, y, w, h = zone.box
        part = print_mask[y : y + h, x : x + w].astype(np.uint8)
        if part.any():
            deepest = max(deepest, float(cv2.distanceTransform(part, cv2.DIST_L2, 3).max()))
    return int(np.ceil(2 * deepest))


def crossing(dark: np.ndarray, mask: np.ndarray, reach: int) -> np.ndarray:
    """The masked pixels a stroke crosses: ink outside the mask on both sides of them, within
    ``reach`` pixels, above and below (a horizontal line) or left and right (a vertical one)."""
    outside = (dark & ~mask).astype(np.uint8)
    column, row = np.ones((reach + 1, 1), np.uint8), np.ones((1, reach + 1), np.uint8)
    above = cv2.dilate(outside, column, anchor=(0, reach))
    below = cv2.dilate(outside, column, anchor=(0, 0))
    left = cv2.dilate(outside, row, anchor=(reach, 0))
    right = cv2.dilate(outside, row, anchor=(0, 0))
    return mask & (((above & below) | (left & right)) > 0)


def lines_in(dark: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    """Long straight runs of ink (a box's walls and rules), found without a reference: an opening
    with a vertical line ``span[0]`` long and a horizontal one ``span[1]`` long, as long as a zone's
    walls and frame: a handwritten stroke is seldom so long and straight."""
    ink = dark.astype(np.uint8)
    vertical = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((max(3, span[0]), 1), np.uint8))
    horizontal = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, max(3, span[1])), np.uint8))
    found = (vertical | horizontal).astype(np.uint8)
    return cv2.dilate(found, np.ones((3, 3), np.uint8)).astype(bool)


def read_zones(
    page: np.ndarray, template: Template, dropout: Dropout, matrix: np.ndarray | None = None
) -> list[Read]:
    """Every zone of the page: one ``Read`` per comb cell, digit and field. ``matrix`` maps the page
    onto the reference's pixels (None: it is on them already); only the zones' surroundings are
    mapped: on the order sheet's colour scans, mapping and testing the colour of the whole page took
    0.075 s a page."""
    look = dropout.look(page, matrix)
    out = []
    for i, zone in enumerate(template.zones):
        boxes = [zone.box] if zone.kind == "field" else zone.cell_boxes()
        prepare = images.to_field if zone.kind == "field" else images.to_mnist
        region, crop = cut(page, zone, template.size, dropout, look, matrix)
        for c, ink in enumerate(cells_by_ink(crop < look.paper - FAINT, region, boxes)):
            out.append(prepared(i, c, crop, ink, look.paper, prepare, tight=zone.kind != "field"))
    return out


def surroundings(zone: Zone, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The zone and what may overflow it (``OVERFLOW`` of its cells beyond each side), on a reference
    of ``size`` (width, height): left, top, width, height."""
    x, y, w, h = zone.box
    cell_w = min(b[2] for b in ([zone.box] if zone.kind == "field" else zone.cell_boxes()))
    dx, dy = round(cell_w * OVERFLOW), round(h * OVERFLOW)
    left, top = max(0, x - dx), max(0, y - dy)
    right, bottom = min(size[0], x + w + dx), min(size[1], y + h + dy)
    return left, top, right - left, bottom - top


def region_of(page: np.ndarray, matrix: np.ndarray | None, region, fill) -> np.ndarray:
    """The reference's ``region`` of the page: warped out of it by ``matrix`` (page -> reference),
    as the whole page's warp would hold it there, or cut when the page is on the reference."""
    left, top, w, h = region
    if matrix is None:
        return page[top : top + h, left : left + w]
    onto = matrix.astype(np.float64).copy()
    onto[:, 2] -= (left, top)
    return cv2.warpAffine(page, onto, (w, h), flags=cv2.INTER_LINEAR, borderValue=fill)


def cut(page, zone: Zone, size, dropout: Dropout, look: Look, matrix=None):
    """The zone's surroundings (on the reference of ``size``) from the page, the print dropped: the
    region, and its pixels."""
    region = surroundings(zone, size)
    grey, coloured = dropout.split(region_of(page, matrix, region, look.fill), look)
    _, _, w, h = zone.box
    return region, dropout.apply(grey, region, look.paper, (h * 4 // 5, w * 4 // 5), coloured)


def cells_by_ink(dark: np.ndarray, region, boxes) -> list[tuple[np.ndarray, int, int] | None]:
    """For each cell box (page pixels, left to right), the strokes that belong to it in ``dark`` (the
    region's ink): their mask, cut to their extent, and where that lies in the region (top, left);
    None for a cell with none. A stroke goes whole to the cell holding at least ``OWN_SHARE`` of it,
    overflow and all; a stroke that ``SPLIT`` or more of lies in each of two cells is two digits
    touching, and is cut where their wall is."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark.astype(np.uint8), connectivity=8)
    left, top = region[0], region[1]
    inside = np.zeros((len(boxes), count), np.int64)
    for c, (x, y, w, h) in enumerate(boxes):
        part = labels[max(0, y - top) : y - top + h, max(0, x - left) : x - left + w]
        inside[c] = np.bincount(part.ravel(), minlength=count)
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    thin = np.minimum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) <= SLIVER
    long = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) > 4 * SLIVER
    owner = inside.argmax(0)
    shares = inside / area
    smallest = MIN_STROKE * min(min(w, h) * h for _, _, w, h in boxes)
    kept = (shares.max(0) >= OWN_SHARE) & (area >= smallest) & ~(thin & long)
    kept[0] = False  # the background
    split = kept & ((shares >= SPLIT).sum(0) >= 2)
    whole = kept & ~split
    # each column of the region belongs to the cell above or below it (the end cells beyond the comb)
    starts = np.array([x for x, _, _, _ in boxes]) - left
    ends = np.append(starts[1:], dark.shape[1])
    starts[0] = 0
    halves, out = np.flatnonzero(split), []
    for c in range(len(boxes)):
        # Only the window its strokes span is looked at: a comb's region is ten cells wide, and a
        # mask of the whole region for each cell was a fifth of a page's time.
        mine = np.flatnonzero(whole & (owner == c))
        spans = [
            (stats[k, 0], stats[k, 1], stats[k, 0] + stats[k, 2], stats[k, 1] + stats[k, 3]) for k in mine
        ]
        spans += [
            (
                max(stats[k, 0], starts[c]),
                stats[k, 1],
                min(stats[k, 0] + stats[k, 2], ends[c]),
                stats[k, 1] + stats[k, 3],
            )
            for k in halves
        ]
        spans = [s for s in spans if s[2] > s[0]]
        if not spans:
            out.append(None)
            continue
        x0, y0 = min(s[0] for s in spans), min(s[1] for s in spans)
        x1, y1 = max(s[2] for s in spans), max(s[3] for s in spans)
        window = labels[y0:y1, x0:x1]
        mask = np.isin(window, mine)
        if len(halves):
            at = np.arange(x0, x1)
            mask |= np.isin(window, halves) & ((at >= starts[c]) & (at < ends[c]))[None, :]
        out.append((mask, y0, x0) if mask.any() else None)
    return out


def prepared(zone: int, cell: int, crop: np.ndarray, ink, paper: int, prepare, tight: bool) -> Read:
    """One cell or field from its strokes (``cells_by_ink``'s), on paper; empty when it has none. The
    strokes are found as dark ink (``FAINT`` under the paper); what is fainter but joined to them (a
    thin pen's loop, anti-aliased edges) comes with them, as the preprocessing would have seen it in
    the whole crop. A field's strokes get paper around them as wide as they are high, so that the
    median of its pixels, which ``preprocess.to_strip`` takes for the paper, is paper."""
    if ink is None:
        return Read(zone, cell, b"", True, None)
    mask, y, x = ink
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    y, x = y + rows[0], x + cols[0]
    top, left = max(0, y - JOINED), max(0, x - JOINED)
    bottom, right = y + mask.shape[0] + JOINED, x + mask.shape[1] + JOINED
    part = crop[top:bottom, left:right]
    strokes = np.zeros(part.shape, bool)
    strokes[y - top : y - top + mask.shape[0], x - left : x - left + mask.shape[1]] = mask
    faint = (part < paper - FAINT // 3).astype(np.uint8)
    _, labels = cv2.connectedComponents(faint, connectivity=8)
    joined = np.isin(labels, np.unique(labels[strokes])) & (faint > 0)
    piece = np.where(joined, part, paper).astype(np.uint8)
    image, error = prepare(np.pad(piece, 4 if tight else bottom - top, constant_values=paper))
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
