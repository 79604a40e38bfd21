"""The segmentation baseline for fields: cut a field into its connected blobs of ink and read each
one with a digit model.

It is what one would write without a sequence model, and it is measured on the same fields as
``crnn`` so that the sequence model's gain is a figure, not an assumption. It fails where
digits touch or overlap (one blob, one answer) and where a digit breaks into pieces that do
not overlap in width.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hdr_dist.imaging import preprocess

INK = 0.25  # a pixel at least this bright (of 1) is ink
MIN_SHARE = 0.03  # blobs with less of the field's ink than this are specks
OVERLAP = 0.5  # blobs sharing this share of the narrower one's columns are one digit (a broken stroke)


def blobs(strip: np.ndarray) -> list[np.ndarray]:
    """A white-on-black strip -> one image per digit-like blob, left to right, each holding
    only that blob's ink."""
    labels, n = ndimage.label(strip > INK, structure=np.ones((3, 3)))
    if n == 0:
        return []
    ink = ndimage.sum(strip, labels, index=np.arange(1, n + 1))
    spans = [(s[1].start, s[1].stop) for s in ndimage.find_objects(labels)]
    keep = [i for i in range(n) if ink[i] >= MIN_SHARE * ink.sum()]
    groups: list[list[int]] = []
    for i in sorted(keep, key=lambda i: spans[i][0]):
        if groups:
            a0, a1 = min(spans[j][0] for j in groups[-1]), max(spans[j][1] for j in groups[-1])
            b0, b1 = spans[i]
            shared = min(a1, b1) - max(a0, b0)
            if shared >= OVERLAP * min(a1 - a0, b1 - b0):
                groups[-1].append(i)
                continue
        groups.append([i])
    return [np.where(np.isin(labels, [j + 1 for j in g]), strip, 0).astype(np.float32) for g in groups]


def digit_images(strip: np.ndarray) -> np.ndarray:
    """Each blob in MNIST space, as the digit model was trained: (blobs, 28, 28) uint8."""
    out = [preprocess.to_mnist(b) for b in blobs(strip)]
    return np.stack(out) if out else np.zeros((0, 28, 28), np.uint8)
