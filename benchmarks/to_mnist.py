"""Scoring's preprocessing alone (``preprocess.to_mnist``: contrast, specks, box, centre of mass), on one
thread, on the scans ``score_scale.py`` reads, and on the comb cells' kind of crop: larger, noisier.

    python benchmarks/to_mnist.py [--images 20000]

The scans are MNIST's test digits rendered as ``score_scale.py`` renders them (28 or 64 px, PNG or
JPEG), decoded once with Pillow; the crops are the same digits at 20 to 300 px on toned paper with
noise and a speck. Each set is run through ``to_mnist`` three times and the best taken. Its baseline
is the commit before the faster preprocessing, on the same images in the same run
(``old_and_new.py``); ``checksum`` must come out the same on both sides, the answers being the same::

    python benchmarks/old_and_new.py --old 759b6ab --rounds 2 \\
        --keys scan_us,crop_us,checksum -- benchmarks/to_mnist.py

The last line is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.append(str(Path(__file__).resolve().parents[1]))  # after PYTHONPATH: old_and_new.py's tree first

from hdr_dist.data import datasets, samples  # noqa: E402 - imported after sys.path is set
from hdr_dist.imaging import preprocess  # noqa: E402 - imported after sys.path is set


def scans(n: int) -> list[np.ndarray]:
    test = datasets.load("mnist").test.x
    out = []
    for i in range(n):
        size, fmt = (28, 64)[i % 2], ("PNG", "JPEG")[(i // 2) % 2]
        out.append(
            np.asarray(Image.open(io.BytesIO(samples.render(test[i % len(test)], size, fmt))).convert("L"))
        )
    return out


def crops(n: int, seed: int = 38) -> list[np.ndarray]:
    rng, test = np.random.default_rng(seed), datasets.load("mnist").test.x
    out = []
    for i in range(n):
        side = int(rng.integers(20, 300))
        img = np.asarray(Image.fromarray(255 - test[i % len(test)]).resize((side, side)), np.float32)
        img = img * rng.uniform(0.6, 0.95) + rng.uniform(0, 40) + rng.normal(0, 5, img.shape)
        y, x = rng.integers(0, side - 2, 2)
        img[y : y + 2, x : x + 2] = 20
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def timed(images: list[np.ndarray]) -> tuple[float, list]:
    """Microseconds a scan (the best of three passes) and the answers of the last."""
    best = float("inf")
    for _ in range(3):
        answers, start = [], time.perf_counter()
        for img in images:
            try:
                answers.append(preprocess.to_mnist(img))
            except preprocess.BlankImage:
                answers.append(None)
        best = min(best, time.perf_counter() - start)
    return best / len(images) * 1e6, answers


def checksum(answers: list) -> int:
    """The same number for the same answers (a blank counts as -1)."""
    weights = np.arange(1, 785, dtype=np.int64).reshape(28, 28)
    return int(
        sum(int((a.astype(np.int64) * weights).sum()) if a is not None else -1 for a in answers) % 1_000_003
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20000, help="scans (and a tenth as many crops)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    scan_us, scan_answers = timed(scans(args.images))
    crop_us, crop_answers = timed(crops(args.images // 10))
    found = {
        "images": args.images,
        "scan_us": round(scan_us, 1),
        "crop_us": round(crop_us, 1),
        "checksum": checksum(scan_answers + crop_answers),
        "preprocess": preprocess.__file__,
    }
    print(f"to_mnist on one thread: {scan_us:.0f} us a scan, {crop_us:.0f} us a crop", end="")
    print(f"; checksum {found['checksum']}")
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
