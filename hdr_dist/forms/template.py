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
or ``[min, max]`` (default ``[1, 12]``). A ``digit`` is one digit (a ``length`` of 1 may say so).
``required`` defaults to true: a required zone left empty goes to review. Every mistake is one line
naming the file and the key.

YAML anchors and aliases (``&a``, ``*a``) are refused before anything is built from them: a file of a few
hundred bytes whose aliases nest 9 deep expands to 387 million items, and quoting it whole in an error
took 8.5 GB. Every value an error quotes is cut short (``errors.quoted``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdr_dist.common.errors import VALUE_LIMIT, SettingError, one_line, quoted

KINDS = ("comb", "field", "digit")
MAX_FIELD_LENGTH = 12  # the longest field the field reader is trained on
MAX_SIDE = 20_000  # pixels: a reference page larger than this is not a form
# A form of 1,000 zones is under 100 KB of YAML; parsing 1 MB of it took 5.5 s here, so a file past
# this is refused unread.
MAX_TEMPLATE_BYTES = 256 << 10
# The form's and each zone's name go into every row, a column's name (field_NAME) and other jobs'
# messages unquoted; a name is a word or two, so one past this is refused here, once.
MAX_NAME = 100


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


class Aliased(Exception):
    """A YAML anchor or alias, met before the node it names is composed."""


@functools.cache
def loader():
    """PyYAML's safe loader, refusing every anchor and alias as the parser meets it: the aliases of a
    hostile file expand only once composed, so a refusal here costs no more than the file's size."""
    import yaml

    class Plain(yaml.SafeLoader):
        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise Aliased(event)
            return super().compose_node(parent, index)

    return Plain


def parse(path: Path):
    """The YAML document at ``path``; any reason it is not a template's YAML is one line."""
    import yaml

    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise SettingError(
                "template", path, f"larger than {MAX_TEMPLATE_BYTES:,} bytes: not a form's template"
            )
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader())
    except Aliased as e:
        event = e.args[0]
        mark = f"*{event.anchor}" if isinstance(event, yaml.AliasEvent) else f"&{event.anchor}"
        raise SettingError(
            "template",
            path,
            f"line {event.start_mark.line + 1}: YAML anchors and aliases ({quoted(mark, plain=True)}) "
            "are not taken in a template; write each value out",
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, yaml.YAMLError) as e:
        # ValueError: an integer past Python's 4,300 digits; RecursionError: nesting 1,000 deep
        raise SettingError("template", path, f"not a YAML file ({one_line(e)})") from None


def load(path: str | Path) -> Template:
    """The template at ``path``, checked: every mistake is one line naming the file and the key."""
    path = Path(path).expanduser()
    try:
        found = path.is_file()
    except OSError as e:  # a name too long for the file system
        raise SettingError("template", path, f"cannot read ({e.strerror or one_line(e)})") from None
    if not found:
        raise SettingError("template", path, "no such file")
    spec = parse(path)
    if not isinstance(spec, dict):
        raise SettingError("template", path, "want a mapping with name, size, reference and fields")
    for key in ("name", "size", "reference", "fields"):
        if key not in spec:
            fail(path, key, "missing")
    name = spec["name"]
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        fail(path, "name", f"want a non-empty text of at most {MAX_NAME} characters, got {quoted(name)}")
    size = spec["size"]
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and 0 < v <= MAX_SIDE for v in size)
    ):
        fail(path, "size", f"want [width, height] in pixels (1 to {MAX_SIDE:,}), got {quoted(size)}")
    if not isinstance(spec["reference"], str) or not spec["reference"].strip():
        fail(path, "reference", f"want the name of an image file, got {quoted(spec['reference'])}")
    reference = path.parent / spec["reference"]
    check_reference(path, reference, tuple(size))
    if not isinstance(spec["fields"], list) or not spec["fields"]:
        fail(path, "fields", "want a list of at least one zone")
    zones = tuple(zone(path, i, z, tuple(size)) for i, z in enumerate(spec["fields"]))
    check_zones(path, zones)
    return Template(name.strip(), tuple(size), reference, zones, path)


def check_reference(path: Path, reference: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    shown = quoted(reference, VALUE_LIMIT, plain=True)
    try:
        found = reference.is_file()
    except OSError as e:  # a name too long for the file system
        fail(path, "reference", f"{shown}: cannot read ({e.strerror or one_line(e)})")
    if not found:
        fail(path, "reference", f"{shown}: no such file")
    try:
        with Image.open(reference) as img:
            found = img.size
    except Exception as e:  # noqa: BLE001 - anything Pillow cannot open is the user's reference
        fail(path, "reference", f"{shown}: not an image ({one_line(e)})")
    if found != size:
        fail(
            path,
            "reference",
            f"{shown} is {found[0]}x{found[1]} pixels, not the size {size[0]}x{size[1]}",
        )


def zone(path: Path, i: int, spec, size: tuple[int, int]) -> Zone:
    """One entry of ``fields``, checked against the page."""
    where = f"fields[{i}]"
    if not isinstance(spec, dict):
        fail(path, where, f"want a mapping with name, kind and box, got {quoted(spec)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        fail(
            path,
            f"{where}.name",
            f"want a non-empty text of at most {MAX_NAME} characters, got {quoted(name)}",
        )
    where = f"fields[{i}] ({quoted(name, plain=True)})"
    unknown = set(spec) - {"name", "kind", "box", "cells", "length", "required"}
    if unknown:
        fail(path, where, f"unknown keys {quoted(sorted(unknown, key=str))}")
    kind = spec.get("kind")
    if kind not in KINDS:
        fail(path, f"{where}.kind", f"unknown kind {quoted(kind)}; choose from {', '.join(KINDS)}")
    box = spec.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)):
        fail(path, f"{where}.box", f"want [x, y, width, height] in whole pixels, got {quoted(box)}")
    x, y, w, h = box
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        fail(path, f"{where}.box", f"{quoted(box)} is outside the {size[0]}x{size[1]} page")
    required = spec.get("required", True)
    if not isinstance(required, bool):
        fail(path, f"{where}.required", f"want true or false, got {quoted(required)}")
    cells, length = (), (1, 1)
    if kind == "comb":
        cells = comb_cells(path, where, spec.get("cells"), w)
        length = (len(cells), len(cells))
    elif "cells" in spec:
        fail(path, f"{where}.cells", f"only a comb has cells (this zone is a {kind})")
    if kind == "field":
        length = field_length(path, where, spec.get("length", [1, MAX_FIELD_LENGTH]))
    elif kind == "digit" and "length" in spec:
        digit_length(path, where, spec["length"])
    elif "length" in spec:
        fail(path, f"{where}.length", "a comb's length is its number of cells; give cells alone")
    return Zone(name.strip(), kind, tuple(box), cells, length, required)


def comb_cells(path: Path, where: str, cells, width: int) -> tuple[int, ...]:
    if isinstance(cells, int) and not isinstance(cells, bool):
        if cells < 1:
            fail(path, f"{where}.cells", f"want at least 1 cell, got {cells}")
        if cells > width:  # and so no cell narrower than a pixel, nor a split the size of the number
            fail(path, f"{where}.cells", f"want at most {width} cells, one pixel each, got {quoted(cells)}")
        edges = np.linspace(0, width, cells + 1).round().astype(int)
        return tuple(int(v) for v in np.diff(edges))
    if isinstance(cells, list) and cells and all(isinstance(v, int) and v >= 1 for v in cells):
        if sum(cells) != width:
            fail(
                path,
                f"{where}.cells",
                f"cell widths {quoted(cells)} add up to {sum(cells)}, not the box's width {width}",
            )
        return tuple(cells)
    fail(
        path,
        f"{where}.cells",
        f"want a number of cells (at least 1) or a list of cell widths, got {quoted(cells)}",
    )


def digit_length(path: Path, where: str, length) -> None:
    """A digit zone may say its length, and it is one digit: a template that states it is taken."""
    one = lambda v: type(v) is int and v == 1  # noqa: E731 - a bool is an int, and true is no length
    if not (one(length) or (isinstance(length, list) and len(length) == 2 and all(map(one, length)))):
        fail(
            path,
            f"{where}.length",
            f"a digit zone holds one digit: want 1 or [1, 1], got {quoted(length)}; "
            "a longer number is a field or a comb",
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
            f"want a number of digits or [min, max], from 1 to {MAX_FIELD_LENGTH}, got {quoted(length)}",
        )
    return tuple(length)


def check_zones(path: Path, zones: tuple[Zone, ...]) -> None:
    """No two zones share a name or overlap: a stroke in the overlap would be read twice."""
    seen: set[str] = set()
    for i, a in enumerate(zones):
        if a.name in seen:
            fail(path, f"fields[{i}].name", f"{quoted(a.name)} names two zones")
        seen.add(a.name)
        for b in zones[:i]:
            if (
                a.box[0] < b.box[0] + b.box[2]
                and b.box[0] < a.box[0] + a.box[2]
                and a.box[1] < b.box[1] + b.box[3]
                and b.box[1] < a.box[1] + a.box[3]
            ):
                fail(
                    path, f"fields[{i}] ({quoted(a.name, plain=True)}).box", f"overlaps zone {quoted(b.name)}"
                )


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
