"""Scoring's decode stage: Pillow against ``torchvision.io.decode_image``, on the same scans.

    pip install torchvision; python benchmarks/decode_stage.py [--images 4000]

hdr-dist decodes with Pillow. ``torchvision.io.decode_image`` (libpng, libjpeg-turbo)
would only replace the decoding step of PNGs and JPEGs: the stage also reads each
header with Pillow first (the pixel limit is checked before any pixel is
decoded), handles TIFF, BMP and GIF pages, and preprocesses every page to MNIST
space. This benchmark times, on one thread and the same in-memory files, (a)
Pillow's decode to grayscale, (b) torchvision's, and (c) the whole decode stage
as it runs (Pillow, then preprocessing), so the ratio of (b) to (a) can be read
against what decoding is of the stage. The last line is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from hdr_dist.data import datasets, samples
from hdr_dist.imaging import images

SIZES, FORMATS = (28, 64, 200), ("PNG", "JPEG")


def rate(fn, blobs: list[bytes]) -> float:
    start = time.perf_counter()
    for b in blobs:
        fn(b)
    return len(blobs) / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=4000)
    args = p.parse_args()
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        print("torchvision is not installed (hdr-dist does not depend on it): pip install torchvision")
        return 2
    torch.set_num_threads(1)
    ds = datasets.load("mnist", limit_test=args.images)
    blobs = [samples.render(x, SIZES[i % 3], FORMATS[i % 2]) for i, x in enumerate(ds.test.x)]

    def pillow(b):
        return images.grayscale(Image.open(io.BytesIO(b)))

    def tv(b):
        return decode_image(torch.frombuffer(bytearray(b), dtype=torch.uint8), mode=ImageReadMode.GRAY)[
            0
        ].numpy()

    def stage(b):
        for *_, gray, _ in images.decode(b):
            images.to_mnist(gray)

    assert all(np.array_equal(pillow(b), tv(b)) for b in blobs[:50:2])  # the PNGs: the same pixels
    pillow_rate = (rate(pillow, blobs) + rate(pillow, blobs)) / 2
    tv_rate = (rate(tv, blobs) + rate(tv, blobs)) / 2
    stage_rate = rate(stage, blobs)
    share = stage_rate / pillow_rate  # the part of the stage's time that decoding is
    best_gain = 1 / (1 - share * (1 - pillow_rate / tv_rate))
    print(f"(a) Pillow decode:      {pillow_rate:,.0f} img/s")
    print(f"(b) torchvision decode: {tv_rate:,.0f} img/s ({tv_rate / pillow_rate:.2f}x Pillow)")
    print(
        f"(c) whole decode stage: {stage_rate:,.0f} img/s; decoding is {100 * share:.0f} % of it, so "
        f"torchvision would make the stage at most {best_gain:.2f}x faster"
    )
    print(
        json.dumps(
            {
                "images": len(blobs),
                "pillow_images_per_s": round(pillow_rate, 1),
                "torchvision_images_per_s": round(tv_rate, 1),
                "ratio": round(tv_rate / pillow_rate, 3),
                "stage_images_per_s": round(stage_rate, 1),
                "decode_share": round(share, 3),
                "stage_gain_at_most": round(best_gain, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
