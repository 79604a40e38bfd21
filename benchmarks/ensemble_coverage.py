"""Does averaging calibrated models pay? Coverage at a fixed error, each model alone and averaged.

    python benchmarks/ensemble_coverage.py [--model results] [--model-name cnn,lstm]

Loads the named models of one compare folder, scores the validation hold-out
compare calibrated on (the same seed, so the same images) and the test split,
and averages their calibrated probabilities; and, recalibrated, their
log-probabilities. For each error target it prints the share of answers
accepted: on validation, where the decision is taken (the threshold is the one
``score --target-error`` would pick), and on test, at the validation threshold.
The baseline is the best single model; an ensemble pays only if it accepts more
at the same error. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.data import datasets
from hdr_dist.inference import calibration, readers
from hdr_dist.models import checkpoints


def coverages(val_probs, val_y, test_probs, test_y) -> dict:
    """Per error target: validation coverage, and test coverage and error at validation's threshold."""
    val_curve = calibration.risk_coverage(val_probs.max(1), val_probs.argmax(1) == val_y)
    out = {}
    for target in calibration.ERROR_TARGETS:
        coverage, threshold = calibration.coverage_at(val_curve, target)
        test_coverage, test_error = calibration.accepted(
            test_probs.max(1), test_probs.argmax(1) == test_y, threshold
        )
        out[f"{target:g}"] = {
            "val_coverage": coverage,
            "test_coverage": test_coverage,
            "test_error": test_error,
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="results", help="compare output folder (default: %(default)s)")
    p.add_argument("--model-name", default="cnn,lstm", help="models to average (default: %(default)s)")
    args = p.parse_args()

    names = args.model_name.split(",")
    probs, ds = {}, None
    for name in names:
        state, cfg, checkpoint = checkpoints.for_scoring(args.model, name)
        ds = ds or datasets.load(cfg.dataset, seed=cfg.seed)
        t = state.temperature or 1.0
        sets = {"val": (ds.val.x, ds.val.y), "test": (ds.test.x, ds.test.y)}
        tested = readers.DIGIT.test(state, sets, temperature=t).sets
        probs[name] = [tested["val"]["probs"], tested["test"]["probs"]]
        print(f"{name}: {checkpoint}, temperature {t:.3f}")
    probs["+".join(names)] = [np.mean([probs[n][i] for n in names], axis=0) for i in (0, 1)]
    # The average of calibrated models is not calibrated itself: also their mean log-probability,
    # at a temperature fitted on validation as compare fits a single model's.
    logp = [np.mean([np.log(np.maximum(probs[n][i], 1e-30)) for n in names], axis=0) for i in (0, 1)]
    t = calibration.fit_temperature(calibration.class_nll(logp[0], ds.val.y), len(ds.val.y))
    probs[f"{'+'.join(names)} T"] = [calibration.calibrated(z, t) for z in logp]
    print(f"{'+'.join(names)} T: the mean log-probability, recalibrated at temperature {t:.3f}")
    results = {name: coverages(v, ds.val.y, t, ds.test.y) for name, (v, t) in probs.items()}

    print(f"{'model':<12} {'accuracy':>9} " + " ".join(f"{'@' + k:>26}" for k in results[names[0]]))
    print(
        f"{'':<12} {'(test)':>9} " + " ".join(f"{'val cov / test cov / err':>26}" for _ in results[names[0]])
    )
    for name, row in results.items():
        accuracy = (probs[name][1].argmax(1) == ds.test.y).mean()
        print(
            f"{name:<12} {100 * accuracy:>8.2f}% "
            + " ".join(
                f"{100 * r['val_coverage']:>8.2f}%/{100 * r['test_coverage']:>6.2f}"
                f"%/{100 * r['test_error']:>5.3f}%"
                for r in row.values()
            )
        )
    best = max(names, key=lambda n: sum(r["val_coverage"] for r in results[n].values()))
    ensemble = max(
        results.keys() - set(names), key=lambda n: sum(r["val_coverage"] for r in results[n].values())
    )
    ratio = {
        k: results[ensemble][k]["val_coverage"] / max(results[best][k]["val_coverage"], 1e-12)
        for k in results[best]
    }
    pays = [k for k, r in ratio.items() if r > 1]
    verdict = (
        "pays at every target"
        if len(pays) == len(ratio)
        else "pays at no target"
        if not pays
        else f"pays only at {', '.join(pays)}"
    )
    print(
        f"the better ensemble ({ensemble}) vs the best single model ({best}), validation coverage: "
        + ", ".join(f"@{k} {v:.4f}x" for k, v in ratio.items())
        + f": {verdict}"
    )
    print(
        json.dumps(
            {
                "best_single": best,
                "best_ensemble": ensemble,
                "ratio_val_coverage": ratio,
                "pays_at": pays,
                "results": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
