"""A scanned page registered to its template's reference: the transform that maps the page onto the
reference, and how well the form's print agrees once mapped.

ORB features of the page and of the reference are matched, and a similarity transform (rotation,
scale, shift) is fitted to the matches with RANSAC (OpenCV's ``estimateAffinePartial2D``), then
refined by ECC on the print's gradients (``findTransformECC``). ORB is rotation invariant, so a page
fed upside down registers like any other, as a turn of about 180 degrees. The quality ``score`` is the
share of the reference's printed strokes that the mapped page has ink on: a page of this form scores
near 1, a blank sheet, a letter or another form far lower, and a page under ``MIN_SCORE`` matches no
template. It is taken twice, and the better kept: over all the print, faint dropout colours included,
and over the black print alone (corner marks, titles, labels), which is all a bilevel scan keeps of a
form printed in a light dropout colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

WORK_WIDTH = 850  # registration runs on the reference and the page at about this width
FEATURES = 4000  # ORB keypoints per image
MIN_MATCHES = 12  # fewer RANSAC inliers than this: no transform at all
MIN_SCORE = 0.6  # a page whose form print agrees less than this matches no template
ECC_ITERATIONS = 60
PRINT_CONTRAST = 25  # grey levels under the paper: printed, however faint (a light dropout colour)
MIN_PRINT = 500  # work pixels: a tier with less print (a form with no black print) says nothing
BLACK_PRINT = 0.35  # of the paper's level: darker print is black, which every scan keeps


@dataclass(frozen=True)
class Registration:
    matrix: np.ndarray  # 2x3: a page pixel (x, y, 1) -> its reference pixel
    score: float  # the share of the reference's print the mapped page has ink on
    rotation: float  # degrees the page is turned against the reference
    scale: float  # page pixels per reference pixel
    shift: tuple[float, float]  # where the reference's origin lands on the page, in page pixels

    @property
    def matched(self) -> bool:
        return self.score >= MIN_SCORE

    def as_dict(self) -> dict:
        return {
            "score": round(self.score, 4),
            "rotation": round(self.rotation, 3),
            "scale": round(self.scale, 5),
            "shift_x": round(self.shift[0], 2),
            "shift_y": round(self.shift[1], 2),
        }


def ink_of(gray: np.ndarray) -> np.ndarray:
    """Dark strokes on paper, whatever the paper's tone: darker than the page's median by a margin."""
    paper = float(np.median(gray))
    return gray < paper - max(40.0, 0.25 * paper)


def print_of(gray: np.ndarray) -> np.ndarray:
    """Every printed pixel of a clean reference, faint ones too: darker than its paper by a little."""
    return gray < float(np.median(gray)) - PRINT_CONTRAST


class Reference:
    """A template's reference, prepared once per worker: its features and its print, at the work size."""

    def __init__(self, image: np.ndarray):
        self.size = (image.shape[1], image.shape[0])
        self.factor = WORK_WIDTH / image.shape[1]
        self.small = cv2.resize(image, None, fx=self.factor, fy=self.factor, interpolation=cv2.INTER_AREA)
        self.orb = cv2.ORB_create(FEATURES)
        self.keypoints, self.descriptors = self.orb.detectAndCompute(self.small, None)
        # (the print, how the mapped page shows ink) for all the print, then the black print alone
        self.tiers = (
            (print_of(self.small), lambda g: g < float(np.median(g)) - PRINT_CONTRAST),
            (self.small < BLACK_PRINT * float(np.median(self.small)), ink_of),
        )
        self.gradients = gradient(self.small)


def gradient(gray: np.ndarray) -> np.ndarray:
    """What ECC aligns: the strokes' edges, which handwriting and paper tone hardly move."""
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.5)
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


def register(page: np.ndarray, ref: Reference) -> Registration:
    """The page (grayscale uint8) registered to ``ref``; score 0 when nothing matches."""
    factor = WORK_WIDTH / page.shape[1]
    small = cv2.resize(page, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    keypoints, descriptors = ref.orb.detectAndCompute(small, None)
    if descriptors is None or ref.descriptors is None or len(keypoints) < MIN_MATCHES:
        return failed()
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(descriptors, ref.descriptors)
    if len(matches) < MIN_MATCHES:
        return failed()
    src = np.float32([keypoints[m.queryIdx].pt for m in matches])
    dst = np.float32([ref.keypoints[m.trainIdx].pt for m in matches])
    matrix, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=4000, confidence=0.999
    )
    if matrix is None or int(inliers.sum()) < MIN_MATCHES:
        return failed()
    matrix = refine(small, ref, matrix.astype(np.float32))
    mapped = cv2.warpAffine(
        small, matrix, (ref.small.shape[1], ref.small.shape[0]), flags=cv2.INTER_AREA, borderValue=255
    )
    score = max(agreement(mapped, printed, ink) for printed, ink in ref.tiers)
    # From the work sizes to full ones: page pixel -> small page -> small reference -> reference pixel.
    full = (
        np.diag([1 / ref.factor, 1 / ref.factor, 1.0])
        @ np.vstack([matrix, [0, 0, 1]])
        @ np.diag([factor, factor, 1.0])
    )
    return described(full[:2], score)


def agreement(mapped: np.ndarray, printed: np.ndarray, ink) -> float:
    """The share of the printed pixels the mapped page has ink on (within a pixel); 0 with no print."""
    if printed.sum() < MIN_PRINT:
        return 0.0
    found = cv2.dilate(ink(mapped).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float((found & printed).sum() / printed.sum())


def refine(small: np.ndarray, ref: Reference, matrix: np.ndarray) -> np.ndarray:
    """ECC on the strokes' edges, started from the feature match: the sub-pixel part of the transform.
    Kept only when it converges near where it started (a bad refinement never replaces a good match)."""
    warp = cv2.invertAffineTransform(matrix)  # ECC wants reference -> page
    try:
        _, found = cv2.findTransformECC(
            ref.gradients,
            gradient(small),
            warp.copy(),
            cv2.MOTION_AFFINE,
            (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-5),
            None,
            1,
        )
    except cv2.error:
        return matrix
    corners = np.float32(
        [
            [0, 0, 1],
            [ref.small.shape[1], 0, 1],
            [0, ref.small.shape[0], 1],
            [ref.small.shape[1], ref.small.shape[0], 1],
        ]
    )
    if np.abs(corners @ found.T - corners @ warp.T).max() > 4.0:  # work pixels: ~8 page pixels
        return matrix
    return cv2.invertAffineTransform(found)


def failed() -> Registration:
    return Registration(np.eye(2, 3), 0.0, 0.0, 1.0, (0.0, 0.0))


def described(matrix: np.ndarray, score: float) -> Registration:
    """The transform's rotation, scale and shift, as the page shows them (the inverse: reference -> page)."""
    inverse = cv2.invertAffineTransform(matrix.astype(np.float64))
    a, b = inverse[0, 0], inverse[1, 0]
    return Registration(
        matrix,
        score,
        math.degrees(math.atan2(b, a)),
        math.hypot(a, b),
        (float(inverse[0, 2]), float(inverse[1, 2])),
    )


def from_row(row: dict) -> Registration:
    """A page's registration again, from its row's ``registration`` (rotation, scale, shift), so that
    showing a page again needs no second search for the transform. The row keeps the similarity part
    only; ECC's residual shear, under a pixel, is left out."""
    a = math.radians(row["rotation"])
    c, s = row["scale"] * math.cos(a), row["scale"] * math.sin(a)
    inverse = np.array([[c, -s, row["shift_x"]], [s, c, row["shift_y"]]])
    return Registration(
        cv2.invertAffineTransform(inverse),
        row["score"],
        row["rotation"],
        row["scale"],
        (row["shift_x"], row["shift_y"]),
    )


def onto_reference(page: np.ndarray, reg: Registration, size: tuple[int, int]) -> np.ndarray:
    """The page mapped onto the reference's pixels (``size``: width, height), paper where it had none."""
    paper = [
        float(v) for v in np.median(page[::4, ::4].reshape(-1, page.shape[2] if page.ndim == 3 else 1), 0)
    ]
    return cv2.warpAffine(page, reg.matrix, size, flags=cv2.INTER_LINEAR, borderValue=paper)
