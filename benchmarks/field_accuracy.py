"""Reading whole fields: crnn against the segmentation baseline, and against the issue's targets.

    python benchmarks/field_accuracy.py                      # trains: compare --models cnn,crnn (2 workers)
    python benchmarks/field_accuracy.py --results FOLDER     # reads a compare output that holds both

Training is ``python jobs/compare.py --models cnn,crnn`` with 2 Ray Train workers into a fresh
folder under ``results-bench/`` (timed from outside; crnn's own training seconds come from its
history). It prints crnn's training time, its field accuracy and character error rate on the
5-digit test scans, and its accuracy at each field length beside the digit cnn's accuracy raised
to that length. The plain baseline is measured in the same run on the same fields: the digit cnn
reading each connected blob of ink (``cnn-segmented``); the ratio is crnn's field error over the
baseline's. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"field_accuracy_5": 0.98, "cer_5": 0.005, "train_seconds": 20 * 60}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, help="a compare output with cnn and crnn (default: train one)")
    p.add_argument("--output", type=Path, default=Path("results-bench/fields"), help="where to train (default: %(default)s)")
    args = p.parse_args()
    wall = None
    if args.results is None:
        if args.output.exists():
            raise SystemExit(f"--output {args.output}: exists; remove it, or read it with --results {args.output}")
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "jobs" / "compare.py"), "--models", "cnn,crnn", "--workers", "2",
                        "--output", str(args.output)], check=True)
        wall, args.results = time.perf_counter() - start, args.output
    rows = {r["model"]: r for r in pq.read_table(args.results / "metrics.parquet").to_pylist()}
    lengths = pq.read_table(args.results / "field_lengths.parquet").to_pylist()
    crnn, seg, cnn = rows["crnn"], rows["cnn-segmented"], rows["cnn"]
    print(f"{os.cpu_count()} CPUs; results in {args.results}" + (f"; compare took {wall:.0f} s" if wall else ""))
    print(f"crnn: trained {crnn['train_seconds']:.0f} s on {crnn['num_workers']} workers, {crnn['epochs']} epochs "
          f"(target <= {TARGETS['train_seconds']} s)")
    for name, r in (("crnn", crnn), ("cnn-segmented (baseline)", seg)):
        print(f"{name}: 5-digit scans {100 * r['field_accuracy_5']:.2f} % fields right, CER {100 * r['cer_5']:.2f} %; "
              f"fields of 1-12 digits {100 * r['field_accuracy']:.2f} %, CER {100 * r['cer']:.2f} %")
    print(f"targets: 5-digit field accuracy >= {100 * TARGETS['field_accuracy_5']:.1f} %, CER <= "
          f"{100 * TARGETS['cer_5']:.1f} %; digit cnn accuracy {100 * cnn['accuracy']:.2f} % (^5 = "
          f"{100 * cnn['accuracy'] ** 5:.2f} %)")
    by_length = {}
    for n in sorted({r["length"] for r in lengths}):
        got = {r["model"]: r for r in lengths if r["length"] == n}
        bound = cnn["accuracy"] ** n
        by_length[n] = {"crnn": got["crnn"]["field_accuracy"], "cnn_segmented": got["cnn-segmented"]["field_accuracy"],
                        "cnn_power": bound, "fields": got["crnn"]["fields"]}
        print(f"  length {n:2d}: crnn {100 * by_length[n]['crnn']:6.2f} %  segmented "
              f"{100 * by_length[n]['cnn_segmented']:6.2f} %  cnn^{n} {100 * bound:6.2f} %  "
              f"({by_length[n]['fields']} fields){'' if by_length[n]['crnn'] >= bound else '  below'}")
    ratio = (1 - crnn["field_accuracy_5"]) / max(1 - seg["field_accuracy_5"], 1e-9)
    print(f"crnn's 5-digit field error is {ratio:.3f}x the segmentation baseline's")
    print(json.dumps({"results": str(args.results), "compare_seconds": wall, "crnn_train_seconds": crnn["train_seconds"],
                      "crnn_epochs": crnn["epochs"], "workers": crnn["num_workers"],
                      **{f"crnn_{k}": crnn[k] for k in ("field_accuracy_5", "cer_5", "field_accuracy", "cer")},
                      **{f"segmented_{k}": seg[k] for k in ("field_accuracy_5", "cer_5", "field_accuracy", "cer")},
                      "cnn_accuracy": cnn["accuracy"], "error_ratio_vs_segmented": ratio, "by_length": by_length,
                      "targets": TARGETS}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
