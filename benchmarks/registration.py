"""Registration alone, on one core: its seconds a page and its error at the zones' corners, on pages
whose transform is known.

    python benchmarks/registration.py [--pages 100] [--folder results-bench/registration-100]

The pages are made once (``samples.transformed``): the five sample layouts filled with MNIST test
digits, turned a few degrees, upside down (one in four) or a quarter turn (one in eight), at 0.5 to 2
times the reference's 200 dpi, shifted up to 5 % of the page, and written grey, bilevel or as a JPEG.
Each page is registered to its layout's reference, prepared once as a worker does; the error is the
distance, in reference pixels, between each zone corner and where the found transform puts it back.

Its baseline is the commit before the coarse-to-fine registration, run on the same pages in the same
run by ``old_and_new.py`` (pages made first here, which the older tree cannot make)::

    python benchmarks/registration.py --pages 100
    python benchmarks/old_and_new.py --old 759b6ab --rounds 2 \\
        --keys seconds_per_page,error_median,error_p99,registered \\
        -- benchmarks/registration.py --folder $PWD/results-bench/registration-100

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: old_and_new.py's older tree comes first

from hdr_dist.forms import registration  # noqa: E402 - imported after sys.path is set
from hdr_dist.forms import template as templates  # noqa: E402 - imported after sys.path is set

LAYOUTS = ("claim", "order", "census", "claim-dropout", "survey")
LOOKS = ("grey", "bilevel", "jpeg")
SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)  # 100 to 400 dpi against a 200-dpi reference


def make(folder: Path, pages: int, seed: int) -> None:
    """The pages, their layouts' templates, and ``truth.json``: per page its template and the page ->
    reference matrix."""
    from hdr_dist.data.layouts import LAYOUTS as ALL
    from hdr_dist.data.layouts import template_yaml
    from hdr_dist.forms import samples

    (folder / "pages").mkdir(parents=True, exist_ok=True)
    rng, truth = np.random.default_rng(seed), []
    digits = samples.Digits(seed)
    for i in range(pages):
        layout = ALL[LAYOUTS[i % len(LAYOUTS)]]
        name = LAYOUTS[i % len(LAYOUTS)]
        if not (folder / f"{name}.yaml").is_file():
            samples.reference(layout).save(folder / f"{name}.png")
            (folder / f"{name}.yaml").write_text(
                template_yaml(layout).replace(f"{layout.name}.png", f"{name}.png")
            )
        colour = samples.DROPOUT_COLOURS[int(rng.integers(len(samples.DROPOUT_COLOURS)))]
        form = samples.draw(layout, colour) if layout.dropout else samples.reference(layout)
        filled, _ = samples.fill(form, digits, rng, layout)
        turn = float(rng.uniform(-4, 4)) + (180 if i % 4 == 1 else 0) + (90 if i % 8 == 3 else 0)
        scale = float(rng.choice(SCALES)) * float(rng.uniform(0.95, 1.05))
        shift = tuple(float(v) for v in rng.uniform(-0.05, 0.05, 2) * np.array(layout.size) * scale)
        look = LOOKS[i % len(LOOKS)]
        page, matrix = samples.transformed(filled, turn, scale, shift, rng, look)
        cv2.imwrite(str(folder / "pages" / f"{i:04d}.png"), page)
        truth.append(
            {
                "page": f"{i:04d}.png",
                "template": f"{name}.yaml",
                "look": look,
                "scale": scale,
                "rotation": turn,
            }
            | {"matrix": matrix.tolist()}
        )
    (folder / "truth.json").write_text(json.dumps(truth))


def corners(template) -> np.ndarray:
    return np.array(
        [
            (x + dx, y + dy)
            for x, y, w, h in (z.box for z in template.zones)
            for dx in (0, w)
            for dy in (0, h)
        ],
        float,
    )


def measure(folder: Path) -> dict:
    """Each page registered on one core: seconds, whether it matched, its corners' errors."""
    cv2.setNumThreads(1)
    truth = json.loads((folder / "truth.json").read_text())
    prepared, seconds, errors, matched, worst = {}, [], [], 0, []
    for entry in truth:
        if entry["template"] not in prepared:
            template = templates.load(folder / entry["template"])
            ref = registration.Reference(np.asarray(template.reference_image()))
            prepared[entry["template"]] = (template, ref)
        template, ref = prepared[entry["template"]]
        page = cv2.imread(str(folder / "pages" / entry["page"]), cv2.IMREAD_GRAYSCALE)
        start = time.perf_counter()
        reg = registration.register(page, ref)
        seconds.append(time.perf_counter() - start)
        if not reg.matched:
            worst.append((float("inf"), entry["page"]))
            continue
        matched += 1
        points = corners(template)
        to_page = cv2.invertAffineTransform(np.array(entry["matrix"]))
        on_page = points @ to_page[:, :2].T + to_page[:, 2]
        back = on_page @ reg.matrix[:, :2].T + reg.matrix[:, 2]
        e = np.hypot(*(back - points).T)
        errors.append(e)
        worst.append((float(e.max()), entry["page"]))
    e = np.concatenate(errors) if errors else np.array([np.inf])
    by_look = {
        look: round(float(np.median([w for (w, _), t in zip(worst, truth) if t["look"] == look])), 3)
        for look in LOOKS
    }
    return {
        "pages": len(truth),
        "registered": round(matched / len(truth), 4),
        "seconds_per_page": round(float(np.mean(seconds)), 4),
        "seconds_median": round(float(np.median(seconds)), 4),
        "seconds_max": round(float(np.max(seconds)), 4),
        "error_median": round(float(np.median(e)), 3),
        "error_p99": round(float(np.percentile(e, 99)), 3),
        "error_max": round(float(e.max()), 3),
        "worst_corner_median_by_look": by_look,
        "worst_pages": sorted(worst, reverse=True)[:3],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pages", type=int, default=100)
    p.add_argument(
        "--folder",
        type=Path,
        help="where the pages are made once (default: results-bench/registration-PAGES)",
    )
    p.add_argument("--seed", type=int, default=38)
    args = p.parse_args()
    folder = args.folder or ROOT / f"results-bench/registration-{args.pages}"
    if not (folder / "truth.json").is_file():
        start = time.perf_counter()
        make(folder, args.pages, args.seed)
        print(f"made {args.pages} pages under {folder} in {time.perf_counter() - start:.0f} s")
    found = measure(folder)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    print(
        f"{found['pages']} pages on one core of {cpu}: {found['registered']:.1%} registered, "
        f"{found['seconds_per_page'] * 1000:.1f} ms a page (median {found['seconds_median'] * 1000:.1f}, "
        f"max {found['seconds_max'] * 1000:.0f}); corner error median {found['error_median']:.2f} px, "
        f"99th percentile {found['error_p99']:.2f}, max {found['error_max']:.2f}"
    )
    print(json.dumps({"cpu": cpu, "registration": registration.__file__} | found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
