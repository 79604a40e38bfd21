"""A scanned page registered to its template's reference: the transform that maps the page onto the
reference, and how well the form's print agrees once mapped.

Coarse to fine, on the page brought to about the reference's work size (``WORK_WIDTH``, by area, so a
page turned a quarter registers like an upright one): ORB features matched by their nearest neighbour
with Lowe's ratio test give a similarity transform (rotation, scale, shift) by RANSAC
(``estimateAffinePartial2D``); then small windows of the reference's print, chosen once where it has
corners and spread over the page, are found on the mapped page by phase correlation, and an affine
transform is fitted to where they lie (sub-pixel; what a scanner's skew adds). ORB is rotation
invariant, so a page fed upside down registers like any other, as a turn of about 180 degrees. The
quality ``score`` is the share of the reference's printed strokes that the mapped page has ink on: a
page of this form scores near 1, a blank sheet, a letter or another form far lower, and a page under
``MIN_SCORE`` matches no template. It is taken twice, and the better kept: over all the print, faint
dropout colours included, and over the black print alone (corner marks, titles, labels), which is all a
bilevel scan keeps of a form printed in a light dropout colour.

Every resize maps pixel centres as OpenCV places them (``scaling``): ignoring the half pixel cost up to
a reference pixel at the corners of an upside-down page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

WORK_WIDTH = 850  # registration runs on the reference and the page at about this width
# ORB keypoints per image. On 60 pages of 5 layouts at 100-400 dpi, turned any way, grey, bilevel and
# JPEG: 1,500 registered all of them; 1,000 lost a bilevel 400-dpi page. Brute-force matching costs
# their product: 4,000 (as before) took 71 ms a page, 1,500 about 6 ms.
FEATURES = 1500
RATIO = 0.8  # Lowe's ratio test: a match this much nearer than the second best is kept
MIN_MATCHES = 12  # fewer RANSAC inliers than this: no transform at all
MIN_SCORE = 0.6  # a page whose form print agrees less than this matches no template
PRINT_CONTRAST = 25  # grey levels under the paper: printed, however faint (a light dropout colour)
MIN_PRINT = 500  # work pixels: a tier with less print (a form with no black print) says nothing
BLACK_PRINT = 0.35  # of the paper's level: darker print is black, which every scan keeps
# The fine step: windows of PATCH work pixels (about 12 mm of the page) at the strongest corner of the
# print in each cell of a GRID x GRID grid, found on the page by phase correlation. A window whose
# peak is weaker than MIN_RESPONSE (ink a bilevel scan lost, a digit over it) is left out, and the
# affine fit needs MIN_ANCHORS of them within FIT_TOLERANCE work pixels, else the coarse transform
# stands. It replaced 60 iterations of ECC at the work size (0.17-0.82 s a page), and cut the error at
# the zones' corners to a quarter (benchmarks/registration.py).
PATCH = 48
GRID = 5
MIN_RESPONSE = 0.1
MIN_ANCHORS = 6
FIT_TOLERANCE = 1.0


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


def paper_of(gray: np.ndarray) -> float:
    """The page's paper level: the median grey, read off its histogram rather than sorted."""
    counts = np.cumsum(np.bincount(gray.ravel(), minlength=256))
    return float(np.searchsorted(counts, counts[-1] / 2))


def ink_of(gray: np.ndarray, paper: float) -> np.ndarray:
    """Dark strokes on paper, whatever the paper's tone: darker than the paper by a margin."""
    return gray < paper - max(40.0, 0.25 * paper)


def faint_of(gray: np.ndarray, paper: float) -> np.ndarray:
    """Every mark darker than the paper by a little: print in a light dropout colour too."""
    return gray < paper - PRINT_CONTRAST


def print_of(gray: np.ndarray) -> np.ndarray:
    """Every printed pixel of a clean reference, faint ones too."""
    return faint_of(gray, float(np.median(gray)))


def scaling(f: float) -> np.ndarray:
    """A resize by ``f`` as a 3x3 matrix on pixel centres, as OpenCV's resize and warps place them."""
    return np.array([[f, 0, 0.5 * f - 0.5], [0, f, 0.5 * f - 0.5], [0, 0, 1.0]])


class Reference:
    """A template's reference, prepared once per worker: its features, its print and the windows of
    its print the fine step looks for, all at the work size."""

    def __init__(self, image: np.ndarray):
        self.size = (image.shape[1], image.shape[0])
        self.factor = WORK_WIDTH / image.shape[1]
        self.small = cv2.resize(image, None, fx=self.factor, fy=self.factor, interpolation=cv2.INTER_AREA)
        self.orb = cv2.ORB_create(FEATURES)
        self.keypoints, self.descriptors = self.orb.detectAndCompute(self.small, None)
        # (the print, how the mapped page shows ink) for all the print, then the black print alone
        self.tiers = (
            (print_of(self.small), faint_of),
            (self.small < BLACK_PRINT * float(np.median(self.small)), ink_of),
        )
        self.window = cv2.createHanningWindow((PATCH, PATCH), cv2.CV_32F)
        self.anchors = anchors(self.small)
        same = np.eye(2, 3, dtype=np.float32)
        self.patches = [self.window * window(self.small, same, a) for a in self.anchors]


def anchors(small: np.ndarray) -> np.ndarray:
    """Where the fine step looks: the strongest corner of the print (Shi-Tomasi) in each cell of a
    grid, so that the windows span the page and the fit is not levered from one corner."""
    strength = cv2.cornerMinEigenVal(255 - small, 7)
    margin = PATCH // 2 + 2
    strength[:margin] = strength[-margin:] = 0
    strength[:, :margin] = strength[:, -margin:] = 0
    h, w = small.shape
    floor, out = 0.05 * strength.max(), []
    for gy in range(GRID):
        for gx in range(GRID):
            top, left = gy * h // GRID, gx * w // GRID
            part = strength[top : (gy + 1) * h // GRID, left : (gx + 1) * w // GRID]
            y, x = np.unravel_index(np.argmax(part), part.shape)
            if part[y, x] > floor:
                out.append((left + x, top + y))
    return np.float32(out).reshape(-1, 2)


def window(image: np.ndarray, matrix: np.ndarray, centre) -> np.ndarray:
    """The PATCH-pixel window around the reference point ``centre`` of ``image`` mapped by ``matrix``
    (image -> reference): ink bright on zero paper, which the Hanning window then fades to zero."""
    to_window = np.float32([[1, 0, PATCH / 2 - centre[0]], [0, 1, PATCH / 2 - centre[1]], [0, 0, 1]])
    part = cv2.warpAffine(
        image, (to_window @ np.vstack([matrix, [0, 0, 1]]))[:2], (PATCH, PATCH), borderValue=255
    )
    return np.float32(paper_of(part)) - part.astype(np.float32)


def register(page: np.ndarray, ref: Reference) -> Registration:
    """The page (grayscale uint8) registered to ``ref``; score 0 when nothing matches."""
    factor = ref.factor * math.sqrt(ref.size[0] * ref.size[1] / (page.shape[0] * page.shape[1]))
    small = cv2.resize(page, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    keypoints, descriptors = ref.orb.detectAndCompute(small, None)
    if descriptors is None or ref.descriptors is None or len(keypoints) < MIN_MATCHES:
        return failed()
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(descriptors, ref.descriptors, k=2)
    matches = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(matches) < MIN_MATCHES:
        return failed()
    src = np.float32([keypoints[m.queryIdx].pt for m in matches])
    dst = np.float32([ref.keypoints[m.trainIdx].pt for m in matches])
    matrix, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=2000, confidence=0.999
    )
    if matrix is None or int(inliers.sum()) < MIN_MATCHES:
        return failed()
    matrix = refine(small, ref, matrix.astype(np.float32))
    mapped = cv2.warpAffine(
        small, matrix, (ref.small.shape[1], ref.small.shape[0]), flags=cv2.INTER_AREA, borderValue=255
    )
    paper = paper_of(mapped[::2, ::2])
    score = max(agreement(mapped, printed, ink, paper) for printed, ink in ref.tiers)
    # From the work sizes to full ones: page pixel -> small page -> small reference -> reference pixel.
    full = np.linalg.inv(scaling(ref.factor)) @ np.vstack([matrix, [0, 0, 1]]) @ scaling(factor)
    return described(full[:2], score)


def agreement(mapped: np.ndarray, printed: np.ndarray, ink, paper: float) -> float:
    """The share of the printed pixels the mapped page has ink on (within a pixel); 0 with no print."""
    if printed.sum() < MIN_PRINT:
        return 0.0
    found = cv2.dilate(ink(mapped, paper).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float((found & printed).sum() / printed.sum())


def refine(small: np.ndarray, ref: Reference, matrix: np.ndarray) -> np.ndarray:
    """The coarse transform made exact: each of the reference's windows is found on the page mapped
    by it (phase correlation, sub-pixel), and an affine transform fitted to the page points they
    came from. Kept only when enough windows agree (a bad refinement never replaces a good match)."""
    back = cv2.invertAffineTransform(matrix)
    src, dst = [], []
    for centre, patch in zip(ref.anchors, ref.patches):
        (dx, dy), response = cv2.phaseCorrelate(patch, ref.window * window(small, matrix, centre))
        if response >= MIN_RESPONSE:
            src.append(back @ [centre[0] + dx, centre[1] + dy, 1.0])
            dst.append(centre)
    if len(src) < MIN_ANCHORS:
        return matrix
    found, inliers = cv2.estimateAffine2D(
        np.float32(src), np.float32(dst), method=cv2.RANSAC, ransacReprojThreshold=FIT_TOLERANCE
    )
    if found is None or int(inliers.sum()) < MIN_ANCHORS:
        return matrix
    return found.astype(np.float32)


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
