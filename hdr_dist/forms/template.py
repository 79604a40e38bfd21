"""A form's template: the reference page and where the handwriting sits, read from YAML and checked.

The format (JSON is YAML too)::

    name: claim-v1
    size: [1700, 2200]            # width, height of the reference page, in pixels
    reference: claim-v1.png       # the empty form at that size, relative to this file
    fields:
      - {name: postcode, kind: comb,  box: [260, 520, 450, 90], cells: 5, required: true}
      - {name: amount,   kind: field, box: [260, 1480, 700, 110], length: [1, 7]}
      - {name: copies,   kind: digit, box: [1300, 1480, 110, 110], required: false}

``box`` is ``[x, y, width, height]`` in reference pixels. A ``comb`` is one digit per cell: ``cells: N``
splits its box into N equal cells; a comb with cells of different widths lists them, ``cells: [90, 90,
60, 90]`` (their sum is the box's width). A ``field`` is a free digit string, ``length`` an exact count
or ``[min, max]`` (default ``[1, 12]``). A ``digit`` is one digit. ``required`` defaults to true: a
required zone left empty goes to review. Every mistake is one line naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdr_dist.common.errors import SettingError, one_line

KINDS = ("comb", "field", "digit")
MAX_FIELD_LENGTH = 12  # the longest field the field reader is trained on
MAX_SIDE = 20_000  # pixels: a reference page larger than this is not a form


@dataclass(frozen=True)
class Zone:
    name: str
    kind: str  # comb, field or digit
    box: tuple[int, int, int, int]  # x, y, width, height in reference pixels
    cells: tuple[int, ...] = ()  # a comb's cell widths (one digit each)
    length: tuple[int, int] = (1, 1)  # how many digits the zone may hold
    required: bool = True

    def cell_boxes(self) -> list[tuple[int, int, int, int]]:
        """Each digit's box: a comb's cells left to right, or the whole zone for a digit."""
        x, y, _, h = self.box
        edges = np.cumsum((0, *self.cells)) if self.kind == "comb" else np.array([0, self.box[2]])
        return [(x + int(a), y, int(b - a), h) for a, b in zip(edges[:-1], edges[1:])]


@dataclass(frozen=True)
class Template:
    name: str
    size: tuple[int, int]  # width, height of the reference page
    reference: Path
    zones: tuple[Zone, ...]
    path: Path  # the YAML file, for messages

    def reference_image(self) -> np.ndarray:
        """The empty form, grayscale uint8 at ``size``."""
        from PIL import Image

        with Image.open(self.reference) as img:
            return np.asarray(img.convert("L"))


def fail(path: Path, key: str, why: str):
    raise SettingError("template", path, f"{key}: {why}")


def load(path: str | Path) -> Template:
    """The template at ``path``, checked: every mistake is one line naming the file and the key."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise SettingError("template", path, "no such file")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SettingError("template", path, f"not a YAML file ({one_line(e)})") from None
    if not isinstance(spec, dict):
        raise SettingError("template", path, "want a mapping with name, size, reference and fields")
    for key in ("name", "size", "reference", "fields"):
        if key not in spec:
            fail(path, key, "missing")
    name = spec["name"]
    if not isinstance(name, str) or not name.strip():
        fail(path, "name", f"want a non-empty text, got {name!r}")
    size = spec["size"]
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and 0 < v <= MAX_SIDE for v in size)
    ):
        fail(path, "size", f"want [width, height] in pixels (1 to {MAX_SIDE:,}), got {size!r}")
    reference = path.parent / str(spec["reference"])
    check_reference(path, reference, tuple(size))
    if not isinstance(spec["fields"], list) or not spec["fields"]:
        fail(path, "fields", "want a list of at least one zone")
    zones = tuple(zone(path, i, z, tuple(size)) for i, z in enumerate(spec["fields"]))
    check_zones(path, zones)
    return Template(name.strip(), tuple(size), reference, zones, path)


def check_reference(path: Path, reference: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    if not reference.is_file():
        fail(path, "reference", f"{reference}: no such file")
    try:
        with Image.open(reference) as img:
            found = img.size
    except Exception as e:  # noqa: BLE001 - anything Pillow cannot open is the user's reference
        fail(path, "reference", f"{reference}: not an image ({one_line(e)})")
    if found != size:
        fail(
            path,
            "reference",
            f"{reference} is {found[0]}x{found[1]} pixels, not the size {size[0]}x{size[1]}",
        )


def zone(path: Path, i: int, spec, size: tuple[int, int]) -> Zone:
    """One entry of ``fields``, checked against the page."""
    where = f"fields[{i}]"
    if not isinstance(spec, dict):
        fail(path, where, f"want a mapping with name, kind and box, got {spec!r}")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        fail(path, f"{where}.name", f"want a non-empty text, got {name!r}")
    where = f"fields[{i}] ({name})"
    unknown = set(spec) - {"name", "kind", "box", "cells", "length", "required"}
    if unknown:
        fail(path, where, f"unknown keys {sorted(unknown)}")
    kind = spec.get("kind")
    if kind not in KINDS:
        fail(path, f"{where}.kind", f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    box = spec.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)):
        fail(path, f"{where}.box", f"want [x, y, width, height] in whole pixels, got {box!r}")
    x, y, w, h = box
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        fail(path, f"{where}.box", f"{box} is outside the {size[0]}x{size[1]} page")
    required = spec.get("required", True)
    if not isinstance(required, bool):
        fail(path, f"{where}.required", f"want true or false, got {required!r}")
    cells, length = (), (1, 1)
    if kind == "comb":
        cells = comb_cells(path, where, spec.get("cells"), w)
        length = (len(cells), len(cells))
    elif "cells" in spec:
        fail(path, f"{where}.cells", f"only a comb has cells (this zone is a {kind})")
    if kind == "field":
        length = field_length(path, where, spec.get("length", [1, MAX_FIELD_LENGTH]))
    elif "length" in spec:
        fail(path, f"{where}.length", f"only a field has a length (this zone is a {kind})")
    return Zone(name.strip(), kind, tuple(box), cells, length, required)


def comb_cells(path: Path, where: str, cells, width: int) -> tuple[int, ...]:
    if isinstance(cells, int) and not isinstance(cells, bool):
        if cells < 1:
            fail(path, f"{where}.cells", f"want at least 1 cell, got {cells}")
        edges = np.linspace(0, width, cells + 1).round().astype(int)
        return tuple(int(v) for v in np.diff(edges))
    if isinstance(cells, list) and cells and all(isinstance(v, int) and v >= 1 for v in cells):
        if sum(cells) != width:
            fail(
                path,
                f"{where}.cells",
                f"cell widths {cells} add up to {sum(cells)}, not the box's width {width}",
            )
        return tuple(cells)
    fail(
        path, f"{where}.cells", f"want a number of cells (at least 1) or a list of cell widths, got {cells!r}"
    )


def field_length(path: Path, where: str, length) -> tuple[int, int]:
    if isinstance(length, int) and not isinstance(length, bool):
        length = [length, length]
    if not (
        isinstance(length, list)
        and len(length) == 2
        and all(isinstance(v, int) for v in length)
        and 1 <= length[0] <= length[1] <= MAX_FIELD_LENGTH
    ):
        fail(
            path,
            f"{where}.length",
            f"want a number of digits or [min, max], from 1 to {MAX_FIELD_LENGTH}, got {length!r}",
        )
    return tuple(length)


def check_zones(path: Path, zones: tuple[Zone, ...]) -> None:
    """No two zones share a name or overlap: a stroke in the overlap would be read twice."""
    seen: set[str] = set()
    for i, a in enumerate(zones):
        if a.name in seen:
            fail(path, f"fields[{i}].name", f"{a.name!r} names two zones")
        seen.add(a.name)
        for b in zones[:i]:
            if (
                a.box[0] < b.box[0] + b.box[2]
                and b.box[0] < a.box[0] + a.box[2]
                and a.box[1] < b.box[1] + b.box[3]
                and b.box[1] < a.box[1] + a.box[3]
            ):
                fail(path, f"fields[{i}] ({a.name}).box", f"overlaps zone {b.name!r}")


def draw(template: Template, out: Path) -> Path:
    """The reference with every zone outlined and named (and a comb's cells), so a person can see the
    zones before a run."""
    from PIL import Image, ImageDraw

    colours = {"comb": (200, 30, 30), "field": (30, 90, 200), "digit": (20, 140, 60)}
    image = Image.fromarray(template.reference_image()).convert("RGB")
    pen = ImageDraw.Draw(image)
    for z in template.zones:
        for x, y, w, h in z.cell_boxes() if z.kind == "comb" else [z.box]:
            pen.rectangle((x, y, x + w - 1, y + h - 1), outline=colours[z.kind], width=3)
        label = f"{z.name} ({z.kind}{'' if z.required else ', optional'})"
        pen.text((z.box[0], max(0, z.box[1] - 14)), label, fill=colours[z.kind])
    image.save(out)
    return out
