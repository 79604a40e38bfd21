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

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from hdr_dist.data import datasets, fields

SIZE = (1700, 2200)  # 200 dpi, a US letter page
NAME = "claim-v1"
# (name, kind, box, cells or length, required, printed label)
ZONES = [
    ("postcode", "comb", (330, 420, 450, 90), 5, True, "Postcode"),
    ("account", "comb", (330, 620, 720, 90), 8, True, "Account number"),
    ("date", "comb", (330, 820, 540, 90), 6, True, "Date (DDMMYY)"),
    ("phone", "comb", (330, 1020, 900, 90), 10, False, "Phone (optional)"),
    ("amount", "field", (330, 1260, 760, 120), (1, 7), True, "Amount"),
    ("copies", "digit", (1330, 1260, 110, 120), None, False, "Copies"),
]
FORMATS = ("PNG", "JPEG", "TIFF", "TIFF-G4", "PDF")
PAGES_PER_FILE = {"PNG": 1, "JPEG": 1, "TIFF": 3, "TIFF-G4": 3, "PDF": 4}
STRAY_SHARE = 0.04  # one page in 25 is not this form
UPSIDE_DOWN = 0.05
EMPTY_OPTIONAL = 0.4


def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def reference(zones=ZONES, title: str = "CLAIM FORM  -  please write one digit per box") -> Image.Image:
    """The empty form: title, corner marks, a label and the printed boxes of each zone."""
    page = Image.new("L", SIZE, 255)
    pen = ImageDraw.Draw(page)
    pen.text((140, 150), title, fill=0, font=font(44))
    pen.text(
        (140, 215), "Form " + NAME + "   Office use: do not write below the line", fill=60, font=font(24)
    )
    pen.line((140, 270, SIZE[0] - 140, 270), fill=0, width=3)
    for x, y in ((60, 60), (SIZE[0] - 120, 60), (60, SIZE[1] - 120), (SIZE[0] - 120, SIZE[1] - 120)):
        pen.rectangle((x, y, x + 60, y + 60), fill=0)
    for _name, kind, (x, y, w, h), cells, _, label in zones:
        pen.text((x, y - 40), label, fill=0, font=font(28))
        pen.rectangle((x, y, x + w - 1, y + h - 1), outline=0, width=4)
        if kind == "comb":
            for edge in np.linspace(x, x + w, cells + 1)[1:-1].round().astype(int):
                pen.line((edge, y, edge, y + h - 1), fill=0, width=3)
    pen.text((140, SIZE[1] - 260), "Signature", fill=0, font=font(28))
    pen.line((140, SIZE[1] - 200, 900, SIZE[1] - 200), fill=0, width=2)
    return page


def template_yaml(zones=ZONES) -> str:
    lines = [f"name: {NAME}", f"size: [{SIZE[0]}, {SIZE[1]}]", f"reference: {NAME}.png", "fields:"]
    for name, kind, box, cells, required, _ in zones:
        extra = (
            f", cells: {cells}"
            if kind == "comb"
            else f", length: [{cells[0]}, {cells[1]}]"
            if kind == "field"
            else ""
        )
        lines.append(
            f"  - {{name: {name}, kind: {kind}, box: [{', '.join(map(str, box))}]{extra}, "
            f"required: {str(required).lower()}}}"
        )
    return "\n".join(lines) + "\n"


class Digits:
    """MNIST test digits handed out in a seeded order, each once before any repeats."""

    def __init__(self, seed: int):
        ds = datasets.load("mnist")
        self.x, self.y, self.labels = ds.test.x, ds.test.y, ds.labels
        self.order = np.random.default_rng(seed).permutation(len(self.y))
        self.at = 0

    def take(self, n: int) -> np.ndarray:
        idx = self.order[np.arange(self.at, self.at + n) % len(self.order)]
        self.at += n
        return idx


def ink(page: np.ndarray, digit: np.ndarray, x: int, y: int, darkness: float) -> None:
    """Write a white-on-black ink image (0..1) onto the page (0 = black) at (x, y), as pen ink."""
    h, w = digit.shape
    region = page[y : y + h, x : x + w]
    np.minimum(region, 255 * (1 - digit[: region.shape[0], : region.shape[1]] * darkness), out=region)


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


def write_field(page, digits: Digits, box, length: tuple[int, int], rng) -> str:
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
    height = int(h * rng.uniform(0.7, 0.85))
    glyphs = scaled(strip, height)
    glyphs = glyphs[:, : w - 30]
    ink(
        page,
        glyphs,
        x + 15 + int(rng.integers(0, max(1, w - 30 - glyphs.shape[1]))),
        y + (h - height) // 2,
        rng.uniform(0.75, 0.95),
    )
    return "".join(digits.labels[d] for d in digits.y[idx])


def fill(form: Image.Image, digits: Digits, rng, zones=ZONES) -> tuple[Image.Image, dict[str, str]]:
    """The form filled in: every required zone, each optional one on some pages; the truth per zone."""
    page = np.asarray(form, np.float32).copy()
    truth = {}
    for name, kind, box, cells, required, _ in zones:
        if not required and rng.random() < EMPTY_OPTIONAL:
            truth[name] = ""
        elif kind == "comb":
            x, y, w, h = box
            edges = np.linspace(x, x + w, cells + 1).round().astype(int)
            truth[name] = "".join(
                write_digit(page, digits, (a, y, b - a, h), rng) for a, b in zip(edges, edges[1:])
            )
        elif kind == "digit":
            truth[name] = write_digit(page, digits, box, rng)
        else:
            truth[name] = write_field(page, digits, box, cells, rng)
    return Image.fromarray(page.clip(0, 255).astype(np.uint8)), truth


@dataclass(frozen=True)
class Scan:
    rotation: float  # degrees, counter-clockwise, of the form on the scanned page
    scale: float
    dx: float  # the form's shift on the page, in pixels
    dy: float
    upside_down: bool


def scan(page: Image.Image, rng, upside_down: bool | None = None) -> tuple[Image.Image, Scan]:
    """A scanner's copy of ``page``: turned, scaled and shifted on a sheet the same size, paper tone,
    noise and blur; upside down now and then."""
    s = Scan(
        float(rng.uniform(-3, 3)),
        float(rng.uniform(0.95, 1.05)),
        float(rng.uniform(-0.05, 0.05) * SIZE[0]),
        float(rng.uniform(-0.05, 0.05) * SIZE[1]),
        bool(rng.random() < UPSIDE_DOWN) if upside_down is None else upside_down,
    )
    a = math.radians(s.rotation)
    cx, cy = SIZE[0] / 2, SIZE[1] / 2
    # The inverse map PIL wants (output pixel -> input pixel): undo the shift, the rotation, the scale.
    cos, sin = math.cos(a) / s.scale, math.sin(a) / s.scale
    ox, oy = cx + s.dx, cy + s.dy
    coeffs = (cos, sin, cx - cos * ox - sin * oy, -sin, cos, cy + sin * ox - cos * oy)
    out = page.transform(SIZE, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=255)
    if s.upside_down:
        out = out.rotate(180)
    paper = rng.uniform(215, 250)
    arr = np.asarray(out, np.float32) * paper / 255 + rng.normal(0, rng.uniform(2, 8), (SIZE[1], SIZE[0]))
    out = Image.fromarray(arr.clip(0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(rng.uniform(0, 1.0))
    )
    return out, s


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
    other = [
        ("ref", "comb", (900, 500, 600, 80), 6, True, "Reference"),
        ("total", "field", (200, 1500, 1200, 140), (1, 9), True, "Total"),
        ("items", "comb", (200, 800, 400, 80), 4, True, "Items"),
    ]
    return reference(other, title="ORDER FORM")


def encode(pages: list[Image.Image], fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "PNG":
        pages[0].save(out, "PNG", optimize=False, compress_level=3)
    elif fmt == "JPEG":
        pages[0].save(out, "JPEG", quality=85)
    elif fmt == "TIFF":
        pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    elif fmt == "TIFF-G4":  # bilevel fax: every page thresholded to black and white
        bilevel = [p.point(lambda v: 255 if v > 150 else 0).convert("1") for p in pages]
        bilevel[0].save(out, "TIFF", save_all=True, append_images=bilevel[1:], compression="group4")
    else:
        pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=200.0)
    return out.getvalue()


EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif", "TIFF-G4": "tif", "PDF": "pdf"}


def write(out: Path, pages: int, seed: int = 0) -> dict:
    """The template and ``pages`` scanned pages in files under ``out/pages``; counts of what was made."""
    out.mkdir(parents=True, exist_ok=True)
    form = reference()
    form.save(out / f"{NAME}.png")
    (out / f"{NAME}.yaml").write_text(template_yaml())
    (out / "pages").mkdir(exist_ok=True)
    rng, digits = np.random.default_rng(seed), Digits(seed)
    truth_rows, page_rows, made, n = [], [], 0, 0
    while made < pages:
        fmt = FORMATS[n % len(FORMATS)]
        count = min(PAGES_PER_FILE[fmt], pages - made)
        name = f"{n:05d}-{fmt.lower()}.{EXTENSIONS[fmt]}"  # as --labels names it when pages/ is the INPUT
        images = []
        for p in range(count):
            if rng.random() < STRAY_SHARE:
                kind = str(rng.choice(["blank", "letter", "other-form"]))
                image, how = scan(stray(kind, rng), rng)
                page_rows.append([name, p, kind, *how_row(how)])
            else:
                filled, truth = fill(form, digits, rng)
                image, how = scan(filled, rng)
                page_rows.append([name, p, "form", *how_row(how)])
                truth_rows += [[name, p, field, label] for field, label in truth.items()]
            images.append(image)
        (out / "pages" / name).write_bytes(encode(images, fmt))
        made += count
        n += 1
    with open(out / "truth.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "page", "field", "label"], *truth_rows])
    with open(out / "pages.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [["path", "page", "kind", "rotation", "scale", "dx", "dy", "upside_down"], *page_rows]
        )
    return {"files": n, "pages": made, "forms": sum(r[2] == "form" for r in page_rows)}


def how_row(s: Scan) -> list:
    return [round(s.rotation, 4), round(s.scale, 5), round(s.dx, 2), round(s.dy, 2), int(s.upside_down)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hdr_dist.forms.samples", description=__doc__.split("\n\n")[0])
    p.add_argument("output", type=Path, help="folder for the template, pages/, truth.csv and pages.csv")
    p.add_argument("--pages", type=int, default=50, help="scanned pages to make (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    made = write(args.output, args.pages, args.seed)
    print(
        f"{made['pages']:,} pages ({made['forms']:,} of them forms) in {made['files']:,} files under "
        f"{args.output / 'pages'}; template {args.output / (NAME + '.yaml')}; "
        f"truth in {args.output / 'truth.csv'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
