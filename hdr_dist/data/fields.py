"""Synthetic numeric fields (ZIP codes, amounts, account numbers) made from real handwritten digits.

A field is a row of MNIST digits of one split only, so no test digit ever
reaches training. What varies is what varies on real forms: the spacing (from
gaps to overlapping, touching digits), each digit's scale, baseline, slant and
stroke width; and, on a scan, the printed lines around the writing (a comb of
boxes, an underline, a frame) and the paper.

``strips`` makes a batch in the space the ``crnn`` reads: what scoring's
preprocessing (``preprocess.to_strip``) leaves of a scan, white ink on black,
cut to the ink and scaled to a fixed height, any width. ``scans`` makes the
scans themselves, lines and paper included, to test that path end to end. Every
per-digit transform is one batched ``affine_grid`` call, as in ``augment``, so
fields are cheap enough to make on the Ray Train workers, each from its own
shard, for every step.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hdr_dist.imaging import preprocess

HEIGHT = preprocess.STRIP_HEIGHT  # MNIST's 28-row canvas sits inside with room for the baseline to move
MARGIN = 4  # columns of paper before the first and after the last digit
MAX_DIGITS = 12
LINES = ("underline", "frame", "comb")


@dataclass(frozen=True)
class FieldStyle:
    """How much each property varies; one draw per digit."""

    gap: tuple[int, int] = (-4, 6)  # columns between one digit's ink and the next's: < 0 overlaps
    scale: tuple[float, float] = (0.75, 1.1)
    baseline: int = 2  # rows each digit moves up or down (HEIGHT - 28 = 4 to spare)
    slant: float = 0.3  # horizontal shear, drawn from [-slant, slant]
    rotation: float = 6.0  # degrees
    stroke: float = 0.3  # share of digits thickened, and as many thinned


def transform(digits: torch.Tensor, style: FieldStyle, generator: torch.Generator) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) float: each digit scaled, slanted, rotated, its stroke changed."""
    x = digits.float().div(255).unsqueeze(1)
    n = len(x)

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=generator)

    scale, shear = uniform(*style.scale), uniform(-style.slant, style.slant)
    angle = uniform(-1, 1) * math.radians(style.rotation)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # The inverse map affine_grid wants: output point -> input point (a rotation, a shear, a scale).
    theta = torch.stack(
        [
            torch.stack([cos, -sin + shear / scale, torch.zeros(n)], 1),
            torch.stack([sin, cos, torch.zeros(n)], 1),
        ],
        1,
    )
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    which = torch.rand(n, generator=generator)
    thick, thin = which < style.stroke, which > 1 - style.stroke
    if thick.any():
        x[thick] = F.max_pool2d(x[thick], 3, stride=1, padding=1)
    if thin.any():
        x[thin] = 0.5 * x[thin] - 0.5 * F.max_pool2d(-x[thin], 3, stride=1, padding=1)  # half eroded
    return x


def ink_columns(canvases: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 2): each canvas's first and last column of ink + 1 (the middle four if blank)."""
    on = canvases.max(1) > 0.15
    left, right = on.argmax(1), 28 - on[:, ::-1].argmax(1)
    blank = ~on.any(1)
    return np.stack([np.where(blank, 12, left), np.where(blank, 16, right)], 1)


def lines(
    strip: np.ndarray, bounds: list[tuple[int, int]], kind: str, level: float, rng: np.random.Generator
) -> None:
    """Trace a form's printed lines into ``strip`` (white on black) at ``level``: an ``underline``, a
    ``frame`` round the field, or a ``comb`` (a frame with a wall between each two digits)."""
    h, w = strip.shape
    bottom = int(rng.integers(h - 3, h))
    strip[bottom] = np.maximum(strip[bottom], level)  # all three have a bottom line
    if kind != "underline":
        top = int(rng.integers(0, 3))
        strip[top] = np.maximum(strip[top], level)
        walls = [0, w - 1] + (
            [(a[1] + b[0]) // 2 for a, b in zip(bounds, bounds[1:])] if kind == "comb" else []
        )
        for c in walls:
            strip[:, c] = np.maximum(strip[:, c], level)


def compose(canvases: np.ndarray, style: FieldStyle, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """One field's digits (each a 28x28 canvas, white on black) -> a HEIGHT-row strip, and where
    each digit's ink lies (first and last column + 1)."""
    boxes = ink_columns(canvases)
    gaps = rng.integers(style.gap[0], style.gap[1] + 1, len(canvases))
    shifts = rng.integers(-style.baseline, style.baseline + 1, len(canvases))
    strip = np.zeros(
        (HEIGHT, (28 + max(style.gap[1], 0)) * (len(canvases) + 2)), np.float32
    )  # 28 spare at each end
    x, bounds = 28 + MARGIN, []
    for canvas, (left, right), gap, shift in zip(canvases, boxes.tolist(), gaps, shifts):
        start, top = x - left, (HEIGHT - 28) // 2 + int(shift)
        region = strip[top : top + 28, start : start + 28]
        np.maximum(region, canvas, out=region)
        bounds.append((x - 28, x - 28 + right - left))
        x += right - left + max(int(gap), -(right - left) // 3)  # overlap by at most a third of a digit
    width = bounds[-1][1] + 2 * MARGIN
    strip = strip[:, 28 : 28 + width]
    return strip, bounds


def normalised(strip: np.ndarray) -> np.ndarray:
    """A composed field as scoring's preprocessing leaves a scan of it: cut to its ink, scaled."""
    try:
        return preprocess.fit_strip(np.where(strip > preprocess.NOISE_FLOOR, strip, 0.0))
    except preprocess.BlankImage:  # a field of digits so faint that nothing is left: keep it as it was
        return strip


def lengths(n: int, rng: np.random.Generator, low: int = 1, high: int = MAX_DIGITS) -> np.ndarray:
    return rng.integers(low, high + 1, n)


def per_epoch(digits: int) -> int:
    """Fields of 1 to MAX_DIGITS digits that use ``digits`` digits about once each."""
    return max(1, digits * 2 // (MAX_DIGITS + 1))


def picks_of(order: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """Consecutive runs of ``order`` of the given lengths, starting over when it runs out."""
    flat = np.resize(order, int(counts.sum()))
    return np.split(flat, np.cumsum(counts)[:-1])


def strips(
    x: torch.Tensor,
    y: torch.Tensor,
    picks: list[np.ndarray],
    style: FieldStyle,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One field per entry of ``picks`` (indices into ``x``/``y``, one split's digits): strips and labels."""
    flat = torch.from_numpy(np.concatenate(picks))
    canvases = transform(x[flat], style, generator)[:, 0].numpy()
    labels = y[flat].numpy()
    out, digits, at = [], [], 0
    for p in picks:
        out.append(normalised(compose(canvases[at : at + len(p)], style, rng)[0]))
        digits.append(labels[at : at + len(p)])
        at += len(p)
    return out, digits


def pad(images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Strips of any width -> (N, 1, HEIGHT, widest) float, zero-padded on the right, and the widths."""
    widths = torch.tensor([im.shape[1] for im in images])
    batch = torch.zeros(len(images), 1, HEIGHT, int(widths.max()))
    for i, im in enumerate(images):
        batch[i, 0, :, : im.shape[1]] = torch.from_numpy(im)
    return batch, widths


def fixed_set(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    counts: np.ndarray | None = None,
    style: FieldStyle = FieldStyle(),
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A seeded set of fields, the same on every machine and run (validation and test sets): each
    digit of the split once, in fields of ``counts`` digits (default: 1 to MAX_DIGITS, at random)."""
    rng = np.random.default_rng(seed)
    counts = lengths(per_epoch(len(y)), rng) if counts is None else counts
    picks = picks_of(rng.permutation(len(y)), counts)
    return strips(
        torch.from_numpy(x), torch.from_numpy(y), picks, style, rng, torch.Generator().manual_seed(seed)
    )


def scans(
    x: np.ndarray, y: np.ndarray, picks: list[np.ndarray], heights: list[int], formats: list[str], seed: int
) -> Iterator[tuple[str, bytes]]:
    """Fields as a scanner gives them: dark ink on light paper, ``heights[i]`` pixels high, with a
    form's printed lines at full strength (or none), encoded as ``formats[i]`` (PNG or JPEG):
    (digit string, file bytes) per field. In a comb, each digit has its box: none overlaps a wall."""
    rng = np.random.default_rng(seed)
    style = FieldStyle()
    canvases = transform(
        torch.from_numpy(x[np.concatenate(picks)]), style, torch.Generator().manual_seed(seed)
    )
    canvases, at = canvases[:, 0].numpy(), 0
    boxed = dataclasses.replace(style, gap=(3, style.gap[1] + 2))  # a comb holds one digit per box
    for p, height, fmt in zip(picks, heights, formats):
        kind = rng.integers(len(LINES) + 1)
        strip, bounds = compose(
            canvases[at : at + len(p)], boxed if kind == LINES.index("comb") else style, rng
        )
        at += len(p)
        if kind < len(LINES):
            lines(strip, bounds, LINES[kind], 1.0, rng)
        paper = rng.uniform(215, 250) - rng.normal(0, 6, strip.shape)
        gray = np.clip(paper - strip * (paper - rng.uniform(10, 70)), 0, 255).astype(np.uint8)
        image = Image.fromarray(gray).resize(
            (round(strip.shape[1] * height / HEIGHT), height), Image.Resampling.BICUBIC
        )
        out = io.BytesIO()
        image.save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        yield "".join(str(d) for d in y[p]), out.getvalue()
