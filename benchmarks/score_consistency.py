"""Does scoring a scan give what compare measured in memory? The MNIST test set, rendered as scans.

    python benchmarks/score_consistency.py [--model results] [--model-name cnn]

All 10,000 MNIST test digits are rendered as dark ink on white paper at 28, 64
and 200 px, as PNG and as JPEG (quality 90), with their labels as folder names,
and packed into one tar and one zip (60,000 images each, made once and reused).
Both go through ``hdr score`` with ``--labels-from dirname``. The accuracy of
each slice (archive x size x format) is printed beside compare's in-memory
test accuracy for the same checkpoint; the target is every slice within 0.3
percentage points. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as pads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.data import datasets, samples
from hdr_dist.inference import readers
from hdr_dist.jobs import score
from hdr_dist.models import checkpoints

SIZES, FORMATS = (28, 64, 200), ("PNG", "JPEG")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default="results", help="compare output folder or model.pt (default: %(default)s)"
    )
    p.add_argument("--model-name", help="default: the most accurate model of that folder")
    p.add_argument(
        "--folder",
        type=Path,
        default=Path("results-bench/consistency"),
        help="where the two archives are made once (default: %(default)s)",
    )
    p.add_argument(
        "--target-error",
        type=float,
        help="also the reject option: score with --target-error E, and set each slice's accepted share "
        "and error among the accepted beside the in-memory ones at the same threshold",
    )
    args = p.parse_args()

    state, cfg, checkpoint = checkpoints.for_scoring(args.model, args.model_name)
    name = cfg.model
    ds = datasets.load("mnist")
    sets = {"test": (ds.test.x, ds.test.y)}
    tested = readers.DIGIT.test(state, sets, temperature=state.temperature or 1.0).scores
    in_memory = 100 * tested["accuracy"]
    print(f"{name} ({checkpoint}): in-memory test accuracy {in_memory:.2f} %")

    args.folder.mkdir(parents=True, exist_ok=True)
    archives = [args.folder / "mnist-test-scans-by-label.tar", args.folder / "mnist-test-scans-by-label.zip"]
    for archive in archives:
        if not archive.exists():
            tmp = archive.with_name(archive.name + ".tmp" + archive.suffix)
            n = samples.write(tmp, samples.entries(ds.test.x, ds.test.y, ds.labels, SIZES, FORMATS))
            tmp.rename(archive)
            print(f"made {archive} ({n:,} images)")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        reject = ["--target-error", str(args.target_error)] if args.target_error else []
        code = score.main(
            [
                *map(str, archives),
                "--model",
                args.model,
                "--output",
                str(out),
                "--labels-from",
                "dirname",
                *reject,
            ]
            + (["--model-name", args.model_name] if args.model_name else [])
        )
        seconds = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"hdr score failed with status {code}")
        t = pads.dataset(out / "predictions", format="parquet").to_table(
            columns=["source", "member", "pred_label", "true_label", "error", "decision"]
        )
        threshold = json.loads((out / "summary.json").read_text())["threshold"]
    correct = pc.equal(t["pred_label"], t["true_label"]).to_pylist()
    slices: dict[str, list[int]] = {}
    for source, member, ok, error in zip(
        t["source"].to_pylist(), t["member"].to_pylist(), correct, t["error"].to_pylist()
    ):
        key = f"{Path(source).suffix[1:]} {member.split('/')[1]}"
        slices.setdefault(key, [0, 0, 0])
        slices[key][0] += bool(ok)
        slices[key][1] += 1
        slices[key][2] += error is not None
    rows = {
        k: {
            "accuracy": round(100 * c / n, 2),
            "images": n,
            "errors": e,
            "delta_pp": round(100 * c / n - in_memory, 2),
        }
        for k, (c, n, e) in sorted(slices.items())
    }
    for k, r in rows.items():
        print(
            f"  {k:18s} {r['accuracy']:6.2f} %  ({r['delta_pp']:+.2f} pp, {r['images']:,} images, "
            f"{r['errors']} errors)"
        )
    worst = max(abs(r["delta_pp"]) for r in rows.values())
    if args.target_error:
        rows = reject_slices(t, tested, ds.test.y, threshold, rows)
    print(f"largest difference {worst:.2f} pp (target <= 0.3); {t.num_rows:,} images in {seconds:.0f} s")
    print(
        json.dumps(
            {
                "model": name,
                "in_memory_accuracy": round(in_memory, 2),
                "largest_delta_pp": worst,
                "images": t.num_rows,
                "seconds": round(seconds, 1),
                "slices": rows,
            }
        )
    )
    return 0


def reject_slices(t, tested: dict, y, threshold: float, rows: dict) -> dict:
    """Each slice's accepted share and error among the accepted, beside the in-memory split's at
    the same threshold: the reject option's promise, checked on scans."""
    from hdr_dist.inference import calibration

    coverage, error = calibration.accepted(tested["probs"].max(1), tested["probs"].argmax(1) == y, threshold)
    print(
        f"--target-error: threshold {threshold:.6g}; in memory {100 * coverage:.2f} % accepted, "
        f"{100 * error:.3f} % of them wrong"
    )
    for k in rows:
        suffix, size = k.split()
        part = t.filter(
            pc.and_(pc.ends_with(t["source"], "." + suffix), pc.match_substring(t["member"], f"/{size}/"))
        )
        took = part.filter(pc.equal(part["decision"], "accept"))
        wrong = pc.sum(pc.not_equal(took["pred_label"], took["true_label"])).as_py() or 0
        rows[k] |= {
            "accepted_pct": round(100 * took.num_rows / part.num_rows, 2),
            "accepted_error_pct": round(100 * wrong / max(took.num_rows, 1), 3),
            "accepted_delta_pp": round(100 * (took.num_rows / part.num_rows - coverage), 2),
        }
        print(
            f"  {k:18s} accepted {rows[k]['accepted_pct']:6.2f} % ({rows[k]['accepted_delta_pp']:+.2f} pp), "
            f"{rows[k]['accepted_error_pct']:.3f} % of them wrong"
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
