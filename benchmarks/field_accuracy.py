"""Reading whole fields: crnn against the segmentation baseline, and against the issue's targets.

    python benchmarks/field_accuracy.py                      # trains: compare --models cnn,crnn (2 workers)
    python benchmarks/field_accuracy.py --results FOLDER     # reads a compare output that holds both

Training is ``python jobs/compare.py --models cnn,crnn`` with 2 Ray Train workers into a fresh
folder under ``results-bench/`` (timed from outside; crnn's own training seconds come from its
history). It prints crnn's training time, its field accuracy and character error rate on the
5-digit test scans, and its accuracy at each field length beside the digit cnn's accuracy raised
to that length. The plain baseline is measured in the same run on the same fields: the digit cnn
reading each connected blob of ink (``cnn-segmented``); the ratio is crnn's field error over the
baseline's.

Then the operating point an operations team buys: the read rate at 1 % error on the 5-digit scans
(the share accepted at the threshold the validation scans give, and the error measured among them),
for crnn alone, for the vote of two readers (accept only where crnn and cnn-segmented read the same
string; ``_vote``), and for crnn decoding exactly 5 digits, as a caller who knows the length would
(``_length_known``). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "read_rate_at_0.01": 0.85,
    "field_accuracy_5": 0.95,
    "cer_5": 0.01,
    "field_accuracy_12": 0.88,
    "train_seconds": 40 * 60,
}


def operating_points(results: Path) -> dict:
    """crnn's read rate at 1 % error alone, voting with cnn-segmented, and decoding a known length, on the
    test sets compare made (the same seed), each threshold read on the validation scans."""
    from hdr_dist.data import datasets
    from hdr_dist.inference import ctc
    from hdr_dist.inference.readers import FIELD, read_rate, reads
    from hdr_dist.models import checkpoints
    from hdr_dist.training import field_eval

    rows = {r["model"]: r for r in pq.read_table(results / "metrics.parquet").to_pylist()}
    crnn_state = checkpoints.for_scoring(rows["crnn"]["checkpoint"], None)[0]
    cnn_state = checkpoints.for_scoring(rows["cnn"]["checkpoint"], None)[0]
    model, cfg = checkpoints.model_from_state(crnn_state)
    ds = datasets.load(cfg.dataset, seed=cfg.seed)
    tests = field_eval.test_sets(ds, cfg.seed)
    sets = {name: tests[name] for name in ("val_scans", "scans")}
    seg = field_eval.segmented(cnn_state, tests)["sets"]
    labels, blank, temperature = list(cfg.labels), len(cfg.labels), crnn_state.temperature or 1.0
    out, answers = {}, {}
    for name, (strips, truth) in sets.items():
        scaled, paths = FIELD.best_paths(
            FIELD.step_logits(model, strips, cfg.mean, cfg.std), temperature, blank
        )
        read = reads(scaled, paths, labels)
        texts, conf = [r[0] for r in read], np.array([r[2] for r in read])
        agree = np.array([t == s for t, s in zip(texts, seg[name]["texts"])])
        known = [ctc.best_path_of_length(lp, blank, 5, 5) for lp in scaled]
        known = [k[0] if k else [] for k in known]
        known_conf = np.exp(ctc.string_log_probs(scaled, known, blank))
        known_texts = ["".join(labels[c] for c in k) for k in known]
        right = np.array([t == r for t, r in zip(truth, texts)])
        answers[name] = {
            "": (conf, right),
            "_vote": (np.where(agree, np.minimum(conf, seg[name]["confidence"]), 0.0), right & agree),
            "_length_known": (known_conf, np.array([t == r for t, r in zip(truth, known_texts)])),
        }
        if name == "scans":
            out["field_accuracy_5_length_known"] = float(answers[name]["_length_known"][1].mean())
            out["agree_share"] = float(agree.mean())
    for key in answers["scans"]:
        out[f"read_rate_at_0.01{key}"], out[f"read_error_at_0.01{key}"] = read_rate(
            answers["val_scans"][key], answers["scans"][key]
        )
    out["read_rate_at_0.01_segmented"] = read_rate(
        (seg["val_scans"]["confidence"], seg["val_scans"]["right"]),
        (seg["scans"]["confidence"], seg["scans"]["right"]),
    )[0]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, help="a compare output with cnn and crnn (default: train one)")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("results-bench/fields"),
        help="where to train (default: %(default)s)",
    )
    args = p.parse_args()
    wall = None
    if args.results is None:
        if args.output.exists():
            raise SystemExit(
                f"--output {args.output}: exists; remove it, or read it with --results {args.output}"
            )
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "jobs" / "compare.py"),
                "--models",
                "cnn,crnn",
                "--workers",
                "2",
                "--output",
                str(args.output),
            ],
            check=True,
        )
        wall, args.results = time.perf_counter() - start, args.output
    rows = {r["model"]: r for r in pq.read_table(args.results / "metrics.parquet").to_pylist()}
    lengths = pq.read_table(args.results / "field_lengths.parquet").to_pylist()
    crnn, seg, cnn = rows["crnn"], rows["cnn-segmented"], rows["cnn"]
    print(
        f"{os.cpu_count()} CPUs; results in {args.results}" + (f"; compare took {wall:.0f} s" if wall else "")
    )
    print(
        f"crnn: trained {crnn['train_seconds']:.0f} s on {crnn['num_workers']} workers, {crnn['epochs']} "
        f"epochs (target <= {TARGETS['train_seconds']} s)"
    )
    for name, r in (("crnn", crnn), ("cnn-segmented (baseline)", seg)):
        print(
            f"{name}: 5-digit scans {100 * r['field_accuracy_5']:.2f} % fields right, "
            f"CER {100 * r['cer_5']:.2f} %; "
            f"fields of 1-12 digits {100 * r['field_accuracy']:.2f} %, CER {100 * r['cer']:.2f} %"
        )
    print(
        f"targets: 5-digit field accuracy >= {100 * TARGETS['field_accuracy_5']:.1f} %, CER <= "
        f"{100 * TARGETS['cer_5']:.1f} %; digit cnn accuracy {100 * cnn['accuracy']:.2f} % (^5 = "
        f"{100 * cnn['accuracy'] ** 5:.2f} %)"
    )
    by_length = {}
    for n in sorted({r["length"] for r in lengths}):
        got = {r["model"]: r for r in lengths if r["length"] == n}
        bound = cnn["accuracy"] ** n
        by_length[n] = {
            "crnn": got["crnn"]["field_accuracy"],
            "cnn_segmented": got["cnn-segmented"]["field_accuracy"],
            "cnn_power": bound,
            "fields": got["crnn"]["fields"],
        }
        print(
            f"  length {n:2d}: crnn {100 * by_length[n]['crnn']:6.2f} %  segmented "
            f"{100 * by_length[n]['cnn_segmented']:6.2f} %  cnn^{n} {100 * bound:6.2f} %  "
            f"({by_length[n]['fields']} fields){'' if by_length[n]['crnn'] >= bound else '  below'}"
        )
    ratio = (1 - crnn["field_accuracy_5"]) / max(1 - seg["field_accuracy_5"], 1e-9)
    print(f"crnn's 5-digit field error is {ratio:.3f}x the segmentation baseline's")
    points = operating_points(args.results)
    print(
        f"5-digit scans, read rate at 1 % error (threshold from the validation scans; target >= "
        f"{100 * TARGETS['read_rate_at_0.01']:.0f} %):"
    )
    for key, name in (
        ("", "crnn"),
        ("_vote", "crnn and cnn-segmented agreeing"),
        ("_length_known", "crnn, length known (5)"),
    ):
        print(
            f"  {name}: {100 * points[f'read_rate_at_0.01{key}']:.2f} % read, "
            f"{100 * points[f'read_error_at_0.01{key}']:.2f} % of them wrong"
        )
    print(
        f"  cnn-segmented alone: {100 * points['read_rate_at_0.01_segmented']:.2f} % read; the two agree on "
        f"{100 * points['agree_share']:.2f} % of the scans"
    )
    print(
        f"crnn with the length known: {100 * points['field_accuracy_5_length_known']:.2f} % of the 5-digit "
        f"scans right (free decode {100 * crnn['field_accuracy_5']:.2f} %)"
    )
    print(
        json.dumps(
            {
                "results": str(args.results),
                "compare_seconds": wall,
                "crnn_train_seconds": crnn["train_seconds"],
                "crnn_epochs": crnn["epochs"],
                "workers": crnn["num_workers"],
                **{f"crnn_{k}": crnn[k] for k in ("field_accuracy_5", "cer_5", "field_accuracy", "cer")},
                **{f"segmented_{k}": seg[k] for k in ("field_accuracy_5", "cer_5", "field_accuracy", "cer")},
                "cnn_accuracy": cnn["accuracy"],
                "error_ratio_vs_segmented": ratio,
                "by_length": by_length,
                "crnn_field_accuracy_12": by_length.get(12, {}).get("crnn"),
                **points,
                "targets": TARGETS,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
