"""The readers shipped in the package, so the first page is read without training first.

Each is a checkpoint (``NAME.pt``, loaded through the same checks as any other) with its card beside it
(``NAME.json``): how it was trained, on what, how long and on which CPU, its test figures, its
calibration and its SHA-256. ``hdr models --train`` (``make readers``) trains them again
from the embedded MNIST with the settings in ``TRAINING`` and writes both. ``HDR_READERS`` names
another folder of them (a mirror, a reader trained again); by default they are the package's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hdr_dist.common.errors import SettingError, UserError, one_line, quoted

FOLDER = Path(__file__).resolve().parent.parent / "weights"
FOLDER_VARIABLE = "HDR_READERS"
# The shipped reader of each kind, read when no model is given.
DEFAULT = {"digit": "cnn", "field": "crnn"}
# What each shipped reader is trained with: compare's flags on top of its recipe (the card keeps them).
# One Train worker each, so that both train at once on a 2-core machine.
TRAINING = {
    "cnn": {"epochs": 30, "width": 2.0, "cell_artefacts": 0.4, "workers": 1, "seed": 0},
    "crnn": {"epochs": 48, "workers": 1, "seed": 0},
}

# A card's test figures, by kind: the card's name -> compare's metrics column it is read from.
FIGURES = {
    "digit": {
        "mnist_test_accuracy": "accuracy",
        "accepted_at_0.1%_error": "coverage_at_0.001",
        "error_among_accepted_at_0.1%": "test_error_at_0.001",
    },
    "field": {
        "scans_5_digit_exact": "field_accuracy_5",
        "scans_5_digit_cer": "cer_5",
        "read_rate_at_1%_error": "read_rate_at_0.01",
        "error_among_read_at_1%": "read_error_at_0.01",
        "fields_1_to_12_exact": "field_accuracy",
        "fields_1_to_12_cer": "cer",
    },
}


def figures_of(row: dict, kind: str) -> dict[str, float]:
    """A card's figures from compare's metrics row (or a test's scores) of a reader of ``kind``."""
    return {name: float(row[column]) for name, column in FIGURES[kind].items()}


def summary(figures: dict[str, float], kind: str) -> str:
    """The figures a one-line mention of a reader gives."""
    if kind == "digit":
        return (
            f"{percent(figures['mnist_test_accuracy'])} on the MNIST test split, "
            f"{percent(figures['accepted_at_0.1%_error'])} accepted at 0.1 % error"
        )
    return (
        f"{percent(figures['scans_5_digit_exact'])} of the 5-digit test scans exact, "
        f"{percent(figures['read_rate_at_1%_error'])} read at 1 % error"
    )


def percent(share: float) -> str:
    return f"{share * 100:.2f} %"


def folder() -> Path:
    return Path(os.environ.get(FOLDER_VARIABLE) or FOLDER)


def names() -> list[str]:
    """The shipped readers' names: those with a card."""
    return sorted(p.stem for p in folder().glob("*.json"))


def card(name: str) -> dict:
    """A shipped reader's card; a missing or unreadable one is one line naming it."""
    path = folder() / f"{name}.json"
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: the card of the shipped reader {name} cannot be read ({one_line(e)})"
        ) from None
    if not isinstance(found, dict) or not isinstance(found.get("sha256"), str):
        raise UserError(f"{path}: the card of the shipped reader {name} has no sha256")
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_of(name: str) -> Path:
    return folder() / f"{name}.pt"


def checkpoint(name: str) -> str:
    """The checkpoint file of the shipped reader ``name``, once its SHA-256 matches its card's: a file
    damaged on the way (a truncated download, a bit flipped on disk) is refused by name before torch
    reads a byte of it."""
    if name not in names():
        shipped = ", ".join(names()) or f"none in {folder()}"
        raise SettingError("model_name", name, f"no shipped reader of that name (shipped: {shipped})")
    path = file_of(name)
    wanted = card(name)["sha256"]
    try:
        found = sha256_of(path)
    except OSError as e:
        raise UserError(
            f"{path}: the shipped reader {name} cannot be read ({e.strerror or one_line(e)})"
        ) from None
    if found != wanted:
        raise UserError(
            f"{path}: the shipped reader {name} is damaged (SHA-256 {found[:16]}…, its card says "
            f"{quoted(wanted[:16], plain=True)}…); reinstall hdr-dist or read with a model of your own"
        )
    return str(path)


def told(*names: str) -> str:
    """The line a job starts with when it reads with shipped readers: which, and how well they read."""
    which = " and ".join(f"{name} ({card(name).get('summary', 'no figures on its card')})" for name in names)
    return f"reading with the shipped reader{'s' if len(names) > 1 else ''} {which}"
