"""The named recipes: an architecture, its arguments and the training settings that go with it, so
seed study 002's Keras models (``*-seed``, see ``studies``) and this project's defaults (``cnn``,
``lstm``, ``crnn``) are rows of one table instead of copies of one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from hdr_dist.common.errors import UserError, quoted
from hdr_dist.models.architectures import ARCHITECTURES, keras_init


@dataclass(frozen=True)
class Recipe:
    """An architecture with its arguments, the kind of reader it makes, and the training settings it was
    designed for: only those that differ from ``TrainConfig``'s defaults, where every setting is declared."""

    arch: str
    kwargs: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # TrainConfig fields -> this recipe's values
    kind: str = "digit"  # digit: one 28x28 character; field: a strip of digits of any width
    keras_init: bool = False  # Glorot weights, zero biases: Keras' defaults, for the seeds


KERAS = dict(weight_decay=0.0, schedule="constant", augment=False)  # 002's seeds: plain Keras optimisers

RECIPES = {
    # This project's defaults: normalisation layers, AdamW with a one-cycle schedule and
    # light augmentation, sized to beat the seeds within the 12-minute CPU budget.
    # cnn: a global batch of 256 halves DDP's gradient syncs per image against 128; with channels-last
    # weights (train.setup) it trains faster and no less accurately (measured: docs/decisions.md).
    "cnn": Recipe(
        "cnn",
        dict(blocks=((16, 2, True), (32, 2, True)), hidden=128, dropout=0.25),
        dict(lr=5e-3, batch_size=256, epochs=12, label_smoothing=0.05),
    ),
    # lstm: two rows a step, faster than one row to the same accuracy (measured: docs/decisions.md).
    "lstm": Recipe(
        "lstm",
        dict(hidden=128, layers=1, bidirectional=True, readout="pool", input_norm=True, dropout=0.1),
        dict(lr=4e-3, epochs=12, rows_per_step=2),
    ),
    # Whole numeric fields: a CNN + BiLSTM read by CTC, the hybrid seed 000 proposes. An epoch is one
    # pass over the training digits, made into fields of 1 to 12 of them. Batch 16: more steps per
    # second of CPU than 64. Width 1.5 (convolutions of 24 and 48 channels, a BiLSTM of 192): in races
    # of equal CPU time it learned more per field than width 1 (benchmarks/field_variants.py), and 28
    # epochs of it read more of the 5-digit scans than 20 epochs at width 1 (measured:
    # docs/decisions.md). Checkpoints from before say width 1 and load as they were.
    "crnn": Recipe(
        "crnn",
        dict(blocks=((16, 2, True), (32, 2, True)), hidden=128, layers=1, dropout=0.1),
        dict(lr=2e-3, batch_size=16, epochs=28, augment=False, width=1.5),
        kind="field",
    ),
    # 002's Keras models, layer for layer, at 002's settings.
    "cnn-seed": Recipe(
        "cnn",
        dict(blocks=((64, 1, True), (128, 1, True), (128, 1, False)), padding=0, batchnorm=False, hidden=128),
        KERAS | dict(optimizer="rmsprop", lr=1e-3, batch_size=112, epochs=30),
        keras_init=True,
    ),
    "cnn-emnist-seed": Recipe(
        "cnn",
        dict(blocks=((32, 1, True), (64, 1, True), (128, 1, True)), batchnorm=False, hidden=512, dropout=0.5),
        KERAS | dict(optimizer="adam", lr=1e-4, batch_size=20, epochs=20),
        keras_init=True,
    ),
    "lstm-seed": Recipe(
        "lstm",
        dict(hidden=128, layers=2, activation="relu", dropout=0.2, dense=32),
        KERAS
        | dict(optimizer="adam", lr=1e-3, schedule="inverse-time", lr_decay=1e-5, batch_size=32, epochs=3),
        keras_init=True,
    ),
}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"unknown model {quoted(name)}; choose from {', '.join(RECIPES)}")
    return RECIPES[name]


def build(
    name: str,
    num_classes: int,
    width: float = 1.0,
    dropout: float | None = None,
    rows_per_step: int | None = None,
) -> nn.Module:
    """The recipe's model; ``width`` scales its channels (cnn) or hidden size (lstm) and the dense
    layer, ``dropout`` replaces the recipe's: the two architecture knobs a sweep turns.
    ``rows_per_step`` replaces an LSTM recipe's: a checkpoint's config gives it, so one trained
    before the recipe read two rows a step still loads as the one-row model it is."""
    r = recipe(name)
    kwargs = dict(r.kwargs) | (
        {"rows_per_step": rows_per_step or r.settings.get("rows_per_step", 1)} if r.arch == "lstm" else {}
    )
    if width != 1.0:
        scale = lambda n: max(1, round(n * width))  # noqa: E731 - a one-line rule, read beside its uses
        if "blocks" in kwargs:
            kwargs["blocks"] = tuple((scale(c), convs, pool) for c, convs, pool in kwargs["blocks"])
        for key in ("hidden", "dense"):
            if kwargs.get(key):
                kwargs[key] = scale(kwargs[key])
    if dropout is not None:
        kwargs["dropout"] = dropout
    model = ARCHITECTURES[r.arch](num_classes, **kwargs)
    if r.keras_init:
        keras_init(model)
    return model


def from_config(cfg) -> nn.Module:
    """The model a ``config.TrainConfig`` describes."""
    return build(cfg.model, cfg.num_classes, cfg.width, cfg.dropout, cfg.rows_per_step)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
