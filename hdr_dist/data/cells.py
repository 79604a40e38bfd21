"""What a form's comb cell does to a digit, made from MNIST digits in batches, for training.

``hdr forms`` cuts each cell out of a scanned form and brings it to MNIST space with
``preprocess.to_mnist`` (crop to the ink, long side to 20 px, centre of mass at (14, 14)). Real
cells show a digit things MNIST never does, and a reader trained on MNIST alone misreads them with
confidence: a fragment of the cell's wall left beside the digit (which also stretches the ink's box,
so the digit comes out smaller and off-centre), a digit cut off at the top or a side by the cell's
edge, a thick pen, JPEG blocks and ringing, a bilevel (thresholded, jagged) scan. ``cell_artefacts``
gives a random share of a batch those artefacts and then does what ``to_mnist`` does to a crop
(contrast, noise floor, crop, fit, centre of mass, bytes), so the model trains on what a cell gives.

Every step is a whole-batch tensor operation on the batch's device (the resize: two batched matrix
products), as ``augment`` is: no per-image PIL or NumPy work on the host.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from hdr_dist.imaging.preprocess import BOX, CENTRE, FIELD, MIN_SPECK, NOISE_FLOOR

PAD = 4  # canvas room around the 28x28 image, so a wall beside a digit near the edge still fits
BLOCK = 4  # JPEG's 8x8 blocks at a scan of about twice MNIST's resolution, as seen at 28x28
SAMPLEWISE = np.zeros((3, 3, 3), bool)  # ndimage.label's neighbours: 8-connected within a sample only
SAMPLEWISE[1] = True


@dataclass(frozen=True)
class CellStyle:
    """How often each artefact hits a sample made into a cell, and how hard. A sample may take several;
    ``jpeg`` and ``bilevel`` exclude each other (a bilevel scan is not JPEG-compressed)."""

    wall: float = 0.5  # a bar of the cell's wall beside the digit's box
    cut: float = 0.35  # the top, left or right of the ink cut off by the cell's edge
    thick: float = 0.3  # strokes dilated 3x3: a felt pen
    jpeg: float = 0.25  # 4x4-block DCT quantisation, with noise near the ink
    bilevel: float = 0.25  # thresholded at a random level
    wall_width: tuple[int, int] = (1, 3)  # pixels across the bar
    wall_gap: tuple[int, int] = (0, 3)  # pixels between the digit's box and the bar
    cut_share: tuple[float, float] = (0.10, 0.25)  # of the ink's rows (or columns) removed
    jpeg_step: tuple[float, float] = (0.05, 0.30)  # quantiser step of the DC coefficient, [0, 1] scale
    noise: tuple[float, float] = (0.0, 0.05)  # standard deviation of the noise, [0, 1] scale
    threshold: tuple[float, float] = (0.25, 0.65)  # bilevel level, [0, 1] scale


def cell_artefacts(
    x: torch.Tensor, share: float, generator: torch.Generator | None = None, style: CellStyle = CellStyle()
) -> torch.Tensor:
    """``x`` (N, 1, 28, 28, ink 1 on 0) with a random ``share`` of its samples made cells; the rest, and
    the whole batch when ``share`` is 0 (which draws nothing from ``generator``), as they were."""
    if share <= 0:
        return x
    picked = (torch.rand(len(x), generator=generator, device=x.device) < share).nonzero().squeeze(1)
    if picked.numel() == 0:
        return x
    out = x.clone()
    out[picked] = as_cells(x[picked], style, generator)
    return out


def as_cells(x: torch.Tensor, style: CellStyle, generator: torch.Generator | None = None) -> torch.Tensor:
    """Every sample of ``x`` through a cell: the pen, the cell's edge and wall, the scan, ``to_mnist``.
    Each artefact is made only for the samples its draw picks, so its cost follows its share."""
    n, dev = len(x), x.device

    def draw():
        return torch.rand(n, generator=generator, device=dev)

    def where(hit, artefact, *args):
        picked = hit.nonzero().squeeze(1)
        return x.index_copy(0, picked, artefact(x[picked], *args)) if picked.numel() else x

    x = where(draw() < style.thick, dilate)
    x = F.pad(x, (PAD, PAD, PAD, PAD))
    x = where(draw() < style.cut, cut, style.cut_share, generator)
    x = where(draw() < style.wall, wall, style, generator)
    scan = draw()
    x = where(scan < style.jpeg, jpeg, style, generator)
    x = where(
        (scan >= style.jpeg) & (scan < style.jpeg + style.bilevel), binarise, style.threshold, generator
    )
    return to_mnist(x)


def draws(n: int, k: int, generator, device) -> list[torch.Tensor]:
    """``k`` uniform draws on [0, 1) per sample, as ``k`` (N,) vectors from one call: on a shared CPU
    every small tensor op costs tens of microseconds, so the artefacts draw once each."""
    return list(torch.rand(k, n, generator=generator, device=device).unbind(0))


def scaled(u: torch.Tensor, span: tuple[float, float]) -> torch.Tensor:
    return span[0] + (span[1] - span[0]) * u


def whole(u: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
    """Whole numbers from ``span``, both ends included."""
    return span[0] + (u * (span[1] - span[0] + 1)).long()


def ink_box(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """First and last row and column holding ink (> 0), each (N,); a blank sample gets an empty box
    (first > last)."""
    h, w = x.shape[-2:]
    rows, cols = x.flatten(1, 2).amax(2) > 0, x.flatten(1, 2).amax(1) > 0  # (N, H), (N, W)
    r, c = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    return (
        torch.where(rows, r, h).amin(1),
        torch.where(rows, r, -1).amax(1),
        torch.where(cols, c, w).amin(1),
        torch.where(cols, c, -1).amax(1),
    )


def spans(lo: torch.Tensor, hi: torch.Tensor, size: int) -> torch.Tensor:
    """(N, size): which of ``size`` indices lie in each sample's [lo, hi]."""
    at = torch.arange(size, device=lo.device)
    return (at >= lo.unsqueeze(1)) & (at <= hi.unsqueeze(1))


def rectangles(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(N, H) and (N, W) masks -> (N, 1, H, W): where both hold."""
    return (rows.unsqueeze(2) & cols.unsqueeze(1)).unsqueeze(1)


def dilate(x: torch.Tensor) -> torch.Tensor:
    """The 3x3 maximum around each pixel of (..., H, W), values >= 0: as ``max_pool2d(x, 3, 1, 1)``, but
    as four shifted maxima, which on one CPU thread took 0.3 ms for 102 canvases of 36x36 against
    max_pool2d's 9 ms."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def cut(x: torch.Tensor, share: tuple[float, float], generator=None) -> torch.Tensor:
    """The cell's edge through the digit: the top half the time, else the left or the right, removes
    ``share`` of the ink's rows or columns, leaving strokes that end on a straight line."""
    n, _, h, w = x.shape
    r0, r1, c0, c1 = ink_box(x)
    part, side = draws(n, 2, generator, x.device)
    part = scaled(part, share)
    top, left, right = side < 0.5, (side >= 0.5) & (side < 0.75), side >= 0.75
    drop_rows = torch.ceil(part * (r1 - r0 + 1)).long() * top
    drop_cols = torch.ceil(part * (c1 - c0 + 1)).long()
    keep_rows = spans(r0 + drop_rows, r1, h)  # outside the ink's box there is nothing to keep
    keep_cols = spans(c0 + drop_cols * left, c1 - drop_cols * right, w)
    return x * rectangles(keep_rows, keep_cols)


def wall(x: torch.Tensor, style: CellStyle, generator=None) -> torch.Tensor:
    """A bar of the cell's wall, ``wall_width`` across, ``wall_gap`` from the digit's box on a random
    side, grey to black; half the time as long as that side of the box and a little more (the wall
    runs past the digit), else a random 30 to 90 % stretch of it."""
    n, _, h, w = x.shape
    r0, r1, c0, c1 = ink_box(x)
    u = draws(n, 8, generator, x.device)
    width, gap = whole(u[0], style.wall_width), whole(u[1], style.wall_gap)
    side = whole(u[2], (0, 3))  # top, bottom, left, right
    level, full = scaled(u[3], (0.5, 1.0)), u[4] < 0.5
    overhang, share, offset = whole(u[5], (0, 2)), scaled(u[6], (0.3, 0.9)), u[7]
    # Across the bar: where it starts beside the box; along it: the box's side, or a stretch of it.
    across = torch.stack([r0 - gap - width, r1 + gap + 1, c0 - gap - width, c1 + gap + 1], 1)
    across = across.gather(1, side.unsqueeze(1)).squeeze(1)
    horizontal = side < 2
    lo, hi = torch.where(horizontal, c0, r0), torch.where(horizontal, c1, r1)
    length = (hi - lo + 1).float()
    part = (length * share).round().long().clamp(min=1)
    start = lo + ((length - part) * offset).long()
    along_lo = torch.where(full, lo - overhang, start)
    along_hi = torch.where(full, hi + overhang, start + part - 1)
    bar, stretch = torch.stack([across, across + width - 1]), torch.stack([along_lo, along_hi])
    rows, cols = torch.where(horizontal, bar, stretch), torch.where(horizontal, stretch, bar)
    return torch.maximum(x, rectangles(spans(*rows, h), spans(*cols, w)) * level.view(n, 1, 1, 1))


@functools.lru_cache(maxsize=8)
def dct_parts(h: int, w: int, block: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """JPEG's transform, the orthonormal DCT-II of each ``block`` x ``block`` block of an (h, w) image,
    as two matrices (``rows @ image @ cols.T`` transforms every block at once), and each coefficient's
    frequency u + v; made once per shape and device."""
    k = torch.arange(block, dtype=torch.float32).view(-1, 1)
    i = torch.arange(block, dtype=torch.float32).view(1, -1)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * block)) * math.sqrt(2 / block)
    d[0] /= math.sqrt(2)
    rows, cols = torch.kron(torch.eye(h // block), d), torch.kron(torch.eye(w // block), d)
    freq = torch.arange(h).view(-1, 1) % block + torch.arange(w).view(1, -1) % block
    return rows.to(device), cols.to(device), freq.to(device)


def jpeg(x: torch.Tensor, style: CellStyle, generator=None) -> torch.Tensor:
    """JPEG's loss without its entropy coding: noise on the blocks that hold ink (noise elsewhere is
    paper, which ``to_mnist``'s noise floor and speck filter remove), each block's DCT coefficients
    quantised with a step that grows with frequency, as JPEG's tables do: blocks and ringing."""
    n, _, h, w = x.shape
    b = BLOCK
    inked = F.max_pool2d(x, b).repeat_interleave(b, 2).repeat_interleave(b, 3) > 0
    sigma, step = draws(n, 2, generator, x.device)
    sigma, step = scaled(sigma, style.noise).view(n, 1, 1, 1), scaled(step, style.jpeg_step).view(n, 1, 1, 1)
    x = x + torch.randn(x.shape, generator=generator, device=x.device) * sigma * inked
    rows, cols, freq = (t.to(x.dtype) for t in dct_parts(h, w, b, str(x.device)))
    coef = (rows @ x) @ cols.T
    table = step * (1 + freq)
    coef = torch.round(coef / table) * table
    return ((rows.T @ coef) @ cols).clamp(0, 1)


def binarise(x: torch.Tensor, level: tuple[float, float], generator=None) -> torch.Tensor:
    """A bilevel scan: ink where the digit is darker than a random level, paper elsewhere."""
    (t,) = draws(len(x), 1, generator, x.device)
    return (x > scaled(t, level).view(-1, 1, 1, 1)).to(x.dtype)


def drop_specks(x: torch.Tensor) -> torch.Tensor:
    """``preprocess.drop_specks`` over a batch (N, H, W): blobs of ink (8-connected) holding less than
    MIN_SPECK of their sample's ink go. JPEG's ringing leaves such specks in the corners of a stroke's
    blocks, and to_mnist drops them before it takes the ink's box (in 172 of 200 JPEG'd digits the
    box differed without this). One ``ndimage.label`` call labels the whole batch (its structure
    joins no two samples) in about a millisecond, where spreading labels by max-pooling in torch
    took 36 passes and 60 ms on one CPU thread for 102 samples; on a GPU it costs a copy each way."""
    ink = x.detach().float().cpu().numpy()
    n = len(ink)
    labels, count = ndimage.label(ink > 0, structure=SAMPLEWISE)
    if count == 0:
        return x
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)
    # Labels run in raster order, so sample i's are those above the last label of sample i - 1.
    last = np.maximum.accumulate(labels.reshape(n, -1).max(1))
    sample = np.searchsorted(last, np.arange(count + 1))
    total = np.bincount(sample[1:], weights=mass[1:], minlength=n)
    keep = mass >= MIN_SPECK * total[np.minimum(sample, n - 1)]
    keep[0] = False  # paper
    return x * torch.from_numpy(keep[labels]).to(x.device)


def resize_weights(first, last, size, offset, field: int, span: int) -> torch.Tensor:
    """(N, field, span) weights taking the source pixels ``first``..``last`` (N,) to ``size`` (N,) output
    pixels starting at ``offset`` (N,): Pillow's BILINEAR resize of that crop, whose triangle widens
    with the shrink (its anti-aliasing) and whose weights are normalised within the crop."""
    dev = first.device
    o = torch.arange(field, device=dev, dtype=torch.float32) - offset.float().view(-1, 1)  # in the digit
    j = torch.arange(span, device=dev, dtype=torch.float32) - first.float().view(-1, 1)  # in the crop
    length = (last - first + 1).clamp(min=1).float().view(-1, 1)
    size = size.float().view(-1, 1)
    step = length / size  # source pixels per output pixel
    widen = step.clamp(min=1)
    t = ((j + 0.5) / widen).unsqueeze(1) - ((o + 0.5) * step / widen).unsqueeze(2)
    inside = ((o >= 0) & (o < size)).unsqueeze(2) & ((j >= 0) & (j < length)).unsqueeze(1)
    weights = (1 - t.abs()).clamp(min=0) * inside
    return weights / weights.sum(2, keepdim=True).clamp(min=1e-12)


def to_mnist(x: torch.Tensor) -> torch.Tensor:
    """``preprocess.to_mnist`` over a batch of crops (N, 1, H, W, ink 1 on 0) -> (N, 1, 28, 28): the
    brightest ink to 1, pixels under the noise floor to 0, the ink's box resized to a long side of
    BOX pixels (each side rounded, as Pillow's resize makes it), its centre of mass put on CENTRE by
    a whole-pixel shift that keeps it inside the field, and bytes. A blank sample comes out blank.
    The resize is two batched matrix products, so the whole batch costs a few small matmuls."""
    n, _, h, w = x.shape
    x = x.clamp(0, 1)
    x = x / x.amax((1, 2, 3), keepdim=True).clamp(min=1e-6)
    x = drop_specks(torch.where(x < NOISE_FLOOR, torch.zeros_like(x), x)[:, 0])
    r0, r1, c0, c1 = ink_box(x.unsqueeze(1))
    # The sizes as fit_box's Python floats make them, ties rounded to even: in float32 a side of 15 in
    # a box of 24 is 12.500001 (13, not 12), and torch's ``20 / tensor`` multiplies by 1 / 24, which
    # makes a side of 9 7.4999 (7, not 8): a column less in 1 of 1,000 digits.
    box_h, box_w = (r1 - r0 + 1).clamp(min=1).double(), (c1 - c0 + 1).clamp(min=1).double()
    long_side = torch.maximum(box_h, box_w)
    scale = torch.full_like(long_side, BOX) / long_side
    out_h, out_w = (box_h * scale).round().clamp(min=1).float(), (box_w * scale).round().clamp(min=1).float()

    first, last, size = torch.cat([r0, c0]), torch.cat([r1, c1]), torch.cat([out_h, out_w])

    def weights(top, left):  # the rows' and the columns' in one call: half the small ops
        both = resize_weights(first, last, size, torch.cat([top, left]), FIELD, max(h, w)).to(x.dtype)
        return both[:n, :, :h], both[n:, :, :w]

    # The resized digit at the field's corner, as its row and column sums only: its centre of mass.
    # The weights are convex, so the resize stays in [0, 1] and to_mnist's clip changes nothing.
    zero = torch.zeros(n, device=x.device)
    rows, cols = weights(zero, zero)
    at = torch.arange(FIELD, device=x.device, dtype=x.dtype)
    row_sums = (rows @ (x @ cols.sum(1).unsqueeze(2))).squeeze(2)
    col_sums = (cols @ (x.transpose(1, 2) @ rows.sum(1).unsqueeze(2))).squeeze(2)
    mass = row_sums.sum(1).clamp(min=1e-12)
    top = torch.minimum((CENTRE - row_sums @ at / mass).round().clamp(min=0), FIELD - out_h)
    left = torch.minimum((CENTRE - col_sums @ at / mass).round().clamp(min=0), FIELD - out_w)
    rows, cols = weights(top, left)
    resized = rows @ x @ cols.transpose(1, 2)
    return ((resized * 255).round() / 255).unsqueeze(1)
