"""The command-line flags the jobs share, as argparse parent parsers (torchvision's
``get_args_parser(add_help=False)`` pattern), and ``--config`` files read as flags.

A flag shared by two jobs is declared here once, with one help text; a job's
parser takes the parents it needs and adds its own flags. Every flag declared
through ``Parser.setting`` is also a key a ``--config`` file may set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hdr_dist import cluster, data
from hdr_dist.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr, like every other user error; and a table
    of the settings a ``--config`` file may hold, kept as the flags are declared."""

    def __init__(self, *args, parents=(), **kwargs):
        super().__init__(*args, parents=list(parents), **kwargs)
        self.settings: dict[str, argparse.Action] = {}
        for parent in parents:
            self.settings |= getattr(parent, "settings", {})

    def setting(self, group, *names, **kwargs) -> argparse.Action:
        """``group.add_argument``, recording the flag as a setting of the same name."""
        action = group.add_argument(*names, **kwargs)
        self.settings[action.dest] = action
        return action

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number more than 0, got {text}")
    return value


def open_fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, exclusive, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def data_flags() -> Parser:
    """Which images a training job reads (compare, tune)."""
    p = Parser(add_help=False)
    g = p.add_argument_group("data")
    p.setting(g, "--dataset", default="mnist", choices=data.DATASETS,
              help="mnist is embedded; emnist-* read the official IDX files in --data-dir (default: %(default)s)")
    p.setting(g, "--data-dir", help="folder with the dataset's IDX files (default for mnist: the embedded copy)")
    p.setting(g, "--limit-train", type=positive,
              help="use a stratified sample of N training images (a tenth of them validate)")
    p.setting(g, "--limit-test", type=positive, help="use a stratified sample of N test images")
    p.setting(g, "--seed", type=int, default=0,
              help="random seed of the hold-out, initialisation, shuffles, augmentation and a sweep's search "
                   "(default: %(default)s)")
    return p


def ray_flags(workers: int | None = None, per: str = "") -> Parser:
    """The Ray cluster a job joins and, with ``workers`` (the default of --workers), how many Ray
    Train workers it places there; ``per`` says what the workers belong to, as in "per trial"."""
    p = Parser(add_help=False)
    g = p.add_argument_group("Ray")
    if workers is not None:
        p.setting(g, "--workers", type=positive, default=workers,
                  help=f"Ray Train workers, data-parallel processes{per} (default: %(default)s)")
        p.setting(g, "--cpus-per-worker", type=positive, default=1,
                  help="CPUs, and threads, per Train worker and per classical model's task (default: %(default)s)")
        p.setting(g, "--gpu", choices=("auto", "on", "off"), default="auto",
                  help="auto: one GPU per worker when the cluster has enough (default: %(default)s)")
        p.setting(g, "--placement-timeout", type=float, metavar="SECONDS",
                  help="when the cluster cannot place --workers yet, wait this long for nodes to join "
                       f"(default: {cluster.AUTOSCALER_WAIT_S} s if the cluster has an autoscaler, else fail at once)")
    p.setting(g, "--address", help="Ray cluster to join, or 'auto' for a `ray start` cluster on this machine "
                                   "(default: RAY_ADDRESS, else a new local Ray)")
    return p


def output_flags(default: str, storage: str, what: str) -> Parser:
    """Where a training job writes its results (``default``) and Ray keeps ``what`` (OUTPUT/``storage``)."""
    p = Parser(add_help=False)
    g = p.add_argument_group("output")
    p.setting(g, "--output", default=default, help="folder for the results (default: %(default)s)")
    p.setting(g, "--storage-path", help=f"{what}: a folder or a pyarrow URI such as s3://bucket/path "
                                        f"(default: OUTPUT/{storage})")
    return p


def config_flags(path: str, settings: dict[str, argparse.Action]) -> list[str]:
    """A ``--config`` JSON file as the flags it stands for, so argparse checks every value."""
    try:
        values = json.loads(Path(path).expanduser().read_text())
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"--config {path}: not a JSON file ({e})") from None
    if not isinstance(values, dict):
        raise UserError(f"--config {path}: want a JSON object of settings")
    flags = []
    for key, value in values.items():
        action = settings.get(key)
        if action is None:
            raise UserError(f"--config {path}: unknown setting {key!r}")
        if isinstance(action, argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise UserError(f"--config {path}: {key} must be true or false, got {value!r}")
            flags.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
        else:
            flags += [action.option_strings[0], str(value)]
    return flags


def parse_with_config(p: Parser, argv: list[str]) -> argparse.Namespace:
    """The flags, with ``--config``'s settings read in first so that flags on the command line win."""
    args = p.parse_args(argv)
    if args.config:
        try:
            flags = config_flags(args.config, p.settings)
        except UserError as e:
            p.error(str(e))
        p.prog = f"{p.prog} (--config {args.config})"  # a bad value in the file names the file
        args = p.parse_args([*flags, *argv])
    return args
