"""Registration on pages with a known transform, and the zones cut from the page against the zones cut
from the whole page mapped first: what the coarse-to-fine registration and the zone-only warp must
keep, without Ray."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hdr_dist.data.layouts import LAYOUTS, template_yaml
from hdr_dist.forms import registration, samples, zones
from hdr_dist.forms import template as templates


def written(name: str, folder, seed: int):
    """The layout's template under ``folder``, and one of its forms filled with MNIST test digits (in
    the second dropout colour when the layout prints in colour)."""
    layout = LAYOUTS[name]
    samples.reference(layout).save(folder / f"{layout.name}.png")
    (folder / f"{layout.name}.yaml").write_text(template_yaml(layout))
    form = samples.draw(layout, samples.DROPOUT_COLOURS[1]) if layout.dropout else samples.reference(layout)
    filled, _ = samples.fill(form, samples.Digits(seed), np.random.default_rng(seed), layout)
    return templates.load(folder / f"{layout.name}.yaml"), filled


def corner_errors(template, truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Reference pixels between each zone corner and where the found transform puts it back."""
    corners = np.array(
        [
            (x + dx, y + dy)
            for x, y, w, h in (z.box for z in template.zones)
            for dx in (0, w)
            for dy in (0, h)
        ],
        float,
    )
    on_page = corners @ cv2.invertAffineTransform(truth)[:, :2].T
    on_page += cv2.invertAffineTransform(truth)[:, 2]
    back = on_page @ found[:, :2].T + found[:, 2]
    return np.hypot(*(back - corners).T)


@pytest.mark.parametrize(
    "name, rotation, scale, look",
    [
        ("claim", 2.5, 1.0, "grey"),  # 200 dpi, as the reference
        ("claim", 181.0, 0.5, "bilevel"),  # upside down, 100 dpi, black and white
        ("order", -3.0, 2.0, "jpeg"),  # 400 dpi
        ("census", 178.5, 1.5, "grey"),  # upside down, 300 dpi
        ("claim-dropout", 1.0, 0.75, "bilevel"),  # light print a bilevel scan all but loses
        ("order", 90.5, 1.0, "grey"),  # fed a quarter turn
    ],
)
def test_registration_finds_a_known_transform_within_a_pixel(tmp_path, name, rotation, scale, look):
    """The zones' corners come back within a pixel in the median and 3 at worst, at 100 to 400 dpi,
    turned any way, bilevel and JPEG: what the fine step must keep of the ECC it replaced."""
    template, filled = written(name, tmp_path, seed=7)
    rng = np.random.default_rng(11)
    shift = (float(rng.uniform(-60, 60)) * scale, float(rng.uniform(-60, 60)) * scale)
    page, truth = samples.transformed(filled, rotation, scale, shift, rng, look)
    reg = registration.register(page, registration.Reference(np.asarray(template.reference_image())))
    assert reg.matched, reg
    errors = corner_errors(template, truth, reg.matrix)
    assert np.median(errors) <= 1.0 and errors.max() <= 3.0, (np.median(errors), errors.max())


def test_a_blank_sheet_and_another_form_match_no_template(tmp_path):
    template, _ = written("claim", tmp_path, seed=1)
    _, other = written("census", tmp_path, seed=1)
    ref = registration.Reference(np.asarray(template.reference_image()))
    blank = np.full((2200, 1700), 235, np.uint8)
    rng = np.random.default_rng(3)
    assert not registration.register(blank, ref).matched
    assert not registration.register(samples.transformed(other, 1.0, 1.0, (0, 0), rng)[0], ref).matched


def whole_page(page: np.ndarray, matrix: np.ndarray, size) -> np.ndarray:
    """The whole page warped onto the reference's pixels, paper where it had none: what the zones
    were cut from before only their surroundings were warped."""
    channels = page.shape[2] if page.ndim == 3 else 1
    paper = [float(v) for v in np.median(page[::4, ::4].reshape(-1, channels), 0)]
    return cv2.warpAffine(page, matrix, size, flags=cv2.INTER_LINEAR, borderValue=paper)


@pytest.mark.parametrize("name, look", [("claim-dropout", "colour"), ("census", "grey")])
def test_zones_cut_from_the_page_are_those_of_the_whole_page_mapped(tmp_path, name, look):
    """Each zone's surroundings warped out of the page give the model the same cells as the whole page
    warped onto the reference and then cut: the same empties, and the same pixels within a grey
    level of interpolation."""
    template, filled = written(name, tmp_path, seed=5)
    page = np.asarray(filled if look == "colour" else filled.convert("L"))
    onto = cv2.getRotationMatrix2D((850, 1100), 1.5, 1.3)  # reference -> page
    size = (round(1700 * 1.3), round(2200 * 1.3))
    page = cv2.warpAffine(page, onto, size, borderValue=(240, 240, 240))
    matrix = cv2.invertAffineTransform(onto)
    dropout = zones.Dropout(template, "colour")
    whole = zones.read_zones(whole_page(page, matrix, template.size), template, dropout)
    parts = zones.read_zones(page, template, dropout, matrix)
    assert [r.empty for r in parts] == [r.empty for r in whole]
    assert sum(not r.empty for r in parts) > 20
    for a, b in zip(whole, parts):
        if a.image and len(a.image) == len(b.image):
            diff = np.abs(np.frombuffer(a.image, np.uint8).astype(int) - np.frombuffer(b.image, np.uint8))
            assert diff.max() <= 1, (a.zone, a.cell, diff.max())
        else:
            assert a.image == b.image, (a.zone, a.cell)
