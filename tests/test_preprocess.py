"""Scan -> MNIST-space conversion on real MNIST digits redrawn as scans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from hdr_dist.data import datasets
from hdr_dist.imaging import images, preprocess
from hdr_dist.imaging.preprocess import BlankImage, to_mnist


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """200 stratified MNIST test digits, white on black, 28x28 uint8."""
    return datasets.load("mnist", limit_test=200).test.x


@pytest.fixture(scope="module")
def converted(digits) -> np.ndarray:
    return np.stack([to_mnist(d) for d in digits])


BEFORE = Path(__file__).parent / "data" / "preprocess-before.npz"


def fixed_crops() -> list[np.ndarray]:
    """400 scans of MNIST test digits, made the same way every time: 20 to 300 pixels a side, dark on
    light and light on dark, paper noise, a speck, some as float images, and a few blank ones."""
    rng = np.random.default_rng(38)
    test = datasets.load("mnist", limit_test=400).test.x
    out = []
    for i, digit in enumerate(test):
        side = int(rng.integers(20, 300))
        img = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR), np.float32)
        if i % 2:
            img = 255 - img
        img = np.clip(img * rng.uniform(0.6, 0.95) + rng.uniform(0, 40) + rng.normal(0, 5, img.shape), 0, 255)
        if i % 5 == 0:
            y, x = rng.integers(0, side - 2, 2)
            img[y : y + 2, x : x + 2] = 255 - img[0, 0]
        if i % 37 == 0:
            img[:] = img[0, 0]
        out.append(img / 255 if i % 7 == 0 else img.astype(np.uint8))
    return out


def fixed_fields() -> list[np.ndarray]:
    """60 fields: 2 to 8 MNIST test digits side by side under a printed underline and between walls."""
    rng = np.random.default_rng(39)
    test = datasets.load("mnist", limit_test=400).test.x
    out = []
    for i in range(60):
        n = int(rng.integers(2, 9))
        row = np.concatenate([255 - test[int(k)] for k in rng.integers(0, 400, n)], axis=1).astype(np.float32)
        field = np.pad(row, ((6, 6), (8, 8)), constant_values=255)
        field[-3, :] = 0
        if i % 2:
            field[:, 2] = field[:, -3] = 0
        field = np.clip(field * rng.uniform(0.7, 0.95) + rng.normal(0, 4, field.shape), 0, 255)
        out.append(field.astype(np.uint8))
    return out


def outcomes(prepare, inputs) -> list:
    out = []
    for x in inputs:
        try:
            out.append(prepare(x))
        except (BlankImage, preprocess.FieldTooWide) as e:
            out.append(type(e).__name__)
    return out


def test_to_mnist_gives_what_it_gave_before_it_was_made_faster():
    """400 fixed scans against the 28x28 images the commit before the faster connected components
    and openings gave them (``tests/data/preprocess-before.npz``): the same pixels, the same blanks."""
    before = np.load(BEFORE)
    for i, (now, then, error) in enumerate(
        zip(outcomes(to_mnist, fixed_crops()), before["mnist"], before["mnist_errors"])
    ):
        if error:
            assert now == error, i
        else:
            assert isinstance(now, np.ndarray) and np.abs(now.astype(int) - then).max() <= 1, i


def test_to_strip_gives_what_it_gave_before_it_was_made_faster():
    before = np.load(BEFORE)
    starts = np.cumsum([0, *before["strip_widths"]])
    now = outcomes(preprocess.to_strip, fixed_fields())
    for i, (strip, error) in enumerate(zip(now, before["strip_errors"])):
        if error:
            assert strip == error, i
        else:
            then = before["strips"][:, starts[i] : starts[i + 1]].astype(int)
            assert np.abs((strip * 255).round().astype(int) - then).max() <= 1, i


def ink_box(img: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(img.any(1)), np.flatnonzero(img.any(0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32))


def on_paper(digit: np.ndarray, side: int = 100, at: int = 10, size: int = 80) -> np.ndarray:
    """The digit as dark ink, enlarged to ``size`` px, on a white page of ``side`` px."""
    page = np.full((side, side), 255, np.uint8)
    page[at : at + size, at : at + size] = np.asarray(Image.fromarray(255 - digit).resize((size, size)))
    return page


def test_mnist_digits_pass_almost_unchanged(digits, converted):
    assert converted.shape == digits.shape
    assert converted.dtype == np.uint8
    assert diff(converted, digits).mean() < 1.5  # measured 0.56 (most differ by a one-pixel shift at most)
    assert diff(converted, digits).mean(axis=(1, 2)).max() < 30  # vs ~44 between different digits


def test_output_is_centred_in_a_20_pixel_box(converted):
    centres = np.array([ndimage.center_of_mass(c.astype(np.float64)) for c in converted])
    assert np.abs(centres - preprocess.CENTRE).max() <= 1.0
    assert {max(ink_box(c)) for c in converted} <= {19, 20, 21}


def test_dark_ink_on_light_paper_gives_same_output(digits, converted):
    inverted = np.stack([to_mnist(255 - d) for d in digits])
    assert diff(inverted, converted).max() <= 1


def test_colour_scan_blue_ink_on_cream_paper(digits, converted):
    ink, paper = np.array([20, 40, 160]), np.array([245, 235, 200])
    for d, ref in zip(digits[:20], converted[:20]):
        a = d[..., None] / 255.0
        rgb = np.round(paper * (1 - a) + ink * a).astype(np.uint8)
        out = to_mnist(images.grayscale(Image.fromarray(rgb, "RGB")))
        assert diff(out, ref).max() <= 2


def test_size_invariance_200_px(digits, converted):
    big = np.stack(
        [
            to_mnist(np.asarray(Image.fromarray(d).resize((200, 200), Image.Resampling.BICUBIC)))
            for d in digits
        ]
    )
    assert diff(big, converted).mean() < 12  # measured 8.5; different digits differ by ~44
    corr = [np.corrcoef(b.ravel(), c.ravel())[0, 1] for b, c in zip(big, converted)]
    assert np.mean(corr) > 0.9
    assert min(corr) > 0.6


def test_aspect_ratio_is_kept_for_a_thin_bar():
    page = np.full((100, 100), 255, np.uint8)
    page[20:80, 45:55] = 0  # 60 tall, 10 wide
    h, w = ink_box(to_mnist(page))
    assert h == 20
    assert 3 <= w <= 4


@pytest.mark.parametrize("value", [0, 128, 255])
def test_uniform_paper_is_blank(value):
    with pytest.raises(BlankImage, match="^blank image$"):
        to_mnist(np.full((40, 30), value, np.uint8))


def test_faint_noise_below_contrast_threshold_is_blank():
    noise = np.random.default_rng(0).integers(230, 250, (50, 50)).astype(np.uint8)  # < 10 % of full scale
    with pytest.raises(BlankImage, match="^blank image$"):
        to_mnist(noise)
    assert issubclass(BlankImage, ValueError)  # decode_batch catches it as one


def test_speck_in_the_margin_is_ignored(digits):
    clean = on_paper(digits[0])
    specked = clean.copy()
    specked[2:4, 97] = 0
    # Without speck removal the dot would stretch the digit's box; with it, the output is unchanged.
    ink = preprocess.ink_on_black
    assert preprocess.fit_box(ink(specked)).shape != preprocess.fit_box(ink(clean)).shape
    assert np.array_equal(to_mnist(specked), to_mnist(clean))


def test_drop_specks_on_a_size_not_divisible_by_the_grid():
    ink = np.zeros((201, 130), np.float32)
    ink[50:150, 30:100] = 1.0
    ink[2, 2] = 1.0
    out = preprocess.drop_specks(ink)
    assert out.shape == ink.shape
    assert out[2, 2] == 0
    assert out[50:150, 30:100].min() == 1.0


def test_16_bit_and_float_input_match_uint8(digits, converted):
    for d, ref in zip(digits[:20], converted[:20]):
        gray16 = images.grayscale(Image.fromarray(d.astype(np.uint16) * 257))  # mode I;16 -> float32
        assert gray16.dtype == np.float32
        assert gray16.max() <= 1.0
        assert diff(to_mnist(gray16), ref).max() <= 1
        assert diff(to_mnist(d.astype(np.float64) / 255), ref).max() <= 1


def test_rejects_non_2d_or_tiny_input():
    with pytest.raises(ValueError, match="expected a 2-D image"):
        to_mnist(np.zeros((28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(1, 28\)"):
        to_mnist(np.zeros((1, 28), np.uint8))


def test_batch_keeps_shape_and_blank_images(digits, converted):
    x = np.concatenate([digits[:10], np.zeros((1, 28, 28), np.uint8)])
    out = preprocess.batch(x)
    assert out.shape == x.shape
    assert out.dtype == np.uint8
    assert np.array_equal(out[:10], converted[:10])
    assert not out[10].any()


def test_load_with_scan_preprocess():
    plain = datasets.load("mnist", limit_train=300, limit_test=100)
    scanned = datasets.load("mnist", limit_train=300, limit_test=100, scan_preprocess=True)
    for a, b in ((plain.train, scanned.train), (plain.val, scanned.val), (plain.test, scanned.test)):
        assert a.x.shape == b.x.shape
        assert b.x.dtype == np.uint8
        assert np.array_equal(a.y, b.y)
    assert np.array_equal(scanned.test.x, preprocess.batch(plain.test.x))
    assert not np.array_equal(scanned.test.x, plain.test.x)
