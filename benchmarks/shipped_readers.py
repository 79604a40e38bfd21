"""The shipped readers against a baseline: each figure on its card computed again, beside the same
figure of the baseline's reader of that name, and the ratio of their errors.

    python benchmarks/shipped_readers.py [--baseline RESULTS]

RESULTS is a ``compare --output`` folder with a ``cnn`` and a ``crnn`` (default: the default job's,
``results``). The digit readers are also read on scikit-learn's 1,797 digits, by 43 writers none of
MNIST's, brought to MNIST's 28x28: a writer population no choice was made on. Each card's learning
curve (validation accuracy against training time) is printed too. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.data import datasets  # noqa: E402 - after the path that finds it
from hdr_dist.forms.samples import sklearn_digits  # noqa: E402 - after the path that finds it
from hdr_dist.inference import readers  # noqa: E402 - after the path that finds it
from hdr_dist.models import checkpoints, shipped  # noqa: E402 - after the path that finds it
from hdr_dist.models.config import TrainConfig  # noqa: E402 - after the path that finds it
from hdr_dist.training import kinds  # noqa: E402 - after the path that finds it


def figures(path: str) -> dict:
    """A reader's card figures, computed here as compare computes them, and its sklearn digits."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(state["config"])
    tested = kinds.of(cfg).tested(state, datasets.load(cfg.dataset, seed=cfg.seed))
    found = shipped.figures_of(tested["scores"] | tested["row"], cfg.kind)
    if cfg.kind == "digit":
        x, y, _ = sklearn_digits()
        model, _ = checkpoints.model_from_state(state)
        model.eval()
        probs = readers.DIGIT.probabilities(model, x, cfg, 1.0, readers.CPU)
        found["sklearn_digits_accuracy"] = float((probs.argmax(1).numpy() == y).mean())
    return found


def error_ratio(new: float, old: float, higher_is_better: bool) -> float | None:
    """The shipped reader's errors as a share of the baseline's (below 1: fewer)."""
    new_miss, old_miss = (1 - new, 1 - old) if higher_is_better else (new, old)
    return round(new_miss / old_miss, 4) if old_miss > 0 else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default="results", help="compare output folder (default: %(default)s)")
    args = p.parse_args()
    out = {"baseline": args.baseline, "readers": {}}
    for name in shipped.names():
        card = shipped.card(name)
        new = figures(shipped.checkpoint(name))
        old = figures(checkpoints.resolve(args.baseline, name))
        rows = {}
        for key in new:
            better_high = not (key.startswith("error_among") or key.endswith("_cer"))
            rows[key] = {
                "shipped": round(new[key], 5),
                "card": card["figures"].get(key),
                "baseline": round(old[key], 5),
                "error_ratio": error_ratio(new[key], old[key], better_high),
            }
            print(
                f"{name} {key}: shipped {new[key]:.4%} (card {card['figures'].get(key)}), "
                f"baseline {old[key]:.4%}"
            )
        curve = [(p["epoch"], p["train_seconds"], p["val_acc"]) for p in card["learning_curve"]]
        print(f"{name} learning curve (epoch, training seconds, validation accuracy): {curve}")
        out["readers"][name] = {"figures": rows, "training": card["training"], "learning_curve": curve}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
