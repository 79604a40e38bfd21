"""Sample form layouts of our own design, and how each is printed: the shipped claim form, and forms
whose print is a dropout colour, whose cells are uneven or cut by printed separators, whose walls are
thin or thick, so that ``hdr forms`` is measured on designs it was not tuned to.

A layout is drawn once as the template's reference (what scanning the blank form gives, in grey) and
once per page in its print colour. Black corner marks and black titles and labels are what a dropout
form keeps for registration when its coloured print is gone from a bilevel scan.

``survey`` is set aside: no threshold, no setting and no training is chosen on it; it is measured
last, beside the others (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PAGE = (1700, 2200)  # 200 dpi, a US letter page
BLACK = (0, 0, 0)
# Dropout prints, dark to light: a grey scan shows the light ones faint, a bilevel scan not at all.
DROPOUT_COLOURS = (
    (215, 40, 40),  # red
    (240, 120, 120),  # light red
    (235, 140, 30),  # orange
    (40, 160, 70),  # green
    (120, 150, 235),  # light blue
    (30, 90, 200),  # blue
    (230, 170, 200),  # pink, faint in grey
)
REFERENCE_DROPOUT = (120, 150, 235)  # a dropout layout's reference: its boxes a mid grey (151)


@dataclass(frozen=True)
class Layout:
    """A form design: its zones as ``(name, kind, box, cells | length | None, required, label)``, where
    a comb's cells are a count or a list of widths and a field's length is ``(min, max)``."""

    name: str
    title: str
    zones: tuple
    size: tuple[int, int] = PAGE
    separators: tuple = ()  # printed strokes inside zones (a date's slashes): (x0, y0, x1, y1)
    frame: int = 4  # the outer wall of a zone, in pixels
    wall: int = 3  # the walls between a comb's cells
    dropout: bool = False  # boxes printed in a dropout colour (titles, labels and marks stay black)
    wild: bool = False  # filled as people write: to the full cell height, off-centre, across the walls
    scans: str = (
        "claim"  # the claim form's formats at 200 dpi, or "varied": colour, grey, bilevel, 100-400 dpi
    )
    # what the blank form's grey scan shows of the boxes: a mid grey for a dropout print
    reference_colour: tuple[int, int, int] = BLACK


def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def cell_edges(x: int, w: int, cells) -> list[int]:
    """A comb's cell edges, left to right, from a count of even cells or a list of widths."""
    if isinstance(cells, int):
        return [int(v) for v in np.linspace(x, x + w, cells + 1).round().astype(int)]
    return [x + int(v) for v in np.cumsum([0, *cells])]


def draw(layout: Layout, colour=BLACK, subtitle: str | None = None) -> Image.Image:
    """The empty form, its boxes in ``colour``: title, corner marks, a label and the boxes of each zone."""
    w, h = layout.size
    page = Image.new("RGB", layout.size, (255, 255, 255))
    pen = ImageDraw.Draw(page)
    pen.text((140, 150), layout.title, fill=BLACK, font=font(44))
    pen.text(
        (140, 215),
        subtitle or "Form " + layout.name + "   Office use: do not write below the line",
        fill=(60, 60, 60),
        font=font(24),
    )
    pen.line((140, 270, w - 140, 270), fill=colour, width=3)
    for x, y in ((60, 60), (w - 120, 60), (60, h - 120), (w - 120, h - 120)):
        pen.rectangle((x, y, x + 60, y + 60), fill=BLACK)
    for _name, kind, (x, y, bw, bh), cells, _, label in layout.zones:
        pen.text((x, y - 40), label, fill=BLACK, font=font(28))
        pen.rectangle((x, y, x + bw - 1, y + bh - 1), outline=colour, width=layout.frame)
        if kind == "comb":
            for edge in cell_edges(x, bw, cells)[1:-1]:
                pen.line((edge, y, edge, y + bh - 1), fill=colour, width=layout.wall)
    for line in layout.separators:
        pen.line(line, fill=colour, width=3)
    pen.text((140, h - 260), "Signature", fill=BLACK, font=font(28))
    pen.line((140, h - 200, 900, h - 200), fill=colour, width=2)
    return page


def template_yaml(layout: Layout) -> str:
    lines = [f"name: {layout.name}", f"size: [{layout.size[0]}, {layout.size[1]}]"]
    lines += [f"reference: {layout.name}.png", "fields:"]
    for name, kind, box, cells, required, _ in layout.zones:
        extra = ""
        if kind == "comb":
            extra = f", cells: {cells if isinstance(cells, int) else list(cells)}"
        elif kind == "field":
            extra = f", length: [{cells[0]}, {cells[1]}]"
        lines.append(
            f"  - {{name: {name}, kind: {kind}, box: [{', '.join(map(str, box))}]{extra}, "
            f"required: {str(required).lower()}}}"
        )
    return "\n".join(lines) + "\n"


# Our own designs, filled as people fill forms and scanned every way; their boxes a dropout colour.
AS_PEOPLE_FILL = {"dropout": True, "wild": True, "scans": "varied"}
DROPOUT_DESIGN = AS_PEOPLE_FILL | {"reference_colour": REFERENCE_DROPOUT}

CLAIM = Layout(
    "claim-v1",
    "CLAIM FORM  -  please write one digit per box",
    (
        ("postcode", "comb", (330, 420, 450, 90), 5, True, "Postcode"),
        ("account", "comb", (330, 620, 720, 90), 8, True, "Account number"),
        ("date", "comb", (330, 820, 540, 90), 6, True, "Date (DDMMYY)"),
        ("phone", "comb", (330, 1020, 900, 90), 10, False, "Phone (optional)"),
        ("amount", "field", (330, 1260, 760, 120), (1, 7), True, "Amount"),
        ("copies", "digit", (1330, 1260, 110, 120), None, False, "Copies"),
    ),
)


def order_lines() -> tuple:
    """Ten order lines: an item comb of 5, a quantity comb of 3 and a free price; three required."""
    zones = []
    for i in range(10):
        y, required = 640 + 125 * i, i < 3
        label = f"Line {i + 1}" if i else "Line 1   Item"
        zones += [
            (f"item{i + 1}", "comb", (200, y, 375, 80), 5, required, label),
            (f"qty{i + 1}", "comb", (700, y, 210, 80), 3, required, "Qty" if not i else ""),
            (f"price{i + 1}", "field", (1050, y - 5, 450, 90), (1, 6), required, "Price" if not i else ""),
        ]
    return tuple(zones)


DATE_CELLS = (62, 62, 92, 62, 92, 62)  # the third and fifth cells hold a printed slash at their left
ORDER = Layout(
    "order-v1",
    "ORDER SHEET  -  one digit per box, in black or blue ink",
    (
        ("customer", "comb", (300, 370, 490, 80), 7, True, "Customer number"),
        ("date", "comb", (1000, 370, sum(DATE_CELLS), 80), DATE_CELLS, True, "Date (DD/MM/YY)"),
        *order_lines(),
        ("total", "field", (1050, 1930, 450, 100), (1, 7), True, "Total"),
    ),
    separators=((1000 + 124 + 26, 380, 1000 + 124 + 8, 440), (1000 + 278 + 26, 380, 1000 + 278 + 8, 440)),
    frame=3,
    wall=2,
    **DROPOUT_DESIGN,
)

CENSUS = Layout(
    "census-v1",
    "HOUSEHOLD CENSUS  -  write each digit inside its box",
    (
        ("household", "comb", (700, 380, 440, 100), 8, True, "Household number"),
        ("persons", "digit", (700, 560, 70, 100), None, True, "Persons"),
        ("rooms", "comb", (1100, 560, 110, 100), 2, True, "Rooms"),
        *[
            zone
            for i in range(6)
            for zone in (
                (f"age{i + 1}", "comb", (300, 800 + 190 * i, 165, 100), 3, i < 2, f"Person {i + 1}: age"),
                (f"born{i + 1}", "comb", (700, 800 + 190 * i, 220, 100), 4, i < 2, "year of birth"),
                (f"children{i + 1}", "digit", (1200, 800 + 190 * i, 70, 100), None, False, "children"),
            )
        ],
    ),
    frame=2,
    wall=2,
    **DROPOUT_DESIGN,
)

# The claim form as people fill it, printed in dropout colours and scanned every way: the same
# template as ``claim``, so the same reference serves both.
CLAIM_DROPOUT = Layout(CLAIM.name, CLAIM.title, CLAIM.zones, **AS_PEOPLE_FILL)

# Set aside until the end (thick walls, large square cells, a landscape page).
SURVEY = Layout(
    "survey-v1",
    "SURVEY  -  block digits, one per square",
    (
        ("zip", "comb", (400, 400, 550, 110), 5, True, "ZIP code"),
        ("visits", "comb", (1300, 400, 330, 110), 3, True, "Visits this year"),
        ("phone", "comb", (400, 640, 1100, 110), 10, True, "Telephone"),
        ("spend", "field", (400, 900, 700, 130), (1, 6), True, "Spend"),
        ("rating", "digit", (1400, 900, 110, 130), None, True, "Rating"),
        ("members", "comb", (400, 1160, 330, 110), 3, False, "Members (optional)"),
    ),
    size=(2200, 1700),
    frame=7,
    wall=6,
    **DROPOUT_DESIGN,
)

LAYOUTS = {
    "claim": CLAIM,
    "claim-dropout": CLAIM_DROPOUT,
    "order": ORDER,
    "census": CENSUS,
    "survey": SURVEY,
}
HELD_OUT = "survey"
