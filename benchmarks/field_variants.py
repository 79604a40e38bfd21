"""Field reader variants raced for the same wall time, side by side on the same cores.

    python benchmarks/field_variants.py                 # base, mid, wide, dense: 720 s each, all at once
    python benchmarks/field_variants.py --variants base,wide --seconds 300

Each variant is a ``CRNN`` trained in its own process with one thread, all of them at once, for the
same wall time, on fields made as compare's training makes them (batches of similar length), with a
warm-up then cosine learning rate over that time; every 90 s of training it reads 600 fixed 5-digit
validation fields, and at the end 1,200. The plain baseline is ``base``, the ``crnn`` recipe at width 1; each
variant's ratio is its field error over the baseline's at the end. Short races favour small models,
so the curves are printed too: a variant still climbing faster at the end would gain from more time.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torch import nn

from hdr_dist.models.architectures import CRNN

VARIANTS = {
    "base": {},  # the crnn recipe at width 1
    "mid": dict(blocks=((24, 2, True), (48, 2, True)), hidden=192),  # the crnn recipe at width 1.5
    "wide": dict(blocks=((32, 2, True), (64, 2, True)), features=256),
    "dense": dict(blocks=((32, 2, True), (64, 2, True)), features=256, context="dense"),
}
EVERY = 90  # seconds of training between two readings of the validation fields


class DenseContext(nn.Module):
    """Context along the field without recurrence (the ORAND-CAR reader's idea: DenseNet + CTC): 1-D
    convolutions, each fed every earlier one's output; steps beyond a strip's width zeroed after each."""

    def __init__(self, features: int, growth: int = 128, layers: int = 2, kernel: int = 5):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(features + i * growth, growth, kernel, padding=kernel // 2, bias=False),
                nn.BatchNorm1d(growth),
                nn.ReLU(inplace=True),
            )
            for i in range(layers)
        )
        self.width = features + layers * growth

    def forward(self, seq, steps):
        x = seq.transpose(1, 2)
        mask = (torch.arange(x.shape[2]) < steps[:, None]).unsqueeze(1).to(x.dtype)
        for conv in self.convs:
            x = torch.cat([x, conv(x) * mask], 1)
        return x.transpose(1, 2)


class DenseCRNN(CRNN):
    """``CRNN``'s convolutions and window, then ``DenseContext`` in place of the BiLSTM."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.rnn = DenseContext(kwargs.get("features", 128))
        self.classifier = nn.Linear(self.rnn.width, num_classes + 1)

    def forward(self, x, widths=None):
        seq = self.dropout(self.window(self.features(x))[:, :, 0].transpose(1, 2))
        steps = (
            torch.full((len(x),), seq.shape[1])
            if widths is None
            else torch.div(widths, self.step, rounding_mode="floor")
        )
        return self.classifier(self.dropout(self.rnn(seq, steps)))


def race(name: str, seconds: float) -> None:
    """One variant, in this process: train for ``seconds``, print its curve and its end as JSON lines."""
    from hdr_dist.data import datasets, fields
    from hdr_dist.inference.device import pad
    from hdr_dist.inference.readers import FIELD
    from hdr_dist.models.config import TrainConfig
    from hdr_dist.training import kinds

    torch.set_num_threads(1)
    ds = datasets.load("mnist")
    cfg = TrainConfig.from_recipe("crnn", ds)
    x, y = torch.tensor(ds.train.x), torch.tensor(ds.train.y)
    kwargs = dict(VARIANTS[name])
    torch.manual_seed(0)
    model = (DenseCRNN if kwargs.pop("context", None) else CRNN)(ds.num_classes, **kwargs)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    kind = kinds.of(cfg)
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    val_strips, val_digits = fields.fixed_set(ds.val.x, ds.val.y, 3, counts=np.full(1200, 5))
    truth = ["".join(map(str, d)) for d in val_digits]

    def accuracy(n: int) -> float:
        reads = FIELD.read(FIELD.step_logits(model, val_strips[:n], cfg.mean, cfg.std), 1.0, list(cfg.labels))
        return float(np.mean([r[0] == t for r, t in zip(reads, truth[:n])]))

    start, paused, seen, next_reading = time.perf_counter(), 0.0, 0, EVERY
    trained = lambda: time.perf_counter() - start - paused  # noqa: E731 - reads the pause as it grows
    while trained() < seconds:
        picks = fields.picks_of(rng.permutation(len(y)), fields.lengths(fields.per_epoch(len(y)), rng))
        for batch in kinds.similar_lengths(picks, cfg.batch_size, rng):
            if (t := trained()) >= seconds:
                break
            if t > next_reading:
                began = time.perf_counter()
                print(
                    json.dumps(
                        {"variant": name, "seconds": round(t), "fields": seen, "val_5": accuracy(600)}
                    ),
                    flush=True,
                )
                paused, next_reading = paused + time.perf_counter() - began, next_reading + EVERY
            for group in opt.param_groups:  # 10 % warm-up, then cosine to zero at the end of the race
                group["lr"] = (
                    cfg.lr * min(1.0, t / seconds / 0.1) * 0.5 * (1 + math.cos(math.pi * t / seconds))
                )
            strips, labels = fields.strips(x, y, batch, fields.FieldStyle(), rng, generator)
            xb, widths = pad(strips)
            model.train()
            loss, _ = kind.objective(model, model((xb - cfg.mean) / cfg.std, widths), (labels, widths), cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(batch)
    params = sum(p.numel() for p in model.parameters())
    print(
        json.dumps({"variant": name, "end": True, "fields": seen, "params": params, "val_5": accuracy(1200)}),
        flush=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--variants", default="base,mid,wide,dense", help="comma-separated, of " + ", ".join(VARIANTS)
    )
    p.add_argument(
        "--seconds", type=float, default=720, help="training wall time of each (default: %(default)s)"
    )
    p.add_argument("--one", help=argparse.SUPPRESS)  # a variant's own process
    args = p.parse_args()
    if args.one:
        race(args.one, args.seconds)
        return 0
    names = args.variants.split(",")
    if unknown := [n for n in names if n not in VARIANTS]:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if "base" not in names:
        names.insert(0, "base")
    print(f"{os.cpu_count()} CPUs; {len(names)} variants, {args.seconds:.0f} s each, all at once")
    procs = {
        n: subprocess.Popen(
            [sys.executable, __file__, "--one", n, "--seconds", str(args.seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in names
    }
    ends = {}
    for name, proc in procs.items():
        for line in proc.stdout:
            row = json.loads(line)
            print(
                f"  {name:6s} "
                + (
                    f"end: {row['fields']:,} fields, {row['params']:,} parameters, "
                    f"{100 * row['val_5']:.2f} % of 1,200 validation 5-digit fields"
                    if row.get("end")
                    else f"{row['seconds']:4d} s {row['fields']:7,} fields {100 * row['val_5']:.2f} %"
                )
            )
            if row.get("end"):
                ends[name] = row
        if proc.wait():
            raise SystemExit(f"variant {name} failed")
    base = 1 - ends["base"]["val_5"]
    ratios = {n: (1 - r["val_5"]) / max(base, 1e-9) for n, r in ends.items()}
    print(", ".join(f"{n}: field error {ratio:.2f}x base's" for n, ratio in ratios.items()))
    print(json.dumps({"seconds": args.seconds, "variants": ends, "error_vs_base": ratios}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
