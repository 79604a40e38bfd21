"""``hdr tune`` / ``python jobs/tune.py``: sweep a deep model's hyperparameters with Ray Tune.

Each trial is a Ray Train run: a Tune function trainable starts Train V2's
``TorchTrainer`` on the same worker loop compare uses, and ``TuneReportCallback``
hands every epoch's report to Tune, where ASHA stops the trials that trail.
Trials run side by side only as far as the cluster can hold all their workers,
so none waits for CPUs held by another. Running the same command again resumes
an interrupted sweep: Tune restores the experiment, and each unfinished trial's
Train run resumes from its own last checkpoint, because it is named after the
trial's id.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from hdr_dist import models
from hdr_dist.common import cluster, ray_compat, storage, tables
from hdr_dist.common.errors import UserError
from hdr_dist.data import datasets
from hdr_dist.jobs import flags
from hdr_dist.jobs.cli import job_console, run_job
from hdr_dist.jobs.flags import Parser, positive
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig
from hdr_dist.reports import display
from hdr_dist.reports.html_report import write_report
from hdr_dist.training import kinds, sweep, tracking, train
from hdr_dist.training.tuner import start_or_restore

DRIVER_MEMORY = 256 * 2**20  # bytes Ray reserves for each trial's driver process


def parser(prog: str = "hdr tune") -> Parser:
    p = Parser(
        prog=prog,
        description="Sweep a deep model's hyperparameters with Ray Tune: each trial a Ray Train "
        "run, ASHA stopping the weak ones early; the best model is tested once.",
        parents=flags.training_flags(
            1, " per trial", ("results-tune", "ray_tune", "Ray Tune and Train storage")
        ),
    )
    g = p.add_argument_group("sweep")
    g.add_argument("--model", default="cnn", choices=list(models.RECIPES), help="(default: %(default)s)")
    g.add_argument("--num-samples", type=positive, default=16, help="trials (default: %(default)s)")
    g.add_argument(
        "--epochs",
        type=positive,
        default=4,
        help="epochs a trial runs unless ASHA stops it first (default: %(default)s)",
    )
    g.add_argument(
        "--grace-period",
        type=positive,
        default=1,
        help="ASHA: epochs every trial runs before it can be stopped (default: %(default)s)",
    )
    g.add_argument(
        "--reduction-factor",
        type=positive,
        default=3,
        help="ASHA: at each rung, only the best 1/N of trials go on (default: %(default)s)",
    )
    g.add_argument(
        "--recipe-first",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="make the recipe's own settings the first trial, so the sweep is measured against "
        "them (default: on)",
    )
    g.add_argument(
        "--max-concurrent",
        type=positive,
        help="trials at once (default: as many as the cluster holds with all their workers)",
    )
    return p


def sweep_name(args, base: TrainConfig) -> str:
    """Same command -> same name -> the sweep resumes; changed settings start a new one."""
    keys = (
        "num_samples",
        "epochs",
        "grace_period",
        "reduction_factor",
        "recipe_first",
        "seed",
        "limit_train",
    )
    settings = base.as_dict() | {k: getattr(args, k) for k in keys} | {"workers": args.workers}
    return storage.run_name(f"sweep-{base.dataset}-{base.model}", settings)


def best_config(row: dict, args) -> dict:
    """The best trial as compare's flags: ``compare --config best_config.json`` trains it again."""
    out = {"models": args.model, "dataset": args.dataset} | (
        {"data_dir": args.data_dir} if args.data_dir else {}
    )
    out |= sweep.settings(row) | {"epochs": args.epochs, "seed": args.seed}
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def score_best(row: dict, ds: datasets.Dataset, location: str, workers: cluster.Workers) -> tuple[dict, dict]:
    """The best trial's best checkpoint, scored once on the test split: its tables, and its metrics row."""
    from ray.train import Checkpoint

    checkpoint = Checkpoint(row["checkpoint"], filesystem=storage.filesystem(location)[0])
    state = checkpoints.load_ray(checkpoint)
    cfg = TrainConfig.from_dict(state["config"])
    kind = kinds.of(cfg)
    # Uncalibrated, as the sweep compared its trials.
    scores = kind.test(state, kind.test_sets(ds, cfg.seed), temperature=1.0).scores
    history = state["history"]  # up to the best epoch: the checkpoint was taken then
    model = state["config"]["model"]
    metrics = tables.trained_row(
        ds.name,
        model,
        scores,
        history,
        workers=workers,
        checkpoint=checkpoints.uri(checkpoint),
        method=f"{model} recipe with sweep trial {row['trial_id']}'s settings",
    )
    return {"metrics": [metrics]} | tables.model_tables(
        ds.name, model, ds.labels, scores, history, (ds.test.x, ds.test.y)
    ), metrics


def run_sweep(
    args,
    ds: datasets.Dataset,
    location: str,
    workers: cluster.Workers,
    console: Console,
    tracker: tracking.Tracker | None = None,
):
    """Run (or resume) the sweep to its end: Tune's results, the folder they are kept in, and with
    ``tracker`` the sweep's MLflow run, under which each trial's run is nested."""
    from ray import tune

    at_once = sweep.concurrency(workers.count, workers.cpus, workers.gpu, args.max_concurrent)
    base = TrainConfig.from_recipe(
        args.model, ds, epochs=args.epochs, seed=args.seed, cpus_per_worker=workers.cpus, log_progress=False
    )
    name = sweep_name(args, base)
    if tracker is not None:
        keys = ("num_samples", "grace_period", "reduction_factor", "recipe_first")  # what names the sweep
        tracker = tracker.start(name, name, base.as_dict() | {k: getattr(args, k) for k in keys})
    tuner, restored = start_or_restore(
        f"{location}/{name}",
        trainable(base, ds, name, workers, location, tracker),
        sweep.search_space(args.model),
        tune_config(args, at_once),
        tune.RunConfig(
            name=name,
            storage_path=location,
            verbose=0,
            callbacks=[sweep.progress(args.num_samples, job_console)],
        ),
    )
    console.print(
        f"[bold]{'resuming' if restored else 'sweeping'}[/] {args.model} on {ds.name}: "
        f"{args.num_samples} trials of up to {args.epochs} epochs, {at_once} at a time, "
        f"{workers.count} worker(s) x {workers.cpus} CPU(s) each; {len(ds.train.y):,} train / "
        f"{len(ds.val.y):,} validation images"
    )
    results = tuner.fit()
    if len(results) < args.num_samples or results.num_terminated + results.num_errors < len(results):
        raise KeyboardInterrupt  # Tune ends a sweep on Ctrl-C by saving it and returning
    return results, f"{location}/{name}", tracker


def trainable(
    base: TrainConfig,
    ds: datasets.Dataset,
    name: str,
    workers: cluster.Workers,
    location: str,
    tracker: tracking.Tracker | None,
):
    """What Tune runs per trial (``sweep.trial``), with what every trial shares bound to it, and the
    resources its driver holds."""
    import ray
    from ray import tune

    # The images' reference goes in a list: with_parameters would fetch a bare reference's value and
    # hand every trial, and so every Train worker, its own copy of the arrays.
    bound = tune.with_parameters(
        sweep.trial,
        base=base,
        images=[ray.put(train.arrays_of(ds))],
        sweep=name,
        workers=workers.count,
        use_gpu=workers.gpu,
        location=location,
        tracker=tracker,
    )
    # A trial's driver only waits on its Train run: it holds memory for its process, not a CPU.
    return tune.with_resources(bound, {"CPU": 0, "memory": DRIVER_MEMORY})


def tune_config(args, at_once: int):
    """The sweep's search: ``num_samples`` trials, at most ``at_once`` at a time, the recipe's own
    settings first with ``--recipe-first``, and ASHA stopping the trials that trail."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return tune.TuneConfig(
        metric=sweep.METRIC,
        mode="max",
        num_samples=args.num_samples,
        scheduler=ASHAScheduler(
            time_attr="epoch",
            max_t=args.epochs,
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
        ),
        search_alg=BasicVariantGenerator(
            points_to_evaluate=[sweep.recipe_point(args.model)] if args.recipe_first else None,
            max_concurrent=at_once,
            random_state=args.seed,
        ),
    )


def run(args, console: Console) -> int:
    started = time.perf_counter()
    if args.grace_period > args.epochs:
        raise UserError(f"--grace-period {args.grace_period} is longer than --epochs {args.epochs}")
    if args.reduction_factor < 2:
        raise UserError("--reduction-factor must be at least 2")
    output = storage.prepare_output(args.output)
    tracker = None if args.mlflow is None else tracking.open_tracker(args.mlflow, output.name, output)
    location = storage.storage_location(args.storage_path, output / "ray_tune")
    ds = datasets.load(
        args.dataset, args.data_dir, seed=args.seed, limit_train=args.limit_train, limit_test=args.limit_test
    )
    cluster.connect(args.address, log_to_driver=False)  # many trials' Ray logs would bury the progress lines
    workers = cluster.placement(args.workers, args.cpus_per_worker, args.gpu, args.placement_timeout, console)
    cluster.require_shared(
        storage.shared_locations(args.storage_path, output, location) | (tracker.shared() if tracker else {})
    )
    results, where, sweep_run = run_sweep(args, ds, location, workers, console, tracker)

    rows = sweep.trial_rows(results, args.epochs)
    tables.write_tables(output, {"trials": rows})
    scored = [r for r in rows if r["best_val_acc"] is not None]
    if not scored:
        raise UserError(f"no trial reported a result; see the trials' logs under {where}")
    best = max(scored, key=lambda r: r["best_val_acc"])
    (output / "best_config.json").write_text(json.dumps(best_config(best, args), indent=2) + "\n")
    best_tables, metrics = score_best(best, ds, location, workers)
    tables.write_tables(output, best_tables)
    display.print_trials(rows, console)
    display.print_table([metrics], console)
    console.print(
        f"best trial {best['trial_id']}: val acc {100 * best['best_val_acc']:.2f} %, "
        f"test acc {100 * metrics['accuracy']:.2f} %; `hdr compare --config {output / 'best_config.json'}` "
        f"trains it again"
    )
    console.print(f"report: {write_report(output)}")
    if sweep_run is not None:
        sweep_run.end_children({sweep.trial_run(Path(where).name, r["trial_id"]): r["status"] for r in rows})
        sweep_run.finish(
            metrics | {"best_val_acc": best["best_val_acc"]},
            {
                "figures": sorted((output / "figures").glob("*.png")),
                None: [output / "report.html"],
                "checkpoint": [metrics["checkpoint"]],
            },
        )
        console.print(
            flags.mlflow_closing(sweep_run.uri, output.name), soft_wrap=True, markup=False, highlight=False
        )
    console.print(f"results in {output} ({time.perf_counter() - started:.0f} s)")
    return 0


def main(argv=None, prog: str = "hdr tune") -> int:
    args = parser(prog).parse_args(argv)
    ray_compat.tune_output_settings()  # no banner from Tune's output engine, for this process
    return run_job(run, args, prog, "run the same command again to resume the sweep")
