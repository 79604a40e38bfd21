"""The training config: the one place a training setting lives.

A recipe (``models.RECIPES``) gives each setting its default; the flags a user
sets go on top (``from_recipe``). Every Ray Train worker receives the config,
and every checkpoint stores it as a plain dict (``asdict``), so a
``torch.load(..., weights_only=True)`` reads it back without any class of ours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from hdr_dist import models
from hdr_dist.augment import AugmentRanges


@dataclass(frozen=True)
class TrainConfig:
    # what is trained, on what
    model: str                     # a recipe name: cnn, lstm, cnn-seed, ...
    arch: str                      # the recipe's architecture: cnn or lstm
    dataset: str
    labels: tuple[str, ...]        # the character of each class index
    num_classes: int
    mean: float                    # the training split's pixel statistics, on the [0, 1] scale
    std: float
    # optimisation
    epochs: int = 6
    batch_size: int = 128          # global: split across the workers
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    lr_decay: float = 0.0
    label_smoothing: float = 0.0
    # the two architecture knobs a sweep turns
    width: float = 1.0
    dropout: float | None = None   # None: the recipe's own
    # lstm: image rows per time step; 1, what checkpoints from before the setting were trained with
    rows_per_step: int = 1
    # augmentation
    augment: bool = True
    rotation: float = AugmentRanges.rotation
    shift: float = AugmentRanges.shift
    zoom: float = AugmentRanges.zoom
    # the run
    seed: int = 0
    cpus_per_worker: int = 1
    preprocess: str = "none"       # none | scan: what compare's --preprocess did to the images
    log_progress: bool = True

    @classmethod
    def from_recipe(cls, model: str, dataset, **overrides) -> TrainConfig:
        """The recipe's settings for ``dataset``, with every override that is not None on top."""
        r = models.recipe(model)
        recipe = {"epochs": r.epochs, "batch_size": r.batch_size, "lr": r.lr, "optimizer": r.optimizer,
                  "weight_decay": r.weight_decay, "schedule": r.schedule, "lr_decay": r.lr_decay,
                  "label_smoothing": r.label_smoothing, "augment": r.augment, "rows_per_step": r.rows_per_step}
        # A field model's strips are standardised without centring: zero stays paper, so the zeros that
        # pad a batch of strips of different widths read as paper too (models.CRNN).
        mean = 0.0 if r.arch in models.FIELD_ARCHITECTURES else dataset.mean
        return cls(model=model, arch=r.arch, dataset=dataset.name, labels=tuple(dataset.labels),
                   num_classes=dataset.num_classes, mean=mean, std=dataset.std,
                   **recipe | {k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_dict(cls, saved: dict) -> TrainConfig:
        """A checkpoint's config. Checkpoints older than a setting lack it and get its default,
        which is what they were trained with; keys no longer known are dropped."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in saved.items() if k in known}
        return cls(**values | {"labels": tuple(values["labels"])})

    @property
    def reads_fields(self) -> bool:
        """A field model: it reads strips of digits of any width, not one 28x28 digit."""
        return self.arch in models.FIELD_ARCHITECTURES

    def as_dict(self) -> dict:
        """Plain types only (the labels as a list), for checkpoints and run names."""
        return asdict(self) | {"labels": list(self.labels)}
