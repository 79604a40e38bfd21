"""``python -m hdr_dist.train``: one model trained without Ray, on this machine's device (a GPU box that
has torch but no Ray, or a check of the epoch code). The same epoch code as compare's Ray Train
workers (``training.train.train_plain``), and the same training flags, made from ``TrainConfig``.
"""

from __future__ import annotations

import logging
import os

import torch

from hdr_dist import models
from hdr_dist.jobs import flags
from hdr_dist.jobs.cli import run_job
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import train


def parser(prog: str = "python -m hdr_dist.train") -> flags.Parser:
    p = flags.Parser(
        prog=prog, description=__doc__.split("\n\n")[0].split(": ", 1)[1], parents=[flags.data_flags()]
    )
    g = p.add_argument_group("model and training")
    g.add_argument(
        "--model", default="cnn", choices=list(models.RECIPES), help="the recipe (default: %(default)s)"
    )
    flags.train_flags(g)
    g.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to train (default: %(default)s)",
    )
    return p


def run(args, console) -> int:
    ds = flags.dataset_of(args)
    cfg = TrainConfig.from_recipe(
        args.model, ds, seed=args.seed, cpus_per_worker=os.cpu_count() or 1, **flags.train_settings(args)
    )
    train.train_plain(cfg, train.arrays_of(ds), torch.device(args.device))
    return 0


def main(argv=None, prog: str = "python -m hdr_dist.train") -> int:
    args = parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the epochs' progress lines
    logging.getLogger("hdr_dist.train").setLevel(logging.INFO)
    return run_job(run, args, prog, "nothing is saved between runs; run it again")
