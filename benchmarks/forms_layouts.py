"""hdr forms on form designs it was not tuned to: every sample layout (``hdr_dist.data.layouts``), each
its own row, with the way the print is dropped before this change (``--dropout paint``: the print
painted over, the strokes crossing it with it) as the baseline measured in the same run.

    python benchmarks/forms_layouts.py [--model RESULTS] [--pages 300] [--ways paint,colour] [--sets ...]

Each layout's pages are made once (``python -m hdr_dist.forms.samples --layout L``, MNIST **test**
digits; ``survey-sklearn`` fills the set-aside layout with scikit-learn's digits, other writers) and
read by ``hdr forms`` with ``--labels`` and ``--target-error``. The figures are recounted from the
rows and the truth: comb fields read exactly right against 0.97 x (the digit model's MNIST test
accuracy)^cells, per layout and per scan (colour, grey, bilevel; each resolution), free fields, the
error among the accepted fields and the share accepted, empty zones read as "", digits invented in
empty cells, pages registered and strays refused. ``survey`` and ``survey-sklearn`` are the layout
no threshold or setting was chosen on; they are reported beside the others. The last line is JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from forms_accuracy import job  # noqa: E402 - after the path that finds it

from hdr_dist.data import datasets  # noqa: E402 - after the path that finds it
from hdr_dist.data.layouts import LAYOUTS  # noqa: E402 - after the path that finds it
from hdr_dist.forms import samples  # noqa: E402 - after the path that finds it
from hdr_dist.inference import readers  # noqa: E402 - after the path that finds it
from hdr_dist.models import checkpoints  # noqa: E402 - after the path that finds it

ROOT = Path(__file__).resolve().parents[1]
SETS = ("order", "census", "claim-dropout", "survey", "survey-sklearn")  # samples.SETS, claim's own aside
SEED = 37


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def make(folder: Path, layout: str, writers: str, pages: int) -> Path:
    """The pages, made unless the folder holds them already; the template's path."""
    if not ((folder / "pages.csv").is_file() and len(rows_of(folder / "pages.csv")) == pages):
        made = samples.write(folder, pages, SEED, layout, writers)
        print(f"made {made['pages']:,} pages of {layout} ({writers}) under {folder}", flush=True)
    return folder / f"{LAYOUTS[layout].name}.yaml"


def mnist_accuracy(model: str | None) -> float:
    """The digit model's accuracy on MNIST's test set: what the comb targets are made of."""
    state, cfg, _ = checkpoints.for_scoring(model, None)
    test = datasets.load("mnist").test
    model_, _ = checkpoints.model_from_state(state)
    model_.eval()
    probs = readers.DIGIT.probabilities(model_, test.x, cfg, 1.0, readers.CPU)
    return float((probs.argmax(1).numpy() == test.y).mean())


def share(hits: list[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def recount(folder: Path, run: dict, accuracy: float) -> dict:
    """A layout's figures from the rows and the truth, overall and per scan."""
    looks = {(r["path"], int(r["page"])): r for r in rows_of(folder / "pages.csv")}
    truth = {(r["path"], int(r["page"]), r["field"]): r["label"] for r in rows_of(folder / "truth.csv")}
    forms_rows = {(r["member"] or Path(r["source"]).name, r["page"]): r for r in run["forms"]}
    combs, groups = defaultdict(list), defaultdict(list)
    fields, empty, invented, labelled = [], [], [], []
    for f in run["fields"]:
        key = (f["member"] or Path(f["source"]).name, f["page"])
        want = truth.get((*key, f["field"]))
        if want is None:
            continue
        if want == "":
            empty.append(f["text"] == "")
            invented += [bool(f["text"])] * max(1, len(f["char_confidences"] or []))
            continue
        labelled.append((want, f))
        right = f["text"] == want
        if f["kind"] == "comb":
            combs[len(want)].append(right)
            look = looks[key]
            groups[look["scan"]].append((len(want), right))
            groups[f"{look['dpi']} dpi"].append((len(want), right))
        elif f["kind"] == "field":
            fields.append(right)
    taken = [(t, f) for t, f in labelled if f["decision"] == "accept"]
    forms_pages = [k for k, v in looks.items() if v["kind"] == "form"]
    strays = [k for k, v in looks.items() if v["kind"] != "form"]

    def against_target(pairs) -> dict:
        target = sum(0.97 * accuracy**n for n, _ in pairs) / len(pairs)
        return {"fields": len(pairs), "exact": share([r for _, r in pairs]), "target": round(target, 4)}

    return {
        "combs": {
            f"{n} cells": {"fields": len(v), "exact": share(v), "target": round(0.97 * accuracy**n, 4)}
            for n, v in sorted(combs.items())
        },
        "by_scan": {g: against_target(v) for g, v in sorted(groups.items())},
        "free_fields": {"fields": len(fields), "exact": share(fields)},
        "accepted_error": share([t != f["text"] for t, f in taken]),
        "accepted_share": share([f["decision"] == "accept" for _, f in labelled]),
        "empty_zones_read_empty": share(empty),
        "empty_cells_invented": share(invented),
        "registered": share([forms_rows[k]["error"] is None for k in forms_pages]),
        "strays_refused": share([forms_rows[k]["error"] is not None for k in strays]),
        "pages_per_s": round(run["pages_per_s"], 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", help="a compare folder with the digit model and the crnn (default: the shipped readers)"
    )
    p.add_argument("--pages", type=int, default=300, help="pages per layout (default: %(default)s)")
    p.add_argument("--ways", default="paint,colour", help="--dropout ways, the baseline first")
    p.add_argument("--sets", default=",".join(SETS), help="which layouts' pages")
    p.add_argument("--target-error", default="0.01")
    p.add_argument("--calibration-pages", default="60", help="hdr forms' own (default: %(default)s)")
    p.add_argument("--folder", type=Path, default=ROOT / "results-bench" / "layouts")
    args = p.parse_args()
    accuracy = mnist_accuracy(args.model)
    print(f"digit model's MNIST test accuracy: {accuracy:.4f}", flush=True)
    ways, out = args.ways.split(","), {"mnist_accuracy": round(accuracy, 5), "layouts": {}}
    for name in args.sets.split(","):
        folder = args.folder / name
        template = make(folder, *samples.SETS[name], args.pages)
        for way in ways:
            run = job(
                folder,
                args.model,
                *("--dropout", way, "--target-error", args.target_error),
                *("--calibration-pages", args.calibration_pages),
                template=template,
            )
            figures = recount(folder, run, accuracy)
            out["layouts"].setdefault(name, {})[way] = figures
            print(f"{name} --dropout {way}: {json.dumps(figures)}", flush=True)
    base, new = ways[0], ways[-1]
    out["comb_exact_ratio"] = {
        name: round(
            sum(v["exact"] * v["fields"] for v in by[new]["combs"].values())
            / max(1e-9, sum(v["exact"] * v["fields"] for v in by[base]["combs"].values())),
            4,
        )
        for name, by in out["layouts"].items()
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
