"""The command-line flags the jobs share, as argparse parent parsers (torchvision's
``get_args_parser(add_help=False)`` pattern), and ``--config`` files read as flags.

A flag shared by two jobs is declared here once, with one help text; a job's
parser takes the parents it needs and adds its own flags. The training settings'
flags are made from ``TrainConfig``'s fields (``train_flags``), where each is declared.
Every job takes ``--config FILE``: each of its flags is a key such a file may set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from hdr_dist.bulk.committer import COMMIT_SECONDS
from hdr_dist.common import cluster
from hdr_dist.common.errors import UserError, quoted
from hdr_dist.data import datasets
from hdr_dist.imaging.images import DEFAULT_MAX_PIXELS
from hdr_dist.models import config
from hdr_dist.training import tracking


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr, like every other user error; and a job's
    parser (one with ``--help``) takes ``--config FILE``, whose settings go in before the flags."""

    def __init__(self, *args, parents=(), **kwargs):
        super().__init__(*args, parents=list(parents), **kwargs)
        if self.add_help:
            self.add_argument(
                "--config",
                metavar="FILE",
                help='a JSON object of settings named like these flags ({"lr": 0.005, ...}), such as '
                "tune's best_config.json; flags given here win",
            )

    @property
    def settings(self) -> dict[str, argparse.Action]:
        """The settings a ``--config`` file may hold: every flag but --help and --config."""
        return {a.dest: a for a in self._actions if a.option_strings and a.dest not in ("help", "config")}

    def parse_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else [str(a) for a in args]
        if not self.add_help:
            return super().parse_args(argv, namespace)
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config")
        path = pre.parse_known_args(argv)[0].config
        if path is None:
            return super().parse_args(argv, namespace)
        try:
            flags = config_flags(path, self.settings)
        except UserError as e:
            self.error(str(e))
        self.prog = f"{self.prog} (--config {path})"  # a bad value in the file names the file
        return super().parse_args([*flags, *argv], namespace)

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
    g.add_argument(
        "--dataset",
        default="mnist",
        choices=datasets.DATASETS,
        help="mnist is embedded; emnist-* read the official IDX files in --data-dir (default: %(default)s)",
    )
    g.add_argument(
        "--data-dir", help="folder with the dataset's IDX files (default for mnist: the embedded copy)"
    )
    g.add_argument(
        "--limit-train",
        type=positive,
        help="use a stratified sample of N training images (a tenth of them validate)",
    )
    g.add_argument("--limit-test", type=positive, help="use a stratified sample of N test images")
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed of the hold-out, initialisation, shuffles, augmentation and a sweep's search "
        "(default: %(default)s)",
    )
    return p


def dataset_of(args) -> datasets.Dataset:
    """The data set ``data_flags`` name, preprocessed as the training flags ask (``--preprocess``)."""
    return datasets.load(
        args.dataset,
        args.data_dir,
        seed=args.seed,
        limit_train=args.limit_train,
        limit_test=args.limit_test,
        scan_preprocess=args.preprocess == "scan",
    )


def worker_count(text: str) -> int | None:
    """--workers: a number, or ``auto`` (None), which ``cluster.placement`` decides on the cluster."""
    if text == "auto":
        return None
    try:
        return positive(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of workers or auto, got {text!r}") from None


def gpu_flag(group, text: str) -> None:
    """--gpu, for a training job's workers or a bulk job's actors; ``text`` says what gets a GPU."""
    group.add_argument("--gpu", choices=("auto", "on", "off"), default="auto", help=text)


def ray_flags(workers: int | str | None = None, per: str = "") -> Parser:
    """The Ray cluster a job joins and, with ``workers`` (the default of --workers), how many Ray
    Train workers it places there; ``per`` says what the workers belong to, as in "per trial"."""
    p = Parser(add_help=False)
    g = p.add_argument_group("Ray")
    if workers is not None:
        g.add_argument(
            "--workers",
            type=worker_count,
            default=str(workers),
            metavar="N|auto",
            help=f"Ray Train workers, data-parallel processes{per}; auto: one per GPU, or on CPU-only "
            "nodes one per core (default: %(default)s)",
        )
        g.add_argument(
            "--cpus-per-worker",
            type=positive,
            help="CPUs, and torch threads, per Train worker and per classical model's task "
            "(default: with --workers auto, what it picks; else 1)",
        )
        gpu_flag(g, "auto: one GPU per worker when the cluster has enough (default: %(default)s)")
        g.add_argument(
            "--placement-timeout",
            type=float,
            metavar="SECONDS",
            help="when the cluster cannot place --workers yet, wait this long for nodes to join "
            f"(default: {cluster.AUTOSCALER_WAIT_S} s if the cluster has an autoscaler, else fail at once)",
        )
    g.add_argument(
        "--address",
        help="Ray cluster to join, or 'auto' for a `ray start` cluster on this machine "
        "(default: RAY_ADDRESS, else a new local Ray)",
    )
    return p


def output_flags(default: str, storage: str, what: str) -> Parser:
    """Where a training job writes its results (``default``) and Ray keeps ``what`` (OUTPUT/``storage``)."""
    p = Parser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("--output", default=default, help="folder for the results (default: %(default)s)")
    g.add_argument(
        "--storage-path",
        help=f"{what}: a folder or a pyarrow URI such as s3://bucket/path (default: OUTPUT/{storage})",
    )
    return p


@dataclass(frozen=True)
class BulkJob:
    """What a bulk job's shared flags say of it (score, forms): ``item`` is what a row holds (an image, a
    page), the defaults that differ, and the words each shared flag takes for the job. ``required``: the
    job cannot run without --model and --output (forms also runs --check-template alone, and says so
    itself); ``labels_from`` and ``threshold`` add score's other ways to give labels and a reject rule,
    each exclusive with its shared partner."""

    item: str
    done: str  # what the job did to an item, as its live line says it: "scored 512/2,000 images"
    inputs: str  # what INPUT may name
    batch: int
    cpus_per_actor: float
    cpus_note: str
    commit_rows: int
    model_help: str
    output_help: str
    labels_help: str
    target_error_help: str
    review_help: str
    required: bool = False  # --output and INPUT (else the job checks them itself)
    labels_from: bool = False
    threshold: bool = False


def bulk_flags(job: BulkJob) -> Parser:
    """A bulk job over files and archives (score, forms): its model and output, its labels, its reject
    option and review queue, its inference actors, how its rows are made durable as it runs, resuming,
    and the largest image it decodes."""
    p = Parser(add_help=False)
    p.add_argument("inputs", nargs="+" if job.required else "*", metavar="INPUT", help=job.inputs)
    p.add_argument(
        "--model",
        help=f"{job.model_help} (default: the readers shipped with hdr-dist; hdr models lists them)",
    )
    p.add_argument("--output", required=job.required, help=job.output_help)
    labels = p.add_mutually_exclusive_group() if job.labels_from else p
    labels.add_argument("--labels", metavar="FILE", help=job.labels_help)
    if job.labels_from:
        labels.add_argument(
            "--labels-from", choices=("dirname",), help="dirname: each image's folder name is its label"
        )
    reject_flags(p.add_argument_group("reject option and review queue"), job)
    ray_data_flags(p.add_argument_group("Ray Data"), job)
    return p


def reject_flags(group, job: BulkJob) -> None:
    rule = group.add_mutually_exclusive_group() if job.threshold else group
    rule.add_argument("--target-error", type=open_fraction, metavar="E", help=job.target_error_help)
    if job.threshold:
        rule.add_argument(
            "--threshold",
            type=fraction,
            metavar="T",
            help="accept the answers whose calibrated confidence is at least T; the rest: review "
            "(default, without --target-error: accept every scored image)",
        )
    group.add_argument("--review-rows", type=positive, default=500, metavar="N", help=job.review_help)


def ray_data_flags(g, job: BulkJob) -> None:
    item = job.item
    g.add_argument(
        "--batch-size",
        type=positive,
        default=job.batch,
        help=f"{item}s per inference batch (default: %(default)s)",
    )
    g.add_argument(
        "--concurrency",
        type=positive,
        help="inference actors (default: one per GPU, else one per 4 CPUs of the cluster, at least 1)",
    )
    g.add_argument(
        "--cpus-per-actor",
        type=float,
        default=job.cpus_per_actor,
        help=f"CPUs each inference actor reserves on a CPU-only cluster; {job.cpus_note} "
        "(default: %(default)s)",
    )
    gpu_flag(g, "auto: a GPU per inference actor when the cluster has one (default: %(default)s)")
    g.add_argument("--resume", action="store_true", help="keep what OUTPUT (or OUTPUT.partial) already holds")
    g.add_argument(
        "--commit-rows",
        type=positive,
        default=job.commit_rows,
        metavar="N",
        help=f"{item}s are made durable in pieces of at most N, so a killed run loses at most that many "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--commit-seconds",
        type=positive_float,
        default=COMMIT_SECONDS,
        metavar="T",
        help=f"and no {item} waits longer than T seconds to be made durable (default: %(default)s)",
    )
    g.add_argument(
        "--max-pixels",
        type=positive,
        default=DEFAULT_MAX_PIXELS,
        help=f"larger {item}s are refused as decompression bombs (default: %(default)s)",
    )


def bulk_config(args, plan) -> dict:
    """The ``BulkConfig`` settings a bulk job's flags and the cluster's plan decide, as keyword arguments
    for the job's config (``ScoreConfig``, ``FormsConfig``)."""
    return {
        "inputs": tuple(args.inputs),
        "labelled": bool(args.labels or getattr(args, "labels_from", None)),
        "batch_size": args.batch_size,
        "max_pixels": args.max_pixels,
        "commit_rows": args.commit_rows,
        "commit_seconds": args.commit_seconds,
        "review_rows": args.review_rows,
        "cpus_per_actor": args.cpus_per_actor,
        **dataclasses.asdict(plan),
    }


def training_flags(workers: int | str, per: str, output: tuple[str, str, str]) -> list[Parser]:
    """A training job's parents (compare, tune): its data, its Ray Train workers (``workers`` the
    default, ``per`` what they belong to), its ``output`` (``output_flags``' arguments) and its
    tracking."""
    return [data_flags(), ray_flags(workers, per), output_flags(*output), tracking_flags()]


def tracking_flags() -> Parser:
    """MLflow tracking of a training job's runs (compare, tune)."""
    p = Parser(add_help=False)
    p.add_argument_group("tracking").add_argument(
        "--mlflow",
        nargs="?",
        const="",
        metavar="URI",
        help="log each model's (or trial's) run to MLflow at URI: a server or a folder; without URI, "
        "MLFLOW_TRACKING_URI, else ./mlruns (default: off; needs pip install 'hdr-dist[mlflow]')",
    )
    return p


def mlflow_closing(uri: str, experiment: str) -> str:
    """A training job's closing lines on its MLflow runs at ``uri``: where they are, and for a store that
    is not a server (whose address is its UI) the command that opens them in MLflow's UI. The UI comes
    with the full ``mlflow`` package, which the extra leaves out (docs/decisions.md), and it opens a
    folder store only with ``tracking.ALLOW_FILE_STORE`` set."""
    where = f"MLflow: experiment {experiment!r} at {uri}"
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("file", *tracking.DATABASES):
        return where
    setting = "=".join(tracking.ALLOW_FILE_STORE) + " " if scheme == "file" else ""
    command = f"{setting}mlflow ui --backend-store-uri {uri}"
    return f"{where}\nMLflow's UI (the full mlflow package, in a venv of its own): {command}"


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
            raise UserError(f"--config {path}: unknown setting {quoted(key)}")
        if action.nargs == 0 and not isinstance(value, bool):
            raise UserError(
                f"--config {path}: {quoted(key, plain=True)} must be true or false, got {quoted(value)}"
            )
        if isinstance(action, argparse.BooleanOptionalAction):
            flags.append(f"--{'' if value else 'no-'}{key.replace('_', '-')}")
        elif action.nargs == 0:  # a switch such as --resume: given when true
            flags += [action.option_strings[0]] if value else []
        else:
            flags += [action.option_strings[0], str(value)]
    return flags


def train_flags(group) -> None:
    """compare's flags for ``TrainConfig``'s settings, made from its fields. A setting some recipe sets
    defaults to None here, which ``TrainConfig.from_recipe`` reads as "the recipe's"."""
    by_recipe = config.recipe_settings()
    for f in config.flag_settings():
        meta = dict(f.metadata)
        text, kind = meta.pop("help"), meta.pop("type", None)
        default = None if f.name in by_recipe else f.default
        name = "--" + f.name.replace("_", "-")
        if kind is bool:
            group.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            kind = {"positive": positive, "fraction": fraction}.get(kind, kind)
            group.add_argument(name, type=kind, default=default, help=text, **meta)


def train_settings(args) -> dict:
    """The values of the flags ``train_flags`` made, as ``TrainConfig`` settings (None: the recipe's)."""
    return {f.name: getattr(args, f.name) for f in config.flag_settings()}
