"""Form-cell artefacts in training (``data.cells``, ``TrainConfig.cell_artefacts``): the default
``cnn`` trained with them and without, then both tested on MNIST's test split and on cell-like tests.

The two models are the ``cnn`` recipe at the same seed and epochs; the baseline has
``cell_artefacts`` 0, nothing else differs. They train in this one process with compare's own epoch
code (``training.train``: ``setup``, ``train_epoch``, ``validate``; one process, as ``python -m
hdr_dist.train`` trains), epoch by epoch in alternation, so a machine whose speed drifts (a shared
one) slows both alike and their images/s compare. Each is saved as a checkpoint folder (OUTPUT/off,
OUTPUT/on) that ``hdr score --model`` reads; ``--reuse`` tests those instead of training again.

The cell-like tests are MNIST's test digits through ``cells.as_cells`` with a fixed seed: every
artefact mixed as in training (``mixed``), each artefact alone, and none (``to_mnist``: the plain
digits only cropped and centred again, which MNIST's digits already are). With ``--forms``, also the
comb cells ``hdr forms`` cuts from ``forms_accuracy.py``'s sample pages (MNIST test digits written
on a scanned claim form), with either dropout of the form's print. The cost is measured apart
too: one batch of the recipe's size through ``augment`` alone, through ``augment`` and
``cell_artefacts``, and one training step, interleaved, best of several rounds. Every figure of the
treated model is also printed as a ratio against the baseline of the same run (``on/off``: error
rates for the tests, images/s for the cost), and each test counts the images only one of the two
reads right, with McNemar's exact test on them: on 10,000 test digits a few images either way is
chance. The last line printed is a JSON object of every figure.

    python benchmarks/cell_artefacts.py [--epochs 12] [--share 0.4] [--threads 1] [--reuse]
        [--output results-bench/cells] [--limit-train N] [--limit-test N] [--forms results-bench/forms-100]
        [--baseline AN_EARLIER_OUTPUT]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hdr_dist.data import cells, datasets
from hdr_dist.data.augment import AugmentRanges, augment
from hdr_dist.inference.device import normalise
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import kinds, train

ARTEFACTS = ("wall", "cut", "thick", "jpeg", "bilevel")
TEST_SEED = 20240607  # the cell-like tests' draws, the same for every run and both models


def trained(cfgs: dict[str, TrainConfig], ds, output: Path) -> dict:
    """Both models, epoch by epoch in alternation; each saved to OUTPUT/<name> when done."""
    x, y, vx, vy = train.tensors(train.arrays_of(ds))
    runs = {}
    for name, cfg in cfgs.items():
        model, opt, sched = train.setup(cfg, len(y), 1)
        gen = torch.Generator().manual_seed(cfg.seed)
        runs[name] = dict(model=model, opt=opt, sched=sched, gen=gen, history=[], wall=0.0)
    epochs = next(iter(cfgs.values())).epochs
    for epoch in range(epochs):
        for name, cfg in cfgs.items():
            r = runs[name]
            start = time.perf_counter()
            stats = train.train_epoch(r["model"], r["opt"], r["sched"], x, y, cfg, epoch, generator=r["gen"])
            stats |= kinds.of(cfg).validate(r["model"], (vx, vy), cfg)
            r["wall"] += time.perf_counter() - start
            r["history"].append(stats | {"epoch": epoch + 1})
            print(
                f"  {name:>3} epoch {epoch + 1}/{epochs}: {train.epoch_line(cfg, r['history'][-1])}",
                flush=True,
            )
    for name, cfg in cfgs.items():
        r = runs[name]
        folder = output / name
        folder.mkdir(parents=True, exist_ok=True)
        checkpoints.save(str(folder), r["model"], r["opt"], r["sched"], cfg, epochs, r["history"])
    return {name: (r["model"], r["history"], r["wall"]) for name, r in runs.items()}


def reused(output: Path, names=("off", "on"), want: dict | None = None) -> dict:
    """Checkpoints saved by an earlier run; each must have been trained as ``want`` says, if given."""
    found = {}
    for name in names:
        state = checkpoints.load(output / name)
        model, cfg = checkpoints.model_from_state(state)
        if want and cfg != want[name]:
            raise SystemExit(f"{output / name} was trained with other settings: {cfg}")
        found[name] = (model, state["history"], float("nan"))
    return found


def test_sets(ds) -> dict[str, torch.Tensor]:
    """name -> float images (N, 1, 28, 28) on [0, 1]: MNIST's test split, then the cell-like tests."""
    clean = torch.from_numpy(ds.test.x).float().div(255).unsqueeze(1)
    none = dict.fromkeys(ARTEFACTS, 0.0)
    styles = {"to_mnist": cells.CellStyle(**none), "mixed": cells.CellStyle()}
    styles |= {a: cells.CellStyle(**none | {a: 1.0}) for a in ARTEFACTS}
    sets = {"mnist": clean}
    for name, style in styles.items():
        generator = torch.Generator().manual_seed(TEST_SEED)
        sets[name] = torch.cat([cells.as_cells(b, style, generator) for b in clean.split(1000)])
    return sets


def form_cells(folder: Path, dropout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The comb cells ``hdr forms`` cuts from the sample pages of ``forms_accuracy.py`` (a folder of
    ``pages/``, the template and ``truth.csv``), with ``dropout``, as float images and their digits;
    cells its truth leaves empty, and cells the job finds empty, are left out."""
    from hdr_dist.forms import registration, zones
    from hdr_dist.imaging import images

    template_path = next(folder.glob("*.yaml"))
    template, reference, drop = zones.prepared_template(str(template_path), dropout)
    with (folder / "truth.csv").open(newline="") as f:
        truth = {(r["path"], int(r["page"]), r["field"]): r["label"] for r in csv.DictReader(f)}
    found, digits = [], []
    for path in sorted((folder / "pages").iterdir()):
        for page, _, _, _, gray, error in images.decode(path.read_bytes(), pdf_width=template.size[0]):
            reg = registration.register(gray, reference) if error is None else None
            if not (reg and reg.matched):
                continue  # a stray page, or a form the job could not register: no cells
            for read in zones.read_zones(gray, template, drop, reg.matrix):
                zone = template.zones[read.zone]
                label = truth.get((path.name, page, zone.name), "")
                if (
                    zone.kind == "comb"
                    and len(label) == len(zone.cells)
                    and not read.empty
                    and not read.error
                ):
                    found.append(torch.frombuffer(bytearray(read.image), dtype=torch.uint8).view(28, 28))
                    digits.append(int(label[read.cell]))
    return torch.stack(found).float().div(255).unsqueeze(1), torch.tensor(digits)


@torch.no_grad()
def right(model, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Which images the model reads right, as bytes, as scoring gives them to it."""
    model.eval()
    found = []
    for xb, yb in zip(images.split(1000), labels.split(1000)):
        u8 = (xb[:, 0] * 255).round().to(torch.uint8)
        found.append(model(normalise(u8, cfg.mean, cfg.std)).argmax(1) == yb)
    return torch.cat(found)


def cost(cfg: TrainConfig, ds, rounds: int) -> dict:
    """ms per batch of the recipe's size: augment alone, augment then the cell artefacts, one training
    step (forward, backward, optimiser) of the cnn; each the best of ``rounds``, interleaved."""
    x = torch.from_numpy(ds.train.x[: cfg.batch_size]).float().div(255).unsqueeze(1)
    y = torch.from_numpy(ds.train.y[: cfg.batch_size]).long()
    ranges, gen = AugmentRanges(cfg.rotation, cfg.shift, cfg.zoom), torch.Generator().manual_seed(0)
    model, opt, _ = train.setup(cfg, len(y), 1)
    model.train()
    xs = ((x - cfg.mean) / cfg.std).contiguous(memory_format=torch.channels_last)

    def step():
        loss = F.cross_entropy(model(xs), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    work = {
        "augment_ms": lambda: augment(x, ranges, gen),
        "augment_and_cells_ms": lambda: cells.cell_artefacts(
            augment(x, ranges, gen), cfg.cell_artefacts, gen
        ),
        "train_step_ms": step,
    }
    best = dict.fromkeys(work, float("inf"))
    for _ in range(rounds):
        for name, fn in work.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], (time.perf_counter() - start) * 1000)
    cells_ms = best["augment_and_cells_ms"] - best["augment_ms"]
    return best | {"cells_ms": cells_ms, "cells_share_of_step": cells_ms / best["train_step_ms"]}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, help="both models (default: the cnn recipe's)")
    p.add_argument(
        "--share",
        type=float,
        default=0.4,
        help="cell_artefacts of the treated model (default: %(default)s; every recipe has 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    # One, as each of compare's workers has with --workers auto on CPUs. Two threads on a machine
    # shared with other work made every small op wait for the other thread: augment went from 3-10 to
    # 60-177 ms a batch, the cell artefacts from 16-68 to 610-1,120 ms.
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument(
        "--output", default="results-bench/cells", help="checkpoint folders (default: %(default)s)"
    )
    p.add_argument("--reuse", action="store_true", help="test OUTPUT's checkpoints instead of training")
    p.add_argument(
        "--baseline",
        help="reuse the baseline in this folder (an earlier run's OUTPUT, same seed and epochs) and train "
        "only the treated model; the speeds then come from two runs",
    )
    p.add_argument("--limit-train", type=int)
    p.add_argument("--limit-test", type=int)
    p.add_argument("--cost-rounds", type=int, default=20)
    p.add_argument(
        "--forms",
        help="also test both on the comb cells of forms_accuracy.py's sample pages in this folder "
        "(e.g. results-bench/forms-100), with each dropout of hdr forms",
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    output = Path(args.output)
    ds = datasets.load("mnist", seed=args.seed, limit_train=args.limit_train, limit_test=args.limit_test)
    on = TrainConfig.from_recipe(
        "cnn", ds, seed=args.seed, epochs=args.epochs, cell_artefacts=args.share, cpus_per_worker=args.threads
    )
    cfgs = {"off": replace(on, cell_artefacts=0.0, log_progress=False), "on": replace(on, log_progress=False)}
    print(
        f"cnn, {on.epochs} epochs, seed {on.seed}, {len(ds.train.y)} training images, {args.threads} threads"
    )
    print(
        f"off: cell_artefacts 0; on: cell_artefacts {on.cell_artefacts}; checkpoints in "
        f"{Path(args.baseline or output) / 'off'} and {output / 'on'}"
    )
    start = time.perf_counter()
    if args.reuse:
        models = reused(output)
    elif args.baseline:  # the same seed trains the same baseline, bit for bit: train only the other
        models = reused(Path(args.baseline), ("off",), cfgs) | trained({"on": cfgs["on"]}, ds, output)
    else:
        models = trained(cfgs, ds, output)
    train_s = time.perf_counter() - start
    labels = torch.from_numpy(ds.test.y).long()
    sets = {name: (images, labels) for name, images in test_sets(ds).items()}
    for dropout in ("reference", "lines") if args.forms else ():
        sets[f"forms-{dropout}"] = form_cells(Path(args.forms), dropout)
    hits = {name: {s: right(m, *data, on) for s, data in sets.items()} for name, (m, _, _) in models.items()}
    figures = report(hits, models)
    c = cost(on, ds, args.cost_rounds)
    print(
        f"per batch of {on.batch_size} ({args.threads} threads, best of {args.cost_rounds}): augment "
        f"{c['augment_ms']:.1f} ms, + cell artefacts {c['cells_ms']:.1f} ms, a training step "
        f"{c['train_step_ms']:.1f} ms: the cells cost {c['cells_share_of_step']:.1%} of a step"
    )
    print(
        json.dumps(
            {
                "epochs": on.epochs,
                "seed": on.seed,
                "share": on.cell_artefacts,
                "threads": args.threads,
                "train_images": len(ds.train.y),
                "reused": args.reuse,
                **figures,
                "total_train_s": train_s,
                "cost": c,
                "checkpoints": {
                    n: str(Path(args.baseline or output) / n if n == "off" else output / n) for n in models
                },
            }
        )
    )


def report(hits: dict, models: dict) -> dict:
    """The table of accuracies, error ratios and the images only one model reads right (with the
    exact two-sided binomial test of McNemar on them: is the difference more than chance?), then
    the training speeds; their figures."""
    print(
        f"\n{'test':>15} {'images':>7} {'off acc':>9} {'on acc':>9} {'off err':>8} {'on err':>8} "
        f"{'on/off':>7} {'only off':>8} {'only on':>8} {'p':>6}"
    )
    figures = {
        k: {}
        for k in (
            "test_images",
            "accuracy_off",
            "accuracy_on",
            "error_ratio_on_off",
            "only_off_right",
            "only_on_right",
            "mcnemar_p",
        )
    }
    for s, off in hits["off"].items():
        on = hits["on"][s]
        acc_off, acc_on = off.double().mean().item(), on.double().mean().item()
        ratio = (1 - acc_on) / (1 - acc_off) if acc_off < 1 else float("nan")
        lost, gained = int((off & ~on).sum()), int((on & ~off).sum())
        p = stats.binomtest(lost, lost + gained).pvalue if lost + gained else 1.0
        for key, value in zip(figures, (len(off), acc_off, acc_on, ratio, lost, gained, p)):
            figures[key][s] = value
        print(
            f"{s:>15} {len(off):7d} {acc_off:9.2%} {acc_on:9.2%} {1 - acc_off:8.2%} {1 - acc_on:8.2%} "
            f"{ratio:7.3f} {lost:8d} {gained:8d} {p:6.3f}"
        )
    speed = {
        name: statistics.median(h["images_per_s"] for h in hist) for name, (_, hist, _) in models.items()
    }
    wall = {name: w for name, (_, _, w) in models.items()}
    print(
        f"\ntraining images/s (median epoch): off {speed['off']:.0f}, on {speed['on']:.0f}, "
        f"on/off {speed['on'] / speed['off']:.3f}; wall s: off {wall['off']:.0f}, on {wall['on']:.0f}"
    )
    return figures | {
        "images_per_s": speed,
        "images_per_s_on_off": speed["on"] / speed["off"],
        "train_wall_s": wall,
    }


if __name__ == "__main__":
    main()
