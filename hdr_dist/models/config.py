"""The training config: the one place a training setting is declared, with its default.

A recipe (``recipes.RECIPES``) overrides the settings it was designed with; the flags a
user sets go on top (``from_recipe``). compare's flags for these settings are made from
the fields below (``jobs.flags.train_flags``): a field with ``help`` is a flag of the same
name. Every Ray Train worker receives the config, and every checkpoint stores it as a
plain dict (``as_dict``), so ``torch.load(..., weights_only=True)`` reads it back without
any class of ours; the run names of compare and tune hash that dict, so a setting added
here changes them.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

from hdr_dist.models import recipes

# A run that would take fewer optimiser steps than MIN_STEPS at its recipe's batch halves the batch,
# down to MIN_BATCH, until it takes enough. The recipes' batches and one-cycle warm-up were set for
# whole runs (cnn: 2,531 steps); 6,000 images for one epoch at 256 are 21 steps, which left the cnn at
# 87.0 %. The learning rate stays: at a batch of 16, the cnn's 5e-3 and 2.5e-3 validated alike (97.0 %
# and 97.1 %, 3 seeds each, one epoch of 5,400 images), 1.25e-3 lower (96.3 %).
MIN_STEPS = 500
MIN_BATCH = 16


def setting(default, help: str | None = None, **flag):
    """A field; with ``help``, also a flag of compare's (``flag``: argparse's ``type``, ``choices``...)."""
    return field(default=default, metadata={"help": help, **flag} if help else {})


@dataclass(frozen=True)
class TrainConfig:
    # what is trained, on what
    model: str  # a recipe name: cnn, lstm, cnn-seed, ...
    arch: str  # the recipe's architecture: cnn, lstm or crnn
    dataset: str
    labels: tuple[str, ...]  # the character of each class index
    num_classes: int
    mean: float  # the training split's pixel statistics, on the [0, 1] scale
    std: float
    # optimisation
    epochs: int = setting(6, "default: each model's recipe", type="positive")
    batch_size: int = setting(
        128, "global batch size, split across workers (default: each model's recipe)", type="positive"
    )
    lr: float = setting(3e-3, "peak learning rate (default: each model's recipe)", type=float)
    optimizer: str = "adamw"  # adamw | adam | rmsprop
    weight_decay: float = setting(5e-4, "(default: each model's recipe)", type=float)
    schedule: str = "onecycle"  # onecycle | constant | inverse-time (Keras' ``decay``)
    lr_decay: float = 0.0  # per-step decay for the inverse-time schedule
    label_smoothing: float = 0.0
    # the two architecture knobs a sweep turns
    width: float = setting(
        1.0,
        "multiplies the recipe's channels (cnn, crnn) and hidden size (lstm, crnn) "
        "(default: each model's recipe: 1.5 for crnn, else 1)",
        type=float,
    )
    dropout: float | None = setting(
        None, "dropout before the classifier (default: each model's recipe)", type=float
    )
    # lstm: image rows per time step; 1, what checkpoints from before the setting were trained with
    rows_per_step: int = 1
    # augmentation
    augment: bool = setting(
        True,
        "random rotation/shift/zoom (default: on for cnn and lstm, off for 002's *-seed models and crnn)",
        type=bool,
    )
    rotation: float = setting(10.0, "augmentation: max rotation, degrees (default: %(default)s)", type=float)
    shift: float = setting(
        0.1, "augmentation: max shift, fraction of the side (default: %(default)s)", type=float
    )
    zoom: float = setting(
        0.1, "augmentation: max zoom in or out, fraction (default: %(default)s)", type=float
    )
    # a form cell's artefacts (data.cells), on this share of each batch; 0: off, what checkpoints from
    # before the setting were trained with
    cell_artefacts: float = setting(
        0.0,
        "share of each batch given a form cell's artefacts (a fragment of its wall, a cut, a thick "
        "pen, JPEG, a bilevel scan), then cropped and centred as scoring's preprocessing does, after "
        "the rotation, shift and zoom; 0: off (default: %(default)s)",
        type="fraction",
    )
    # the run
    seed: int = 0
    cpus_per_worker: int = 1
    preprocess: str = setting(
        "none",
        "scan: pass every image through score's scan preprocessing first (default: %(default)s)",
        choices=("none", "scan"),
    )
    log_progress: bool = True

    @classmethod
    def from_recipe(cls, model: str, dataset, **overrides) -> TrainConfig:
        """The recipe's settings for ``dataset``, with every override that is not None on top."""
        r = recipes.recipe(model)
        # A field model's strips are standardised without centring: zero stays paper, so the zeros that
        # pad a batch of strips of different widths read as paper too (architectures.CRNN).
        mean = 0.0 if r.kind == "field" else dataset.mean
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(
            model=model,
            arch=r.arch,
            dataset=dataset.name,
            labels=tuple(dataset.labels),
            num_classes=dataset.num_classes,
            mean=mean,
            std=dataset.std,
            **fitted_to_run(r.settings | given, defaults(model), len(dataset.train.y), given),
        )

    @classmethod
    def from_dict(cls, saved: dict) -> TrainConfig:
        """A checkpoint's config. Checkpoints older than a setting lack it and get its default,
        which is what they were trained with; keys no longer known are dropped."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in saved.items() if k in known}
        return cls(**values | {"labels": tuple(values["labels"])})

    @property
    def kind(self) -> str:
        """What the model reads: ``digit`` (one 28x28 character) or ``field`` (a strip of digits)."""
        return recipes.recipe(self.model).kind

    def as_dict(self) -> dict:
        """Plain types only (the labels as a list), for checkpoints and run names."""
        return asdict(self) | {"labels": list(self.labels)}


def fitted_to_run(settings: dict, base: dict, n_train: int, given: dict) -> dict:
    """``settings`` with a smaller batch for a run too short for its recipe's (``MIN_STEPS``); a batch
    the user gave stays as given."""
    batch, epochs = (base | settings)["batch_size"], (base | settings)["epochs"]
    if "batch_size" in given:
        return settings
    smaller = batch
    while smaller > MIN_BATCH and n_train * epochs < MIN_STEPS * smaller:
        smaller = max(MIN_BATCH, smaller // 2)
    return settings if smaller == batch else settings | {"batch_size": smaller}


def defaults(model: str | None = None) -> dict:
    """Every setting's default, with ``model``'s recipe on top."""
    values = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    return values | (recipes.recipe(model).settings if model else {})


def recipe_settings() -> set[str]:
    """The settings some recipe sets: their flags default to each model's recipe."""
    return {key for r in recipes.RECIPES.values() for key in r.settings} | {"dropout"}


def flag_settings() -> list:
    """TrainConfig's fields that are compare's flags, in order."""
    return [f for f in fields(TrainConfig) if f.metadata.get("help")]
