"""How a registered page's zones become what the models read, without Ray, on constructed pages: the
print dropped without the strokes that cross it (by the reference, by colour, without a reference),
and a comb's cells cut by their ink, overflow kept and a neighbour's overflow left out."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hdr_dist.data import datasets
from hdr_dist.data.layouts import Layout, draw, template_yaml
from hdr_dist.forms import samples, zones
from hdr_dist.forms import template as templates
from hdr_dist.inference import readers
from hdr_dist.models import checkpoints
from tests.helpers import ROOT

# A comb of three 80x90 cells with 3-pixel walls and a 4-pixel frame, below the title and above the
# signature line that every sample layout prints.
TOP, WALL = 330, 230  # the comb's top edge, and the wall between its first two cells
COMB = Layout("cells-v1", "T", (("number", "comb", (150, TOP, 240, 90), 3, True, "N"),), size=(700, 700))
RED = (215, 40, 40)


@pytest.fixture(scope="module")
def comb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("comb")
    draw(COMB).convert("L").save(folder / "cells-v1.png")
    (folder / "cells-v1.yaml").write_text(template_yaml(COMB))
    return templates.load(folder / "cells-v1.yaml")


@pytest.fixture(scope="module")
def cnn():
    state, cfg, _ = checkpoints.for_scoring(str(ROOT / "tests" / "data" / "cnn-before-the-layout.pt"), None)
    model, _ = checkpoints.model_from_state(state)
    return model.eval(), cfg, state.temperature


def digit(index: int, height: int) -> tuple[np.ndarray, str]:
    """An MNIST test digit cropped to its ink and scaled to ``height`` rows (ink on [0, 1]); its label."""
    test = datasets.load("mnist").test
    canvas = test.x[index].astype(np.float32) / 255
    rows, cols = np.flatnonzero(canvas.any(1)), np.flatnonzero(canvas.any(0))
    return samples.scaled(canvas[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], height), str(test.y[index])


def page(colour=(0, 0, 0)) -> np.ndarray:
    """The comb printed in ``colour`` on paper, as float RGB (the samples' ink goes on it)."""
    return np.asarray(draw(COMB, colour), np.float32).copy()


def scanned(rgb: np.ndarray, grey: bool) -> np.ndarray:
    out = rgb.clip(0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(out).convert("L")) if grey else out


def cell_images(mapped: np.ndarray, comb, how: str) -> list[zones.Read]:
    return zones.read_zones(mapped, comb, zones.Dropout(comb, how))


def read(cnn, reads: list[zones.Read]) -> list[str]:
    model, cfg, temperature = cnn
    x = np.stack([np.frombuffer(r.image, np.uint8).reshape(28, 28) for r in reads])
    return [text for text, _ in readers.DIGIT.read(model, x, cfg, temperature, readers.CPU)]


@pytest.mark.parametrize("how, colour, grey", [("colour", RED, False), ("reference", (0, 0, 0), True)])
def test_a_digit_over_the_top_bottom_and_side_walls_reads_as_itself(comb, cnn, how, colour, grey):
    """A 7 taller than its cell (its ink from above the top wall to below the bottom one), pushed over
    the middle cell's left wall: no inset cuts it, and the walls it crosses do not cut it in pieces."""
    glyph, label = digit(0, 120)  # MNIST's first test digit, a 7: 120 rows in a 90-row cell
    rgb = page(colour)
    samples.ink(rgb, glyph, WALL - 8, TOP - 15, 0.95, (20, 20, 25))
    reads = cell_images(scanned(rgb, grey), comb, how)
    assert [r.empty for r in reads] == [True, False, True]
    assert read(cnn, [reads[1]]) == [label]


def test_a_neighbours_overflow_stays_with_its_own_cell(comb, cnn):
    """A digit written in the first cell that runs 15 pixels into the second, past where a fixed inset
    would have cut the second cell: the second cell stays empty, the first reads the digit whole."""
    glyph, label = digit(1, 80)  # a 2
    rgb = page()
    samples.ink(rgb, glyph, WALL + 15 - glyph.shape[1], TOP + 5, 0.95, (20, 20, 25))
    reads = cell_images(scanned(rgb, True), comb, "reference")
    assert [r.empty for r in reads] == [False, True, True]
    assert read(cnn, [reads[0]]) == [label]


def test_two_digits_touching_across_a_wall_are_cut_at_it(comb, cnn):
    glyph_a, label_a = digit(1, 80)  # a 2
    glyph_b, label_b = digit(3, 80)  # a 0
    rgb = page()
    samples.ink(rgb, glyph_a, WALL - glyph_a.shape[1] + 4, TOP + 5, 0.95, (20, 20, 25))
    samples.ink(rgb, glyph_b, WALL - 3, TOP + 5, 0.95, (20, 20, 25))
    reads = cell_images(scanned(rgb, True), comb, "reference")
    assert [r.empty for r in reads] == [False, False, True]
    assert read(cnn, reads[:2]) == [label_a, label_b]


def test_an_empty_comb_with_thick_smudged_walls_stays_empty(comb):
    rgb = page()
    rgb[TOP : TOP + 90, WALL - 2 : WALL + 4] *= 0.6  # a wall printed twice as thick
    reads = cell_images(scanned(rgb, True), comb, "reference")
    assert all(r.empty and r.error is None for r in reads)


def crossed(colour) -> np.ndarray:
    """The comb, and a vertical pen stroke 5 pixels wide and 60 long crossing its top frame at x
    190..194 (a wall is 90 long)."""
    rgb = page(colour)
    rgb[TOP - 25 : TOP + 35, 190:195] *= 0.1
    return rgb


@pytest.mark.parametrize(
    "how, colour, grey",
    [
        ("colour", RED, False),
        ("colour", (120, 150, 235), False),
        ("reference", RED, True),
        ("lines", (0, 0, 0), True),
    ],
)
def test_dropout_keeps_the_stroke_where_it_crosses_the_print(comb, how, colour, grey):
    """Pixel checks on a constructed zone: the top frame (4 rows) is paper away from the stroke, and the
    stroke is ink where it crosses the frame."""
    mapped = scanned(crossed(colour), grey)
    dropout = zones.Dropout(comb, how)
    look = dropout.look(mapped)
    paper = look.paper
    region, crop = zones.cut(mapped, comb.zones[0], comb.size, dropout, look)
    x, y = region[0], region[1]
    frame = crop[TOP - y : TOP + 4 - y]
    assert (frame[:, 250 - x : 280 - x] > paper - zones.FAINT).all(), "the print is gone away from the stroke"
    assert (frame[:, 191 - x : 194 - x] < paper - zones.FAINT).all(), "the stroke crossing it stays"


def test_paint_is_what_erased_the_crossing_before(comb):
    mapped = scanned(crossed((0, 0, 0)), True)
    dropout = zones.Dropout(comb, "paint")
    region, crop = zones.cut(mapped, comb.zones[0], comb.size, dropout, dropout.look(mapped))
    assert (crop[TOP - region[1] : TOP + 4 - region[1], 191 - region[0] : 194 - region[0]] > 200).all()
