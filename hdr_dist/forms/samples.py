"""Example forms, made here: a claim form's template (reference page and YAML) and pages filled in with
MNIST **test** digits, scanned the ways an archive holds them.

    python -m hdr_dist.forms.samples OUT --pages N

The form has printed labels, corner marks, combs of 5 to 10 cells, a free amount in a frame, and two
optional zones left empty on some pages. Each page is scanned with a rotation (up to 3 degrees), a
scale (up to 5 %), a shift (up to 5 % of the page), paper tone, noise and blur, some upside down; the
pages are written as PNG, JPEG, multi-page TIFF (some bilevel, CCITT G4) and PDF, with stray pages among
them (a blank sheet, a letter, another form). ``truth.csv`` holds every zone's digits in ``--labels``
format (``path,page,field,label``, empty for an empty zone); ``pages.csv`` says what each page is and
how it was scanned. Both name a file by its path under ``pages/``, the INPUT to read them from.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from hdr_dist.data import datasets, fields
from hdr_dist.data.layouts import (
    BLACK,
    CLAIM,
    DROPOUT_COLOURS,
    HELD_OUT,
    LAYOUTS,
    Layout,
    cell_edges,
    draw,
    font,
    template_yaml,
)

SIZE = CLAIM.size
NAME = CLAIM.name
ZONES = list(CLAIM.zones)
FORMATS = ("PNG", "JPEG", "TIFF", "TIFF-G4", "PDF")
PAGES_PER_FILE = {"PNG": 1, "JPEG": 1, "TIFF": 3, "TIFF-G4": 3, "PDF": 4}
# A varied layout's files, in turn: (how it is scanned, the file format); each file at one resolution.
LOOKS = (
    ("colour", "PNG"),
    ("grey", "TIFF"),
    ("bilevel", "TIFF-G4"),
    ("colour", "JPEG"),
    ("grey", "PDF"),
    ("colour", "PDF"),
    ("grey", "PNG"),
    ("bilevel", "TIFF-G4"),
    ("colour", "TIFF"),
    ("grey", "JPEG"),
)
DPIS = (100, 150, 200, 300, 400)
INKS = ((20, 20, 25), (25, 35, 110))  # black and blue-black pens
STRAY_SHARE = 0.04  # one page in 25 is not this form
UPSIDE_DOWN = 0.05
EMPTY_OPTIONAL = 0.4
CALIBRATION = ("order", "census", "claim-dropout")  # what calibration writes on; never the set-aside one
# What ``python -m hdr_dist.forms.samples OUT KIND`` makes: a layout, filled by MNIST's test digits or
# scikit-learn's (other writers).
SETS = {name: (name, "mnist") for name in LAYOUTS} | {f"{HELD_OUT}-sklearn": (HELD_OUT, "sklearn")}


def reference(layout: Layout = CLAIM) -> Image.Image:
    """The empty form as its template's reference: drawn in the layout's reference colour, in grey."""
    return draw(layout, layout.reference_colour).convert("L")


class Digits:
    """Test digits handed out in a seeded order, each once before any repeats: MNIST's, or
    scikit-learn's (other writers, 8x8 scans brought to MNIST's 20-pixel box in a 28x28 field), or
    ``held_out``'s (MNIST's validation hold-out of a seed: what calibration writes with)."""

    def __init__(self, seed: int, writers: str = "mnist", held_out: int | None = None):
        if writers == "sklearn":
            self.x, self.y, self.labels = sklearn_digits()
        elif held_out is not None:
            ds = datasets.load("mnist", seed=held_out)
            self.x, self.y, self.labels = ds.val.x, ds.val.y, ds.labels
        else:
            ds = datasets.load("mnist")
            self.x, self.y, self.labels = ds.test.x, ds.test.y, ds.labels
        self.order = np.random.default_rng(seed).permutation(len(self.y))
        self.at = 0

    def take(self, n: int) -> np.ndarray:
        idx = self.order[np.arange(self.at, self.at + n) % len(self.order)]
        self.at += n
        return idx


def sklearn_digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's bundled digits (1,797 of them, 43 writers none of MNIST's), as 28x28 uint8."""
    from sklearn.datasets import load_digits

    d = load_digits()
    big = [
        np.asarray(
            Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((20, 20), Image.Resampling.BICUBIC)
        )
        for img in d.images
    ]
    x = np.zeros((len(big), 28, 28), np.uint8)
    x[:, 4:24, 4:24] = big
    return x, d.target.astype(np.int64), [str(i) for i in range(10)]


def ink(page: np.ndarray, digit: np.ndarray, x: int, y: int, darkness: float, pen=None) -> None:
    """Write a white-on-black ink image (0..1) onto the page (0 = black) at (x, y), as pen ink: on a
    grey page the darker of the two; on a colour page (``pen``, RGB) multiplied, as ink over print."""
    x, y = max(x, 0), max(y, 0)
    h, w = digit.shape
    region = page[y : y + h, x : x + w]
    cover = digit[: region.shape[0], : region.shape[1]] * darkness
    if page.ndim == 2:
        np.minimum(region, 255 * (1 - cover), out=region)
    else:
        region *= 1 - cover[..., None] * (1 - np.asarray(pen, np.float32) / 255)


def scaled(canvas: np.ndarray, height: int) -> np.ndarray:
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
    w = max(1, round(canvas.shape[1] * height / canvas.shape[0]))
    return np.asarray(img.resize((w, height), Image.Resampling.BILINEAR), np.float32) / 255.0


def write_digit(page, digits: Digits, box, rng) -> str:
    """One MNIST digit in a cell, of a writer's size and place; its label."""
    x, y, w, h = box
    i = digits.take(1)[0]
    size = int(h * rng.uniform(0.6, 0.85))
    glyph = scaled(digits.x[i].astype(np.float32) / 255, size)
    gx = x + (w - glyph.shape[1]) // 2 + int(rng.integers(-w // 10, w // 10 + 1))
    gy = y + (h - size) // 2 + int(rng.integers(-h // 12, h // 12 + 1))
    ink(page, glyph, max(gx, x + 4), max(gy, y + 4), rng.uniform(0.75, 0.95))
    return digits.labels[digits.y[i]]


def write_wild(page, digits: Digits, box, rng, pen) -> str:
    """One digit as people write in a comb: from half the cell's height to all of it, at most as wide
    as the cell, off centre and so often over a wall, now and then with a thick pen; its label."""
    x, y, w, h = box
    i = digits.take(1)[0]
    canvas = digits.x[i].astype(np.float32) / 255
    rows, cols = np.flatnonzero(canvas.any(1)), np.flatnonzero(canvas.any(0))
    canvas = np.pad(canvas[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], 1)
    height = int(h * rng.uniform(0.55, 1.05))
    height = min(height, int(w * 0.95 * canvas.shape[0] / canvas.shape[1]))
    glyph = scaled(canvas, max(8, height))
    if rng.random() < 0.3:
        glyph = ndimage.grey_dilation(glyph, size=(3, 3))
    gx = x + (w - glyph.shape[1]) // 2 + int(rng.normal(0, w * 0.1))
    gy = y + (h - glyph.shape[0]) // 2 + int(rng.normal(0, h * 0.1))
    ink(page, glyph, gx, gy, rng.uniform(0.8, 0.97), pen)
    return digits.labels[digits.y[i]]


def write_field(page, digits: Digits, box, length: tuple[int, int], rng, pen=None, tall: float = 0.85) -> str:
    """A free digit string of ``length`` digits, written as a person writes an amount: digits touching,
    slanted, of one writer's size; its label."""
    x, y, w, h = box
    n = int(rng.integers(length[0], length[1] + 1))
    idx = digits.take(n)
    canvases = fields.transform(
        torch.from_numpy(digits.x[idx]),
        fields.FieldStyle(),
        torch.Generator().manual_seed(int(rng.integers(2**31))),
    )[:, 0].numpy()
    strip, _ = fields.compose(canvases, fields.FieldStyle(gap=(-2, 8)), rng)
    height = int(h * rng.uniform(0.7, tall))
    glyphs = scaled(strip, height)
    glyphs = glyphs[:, : w - 30]
    ink(
        page,
        glyphs,
        x + 15 + int(rng.integers(0, max(1, w - 30 - glyphs.shape[1]))),
        y + (h - height) // 2,
        rng.uniform(0.75, 0.95),
        pen,
    )
    return "".join(digits.labels[d] for d in digits.y[idx])


def fill(
    form: Image.Image, digits: Digits, rng, layout: Layout = CLAIM
) -> tuple[Image.Image, dict[str, str]]:
    """The form filled in: every required zone, each optional one on some pages; the truth per zone.
    A colour form is written on in one pen per page."""
    page = np.asarray(form, np.float32).copy()
    pen = INKS[int(rng.integers(len(INKS)))] if page.ndim == 3 else None
    truth = {}
    for name, kind, box, cells, required, _ in layout.zones:
        if not required and rng.random() < EMPTY_OPTIONAL:
            truth[name] = ""
        elif kind == "comb":
            x, y, w, h = box
            edges = cell_edges(x, w, cells)
            narrowest = min(b - a for a, b in zip(edges, edges[1:]))
            # a cell wider than the narrowest holds a printed separator at its left: writing goes right
            truth[name] = "".join(
                write_wild(page, digits, (b - narrowest, y, narrowest, h), rng, pen)
                if layout.wild
                else write_digit(page, digits, (a, y, b - a, h), rng)
                for a, b in zip(edges, edges[1:])
            )
        elif kind == "digit":
            truth[name] = (
                write_wild(page, digits, box, rng, pen)
                if layout.wild
                else write_digit(page, digits, box, rng)
            )
        else:
            truth[name] = write_field(page, digits, box, cells, rng, pen, 0.97 if layout.wild else 0.85)
    return Image.fromarray(page.clip(0, 255).astype(np.uint8)), truth


@dataclass(frozen=True)
class Scan:
    rotation: float  # degrees, counter-clockwise, of the form on the scanned page
    scale: float
    dx: float  # the form's shift on the page, in pixels
    dy: float
    upside_down: bool


def scan(page: Image.Image, rng, upside_down: bool | None = None) -> tuple[Image.Image, Scan]:
    """A scanner's copy of ``page`` (grey or colour): turned, scaled and shifted on a sheet the same
    size, paper tone, noise and blur; upside down now and then."""
    size = page.size
    s = Scan(
        float(rng.uniform(-3, 3)),
        float(rng.uniform(0.95, 1.05)),
        float(rng.uniform(-0.05, 0.05) * size[0]),
        float(rng.uniform(-0.05, 0.05) * size[1]),
        bool(rng.random() < UPSIDE_DOWN) if upside_down is None else upside_down,
    )
    a = math.radians(s.rotation)
    cx, cy = size[0] / 2, size[1] / 2
    # The inverse map PIL wants (output pixel -> input pixel): undo the shift, the rotation, the scale.
    cos, sin = math.cos(a) / s.scale, math.sin(a) / s.scale
    ox, oy = cx + s.dx, cy + s.dy
    coeffs = (cos, sin, cx - cos * ox - sin * oy, -sin, cos, cy + sin * ox - cos * oy)
    white = 255 if page.mode == "L" else (255,) * 3
    out = page.transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=white)
    if s.upside_down:
        out = out.rotate(180)
    out = toned(out, rng).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.0)))
    return out, s


def transformed(
    page: Image.Image, rotation: float, scale: float, shift: tuple[float, float], rng, look: str = "grey"
) -> tuple[np.ndarray, np.ndarray]:
    """``page`` (on its reference's pixels) as a scanner at ``scale`` times the reference's resolution
    writes it: turned ``rotation`` degrees about its centre (180 is upside down) on a sheet that holds
    it all, shifted by ``shift`` page pixels, toned, and ``look`` ("grey", "bilevel" or "jpeg"). With
    it the page -> reference matrix that undoes all that: what registration must find."""
    w, h = page.size
    turn = math.radians(rotation)
    cos, sin = abs(math.cos(turn)), abs(math.sin(turn))
    size = (round((w * cos + h * sin) * scale), round((w * sin + h * cos) * scale))
    onto = cv2.getRotationMatrix2D((w / 2, h / 2), rotation, scale)  # reference -> page, about the centre
    onto[:, 2] += (size[0] / 2 - w / 2 + shift[0], size[1] / 2 - h / 2 + shift[1])
    grey = np.asarray(page.convert("L"))
    out = cv2.warpAffine(grey, onto, size, flags=cv2.INTER_AREA, borderValue=255)
    out = np.asarray(toned(Image.fromarray(out), rng))
    if look == "bilevel":
        out = np.where(out > 150, 255, 0).astype(np.uint8)
    elif look == "jpeg":
        out = cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 75])[1], cv2.IMREAD_GRAYSCALE)
    return out, cv2.invertAffineTransform(onto)


def toned(image: Image.Image, rng) -> Image.Image:
    """The page on a scanner's paper: a tone (215-250 for white) and noise, the same in every channel."""
    paper = rng.uniform(215, 250)
    noise = rng.normal(0, rng.uniform(2, 8), (image.size[1], image.size[0]))
    arr = np.asarray(image, np.float32) * paper / 255 + (noise if image.mode == "L" else noise[..., None])
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def looked(image: Image.Image, how: str, dpi: int) -> Image.Image:
    """A 200-dpi scan as a scanner set to ``how`` (colour, grey, bilevel) at ``dpi`` writes it."""
    if how != "colour":
        image = image.convert("L")
    if dpi != 200:
        size = (round(image.size[0] * dpi / 200), round(image.size[1] * dpi / 200))
        image = image.resize(size, Image.Resampling.BILINEAR if dpi > 200 else Image.Resampling.BOX)
    return image


def calibration_pages(folder: Path, pages: int, seed: int) -> list[tuple[Path, np.ndarray, dict]]:
    """Form pages to calibrate the reject option on, already on their reference's pixels (no
    registration to redo): ``CALIBRATION``'s layouts in turn, each written under ``folder`` as a
    template, filled with the digits MNIST's validation hold-out of ``seed`` keeps from training, and
    scanned in colour, grey or bilevel at 100-400 dpi. Each: (its template, the page, its truth)."""
    rng, digits, out = np.random.default_rng(seed), Digits(seed, held_out=seed), []
    for i in range(pages):
        layout = LAYOUTS[CALIBRATION[i % len(CALIBRATION)]]
        template = folder / f"{layout.name}.yaml"
        if not template.is_file():
            reference(layout).save(folder / f"{layout.name}.png")
            template.write_text(template_yaml(layout))
        _, how, dpi, colour = file_look(layout, i, rng)
        filled, truth = fill(draw(layout, colour), digits, rng, layout)
        page = looked(toned(filled, rng), how, dpi).resize(layout.size)
        if how == "bilevel":
            page = page.point(lambda v: 255 if v > 150 else 0)
        out.append((template, np.asarray(page), truth))
    return out


def stray(kind: str, rng) -> Image.Image:
    """A page that is not this form: a blank sheet, a letter, or another form."""
    if kind == "blank":
        return Image.new("L", SIZE, 255)
    if kind == "letter":
        page = Image.new("L", SIZE, 255)
        pen = ImageDraw.Draw(page)
        words = [
            "dear",
            "sir",
            "madam",
            "we",
            "write",
            "about",
            "your",
            "order",
            "of",
            "the",
            "goods",
            "delivered",
            "last",
            "month",
            "please",
        ]
        for row in range(40):
            text = " ".join(rng.choice(words, int(rng.integers(6, 12))))
            pen.text((160, 200 + 44 * row), text, fill=20, font=font(28))
        return page
    other = (
        ("ref", "comb", (900, 500, 600, 80), 6, True, "Reference"),
        ("total", "field", (200, 1500, 1200, 140), (1, 9), True, "Total"),
        ("items", "comb", (200, 800, 400, 80), 4, True, "Items"),
    )
    return reference(Layout(NAME, "ORDER FORM", other))


def encode(pages: list[Image.Image], fmt: str, dpi: int = 200) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        pages[0].save(out, "PNG", optimize=False, compress_level=3)
    elif fmt == "JPEG":
        pages[0].save(out, "JPEG", quality=85)
    elif fmt == "TIFF":
        pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    elif fmt == "TIFF-G4":  # bilevel fax: every page thresholded to black and white
        bilevel = [p.convert("L").point(lambda v: 255 if v > 150 else 0).convert("1") for p in pages]
        bilevel[0].save(out, "TIFF", save_all=True, append_images=bilevel[1:], compression="group4")
    else:
        pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=float(dpi))
    return out.getvalue()


EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif", "TIFF-G4": "tif", "PDF": "pdf"}


@dataclass
class Printing:
    """What the pages of one layout are made from, once per run: the reference, the page drawn in each
    print colour (as needed), the digits."""

    layout: Layout
    digits: Digits
    forms: dict

    def form(self, colour) -> Image.Image:
        if colour not in self.forms:
            self.forms[colour] = draw(self.layout, colour) if self.layout.dropout else reference(self.layout)
        return self.forms[colour]


def file_look(layout: Layout, n: int, rng) -> tuple[str, str, int, tuple]:
    """File ``n``'s format, how it is scanned, its resolution and its print colour."""
    if layout.scans != "varied":
        fmt = FORMATS[n % len(FORMATS)]
        return fmt, "bilevel" if fmt == "TIFF-G4" else "grey", 200, BLACK
    how, fmt = LOOKS[n % len(LOOKS)]
    return fmt, how, int(rng.choice(DPIS)), DROPOUT_COLOURS[int(rng.integers(len(DROPOUT_COLOURS)))]


def write(out: Path, pages: int, seed: int = 0, layout: str = "claim", writers: str = "mnist") -> dict:
    """The template and ``pages`` scanned pages in files under ``out/pages``; counts of what was made."""
    lay = LAYOUTS[layout]
    out.mkdir(parents=True, exist_ok=True)
    reference(lay).save(out / f"{lay.name}.png")
    (out / f"{lay.name}.yaml").write_text(template_yaml(lay))
    (out / "pages").mkdir(exist_ok=True)
    rng, printing = np.random.default_rng(seed), Printing(lay, Digits(seed, writers), {})
    truth_rows, page_rows, made, n = [], [], 0, 0
    while made < pages:
        fmt, how, dpi, colour = file_look(lay, n, rng)
        count = min(PAGES_PER_FILE[fmt], pages - made)
        name = f"{n:05d}-{fmt.lower()}.{EXTENSIONS[fmt]}"  # as --labels names it when pages/ is the INPUT
        images = []
        for p in range(count):
            look = [layout, how, dpi, "#{:02x}{:02x}{:02x}".format(*colour)]
            if rng.random() < STRAY_SHARE:
                kind = str(rng.choice(["blank", "letter", "other-form"]))
                image, scanned = scan(stray(kind, rng), rng)
                page_rows.append([name, p, kind, *how_row(scanned), *look])
            else:
                filled, truth = fill(printing.form(colour), printing.digits, rng, lay)
                image, scanned = scan(filled, rng)
                page_rows.append([name, p, "form", *how_row(scanned), *look])
                truth_rows += [[name, p, field, label] for field, label in truth.items()]
            images.append(looked(image, how, dpi) if lay.scans == "varied" else image)
        (out / "pages" / name).write_bytes(encode(images, fmt, dpi))
        made += count
        n += 1
    with open(out / "truth.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "page", "field", "label"], *truth_rows])
    header = ["path", "page", "kind", "rotation", "scale", "dx", "dy", "upside_down", "layout", "scan", "dpi"]
    with open(out / "pages.csv", "w", newline="") as f:
        csv.writer(f).writerows([[*header, "print"], *page_rows])
    return {"files": n, "pages": made, "forms": sum(r[2] == "form" for r in page_rows), "template": lay.name}


def how_row(s: Scan) -> list:
    return [round(s.rotation, 4), round(s.scale, 5), round(s.dx, 2), round(s.dy, 2), int(s.upside_down)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hdr_dist.forms.samples", description=__doc__.split("\n\n")[0])
    p.add_argument("output", type=Path, help="folder for the template, pages/, truth.csv and pages.csv")
    p.add_argument("--pages", type=int, default=50, help="scanned pages to make (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "kind",
        nargs="?",
        choices=list(SETS),
        default="claim",
        help=f"the form and whose digits fill it (default: %(default)s; {HELD_OUT} and {HELD_OUT}-sklearn, "
        "scikit-learn's digits by other writers, are set aside for the last measurement)",
    )
    args = p.parse_args(argv)
    made = write(args.output, args.pages, args.seed, *SETS[args.kind])
    print(
        f"{made['pages']:,} pages ({made['forms']:,} of them forms) in {made['files']:,} files under "
        f"{args.output / 'pages'}; template {args.output / (made['template'] + '.yaml')}; "
        f"truth in {args.output / 'truth.csv'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
