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
import os
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from hdr_dist import checkpoints, cluster, data, display, evaluate, flags, models, storage, tables, train
from hdr_dist.augment import AugmentRanges
from hdr_dist.cli import run_job
from hdr_dist.config import TrainConfig
from hdr_dist.errors import UserError
from hdr_dist.flags import Parser, positive
from hdr_dist.html_report import write_report
from hdr_dist.tuner import start_or_restore

METRIC = "val_acc"
DRIVER_MEMORY = 256 * 2**20  # bytes Ray reserves for each trial's driver process


def parser(prog: str = "hdr tune") -> Parser:
    p = Parser(prog=prog, description="Sweep a deep model's hyperparameters with Ray Tune: each trial a Ray Train "
                                      "run, ASHA stopping the weak ones early; the best model is tested once.",
               parents=[flags.data_flags(), flags.ray_flags(workers=1, per=" per trial"),
                        flags.output_flags("results-tune", "ray_tune", "Ray Tune and Train storage")])
    g = p.add_argument_group("sweep")
    g.add_argument("--model", default="cnn", choices=list(models.RECIPES), help="(default: %(default)s)")
    g.add_argument("--num-samples", type=positive, default=16, help="trials (default: %(default)s)")
    g.add_argument("--epochs", type=positive, default=4,
                   help="epochs a trial runs unless ASHA stops it first (default: %(default)s)")
    g.add_argument("--grace-period", type=positive, default=1,
                   help="ASHA: epochs every trial runs before it can be stopped (default: %(default)s)")
    g.add_argument("--reduction-factor", type=positive, default=3,
                   help="ASHA: at each rung, only the best 1/N of trials go on (default: %(default)s)")
    g.add_argument("--recipe-first", action=argparse.BooleanOptionalAction, default=True,
                   help="make the recipe's own settings the first trial, so the sweep is measured against "
                        "them (default: on)")
    g.add_argument("--max-concurrent", type=positive,
                   help="trials at once (default: as many as the cluster holds with all their workers)")
    return p


def search_space(model: str) -> dict:
    """What a sweep of ``model`` varies: optimiser settings, the two architecture knobs, augmentation."""
    from ray import tune

    arch = models.recipe(model).arch
    return {
        "lr": tune.loguniform(1e-3, 1e-2),
        "batch_size": tune.choice([64, 128, 256]),
        "weight_decay": tune.loguniform(1e-5, 1e-2),
        "dropout": tune.uniform(0.0, 0.5 if arch == "cnn" else 0.3),
        # channels (cnn) or hidden size (lstm), as a multiple of the recipe's
        "width": tune.choice([0.5, 1.0, 1.5]),
        # rotation, shift and zoom ranges, as a multiple of the defaults; 0 turns augmentation off
        "augment_strength": tune.uniform(0.0, 1.5),
    }


def recipe_point(model: str) -> dict:
    """The recipe's own values of every swept setting: the sweep's first trial."""
    r = models.recipe(model)
    return {"lr": r.lr, "batch_size": r.batch_size, "weight_decay": r.weight_decay,
            "dropout": float(r.kwargs.get("dropout", 0.0)), "width": 1.0,
            "augment_strength": 1.0 if r.augment else 0.0}


def settings(sample: dict) -> dict:
    """A trial's sample as ``TrainConfig`` settings (which are also compare's flags)."""
    s = sample["augment_strength"]
    return {"lr": sample["lr"], "batch_size": int(sample["batch_size"]), "weight_decay": sample["weight_decay"],
            "dropout": sample["dropout"], "width": float(sample["width"]), "augment": s > 0,
            "rotation": AugmentRanges.rotation * s, "shift": AugmentRanges.shift * s, "zoom": AugmentRanges.zoom * s}


def trial(sample: dict, base: TrainConfig, images: list, sweep: str, workers: int, use_gpu: bool, location: str) -> None:
    """One trial, run by Tune: a Ray Train run of the sampled settings that reports to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    name = f"{sweep}-trial-{tune.get_context().get_trial_id()}"  # a restored trial resumes this run
    train.fit(replace(base, **settings(sample)), images[0], workers=workers, use_gpu=use_gpu, storage_path=location,
              name=name, callbacks=[TuneReportCallback()])


def concurrency(workers: int, cpus_per_worker: int, use_gpu: bool, requested: int | None) -> int:
    """Trials at once: as many as the cluster holds with every trial's workers placed.

    A trial's driver (the Tune trainable) asks for no CPU; it only waits on its Train run,
    whose controller asks for none either. More trials than this would leave a Train run
    waiting for workers while its trial's clock runs.
    """
    fits = cluster.slots([n["Resources"] for n in cluster.alive_nodes()], cpus_per_worker, use_gpu) // workers
    if requested and requested > max(fits, 1):
        raise UserError(f"--max-concurrent {requested}: the Ray cluster holds {fits} trials of {workers} "
                        f"worker(s) x {cpus_per_worker} CPU(s) at once")
    return requested or max(fits, 1)


def progress(total: int):
    """A Tune callback: a line per trial event, each ending with trials running and done and the best so far.

    Tune pickles its callbacks with the experiment, so this one keeps no console, only counts.
    """
    from ray import tune

    from hdr_dist.cli import job_console

    class Progress(tune.Callback):
        best = (-1.0, "")

        def event(self, trials, line: str) -> None:
            states = [t.status for t in trials]
            best = f"best {100 * self.best[0]:.2f} % ({self.best[1]})" if self.best[1] else "best: none yet"
            job_console().print(f"{line}  [dim]| {states.count('RUNNING')} running, "
                            f"{states.count('TERMINATED') + states.count('ERROR')}/{total} done, {best}[/]")

        def on_trial_start(self, iteration, trials, trial, **info):
            self.event(trials, f"trial {trial.trial_id} started: {short(trial.config)}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get(METRIC, -1) > self.best[0]:
                self.best = (result[METRIC], trial.trial_id)
            self.event(trials, f"trial {trial.trial_id} epoch {result.get('epoch')}: "
                               f"val acc {100 * result.get(METRIC, 0):.2f} %")

        def on_trial_complete(self, iteration, trials, trial, **info):
            epochs = (trial.last_result or {}).get("epoch", 0)
            self.event(trials, f"trial {trial.trial_id} finished after {epochs} epoch(s)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.event(trials, f"trial {trial.trial_id} failed: its log is in {trial.path}")

    return Progress()


def short(sample: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sample.items())


def sweep_name(args, base: TrainConfig) -> str:
    """Same command -> same name -> the sweep resumes; changed settings start a new one."""
    keys = ("num_samples", "epochs", "grace_period", "reduction_factor", "recipe_first", "seed", "limit_train")
    settings = base.as_dict() | {k: getattr(args, k) for k in keys} | {"workers": args.workers}
    return storage.run_name(f"sweep-{base.dataset}-{base.model}", settings)


def trial_rows(results, epochs: int) -> list[dict]:
    """One row per trial: id, every swept setting, its best validation accuracy, epochs, seconds, status."""
    rows = []
    for result in results:
        history = result.metrics_dataframe
        reported = history is not None and len(history) > 0 and METRIC in history
        best = history.loc[history[METRIC].idxmax()] if reported else None
        ran = int(history["epoch"].max()) if reported else 0
        status = ("error" if result.error else "completed" if ran >= epochs else "stopped early")
        rows.append({"trial_id": (result.metrics or {}).get("trial_id") or Path(result.path).name}
                    | {k: result.config[k] for k in sorted(result.config)}
                    | {"best_val_acc": float(best[METRIC]) if reported else None,
                       "best_epoch": int(best["epoch"]) if reported else None, "epochs": ran,
                       "seconds": float(history["seconds"].sum()) if reported else 0.0, "status": status,
                       "checkpoint": best.get("checkpoint_path") if reported else None})
    return sorted(rows, key=lambda r: r["trial_id"])


def best_config(row: dict, args) -> dict:
    """The best trial as compare's flags: ``compare --config best_config.json`` trains it again."""
    out = {"models": args.model, "dataset": args.dataset} | ({"data_dir": args.data_dir} if args.data_dir else {})
    out |= settings(row) | {"epochs": args.epochs, "seed": args.seed}
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def score_best(row: dict, ds: data.Dataset, location: str, workers: int, use_gpu: bool) -> tuple[dict, dict]:
    """The best trial's best checkpoint, scored once on the test split: its tables, and its metrics row."""
    from ray.train import Checkpoint

    checkpoint = Checkpoint(row["checkpoint"], filesystem=storage.filesystem(location)[0])
    state = checkpoints.load_ray(checkpoint)
    scores = evaluate.evaluate_state(state, ds.test.x, ds.test.y)
    history = state["history"]  # up to the best epoch: the checkpoint was taken then
    model = state["config"]["model"]
    metrics = tables.trained_row(ds.name, model, scores, history, workers=workers, use_gpu=use_gpu,
                                 checkpoint=checkpoints.uri(checkpoint),
                                 method=f"{model} recipe with sweep trial {row['trial_id']}'s settings")
    return {"metrics": [metrics]} | tables.model_tables(ds.name, model, ds.labels, scores, history,
                                                        (ds.test.x, ds.test.y)), metrics


def sweep(args, ds: data.Dataset, location: str, use_gpu: bool, console: Console):
    """Run (or resume) the sweep to its end: Tune's results, and the folder they are kept in."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    at_once = concurrency(args.workers, args.cpus_per_worker, use_gpu, args.max_concurrent)
    base = TrainConfig.from_recipe(args.model, ds, epochs=args.epochs, seed=args.seed,
                                   cpus_per_worker=args.cpus_per_worker, log_progress=False)
    name = sweep_name(args, base)
    # The images' reference goes in a list: with_parameters would fetch a bare reference's value and
    # hand every trial, and so every Train worker, its own copy of the arrays.
    trainable = tune.with_parameters(trial, base=base, images=[ray.put(train.arrays_of(ds))], sweep=name,
                                     workers=args.workers, use_gpu=use_gpu, location=location)
    # A trial's driver only waits on its Train run: it holds memory for its process, not a CPU.
    trainable = tune.with_resources(trainable, {"CPU": 0, "memory": DRIVER_MEMORY})
    tuner, restored = start_or_restore(
        f"{location}/{name}", trainable, search_space(args.model),
        tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=args.num_samples,
            scheduler=ASHAScheduler(time_attr="epoch", max_t=args.epochs, grace_period=args.grace_period,
                                    reduction_factor=args.reduction_factor),
            search_alg=BasicVariantGenerator(points_to_evaluate=[recipe_point(args.model)] if args.recipe_first
                                             else None, max_concurrent=at_once, random_state=args.seed)),
        tune.RunConfig(name=name, storage_path=location, verbose=0, callbacks=[progress(args.num_samples)]))
    console.print(f"[bold]{'resuming' if restored else 'sweeping'}[/] {args.model} on {ds.name}: "
                  f"{args.num_samples} trials of up to {args.epochs} epochs, {at_once} at a time, "
                  f"{args.workers} worker(s) each; {len(ds.train.y):,} train / {len(ds.val.y):,} validation images")
    results = tuner.fit()
    if len(results) < args.num_samples or results.num_terminated + results.num_errors < len(results):
        raise KeyboardInterrupt  # Tune ends a sweep on Ctrl-C by saving it and returning
    return results, f"{location}/{name}"


def run(args, console: Console) -> int:
    started = time.perf_counter()
    if args.grace_period > args.epochs:
        raise UserError(f"--grace-period {args.grace_period} is longer than --epochs {args.epochs}")
    if args.reduction_factor < 2:
        raise UserError("--reduction-factor must be at least 2")
    output = storage.prepare_output(args.output)
    location = storage.storage_location(args.storage_path, output / "ray_tune")
    ds = data.load(args.dataset, args.data_dir, seed=args.seed, limit_train=args.limit_train,
                   limit_test=args.limit_test)
    cluster.connect(args.address, log_to_driver=False)  # many trials' Ray logs would bury the progress lines
    use_gpu = cluster.placement(args.workers, args.cpus_per_worker, args.gpu, args.placement_timeout, console)
    cluster.require_shared(storage.shared_locations(args.storage_path, output, location))
    results, where = sweep(args, ds, location, use_gpu, console)

    rows = trial_rows(results, args.epochs)
    tables.write_tables(output, {"trials": rows})
    scored = [r for r in rows if r["best_val_acc"] is not None]
    if not scored:
        raise UserError(f"no trial reported a result; see the trials' logs under {where}")
    best = max(scored, key=lambda r: r["best_val_acc"])
    (output / "best_config.json").write_text(json.dumps(best_config(best, args), indent=2) + "\n")
    best_tables, metrics = score_best(best, ds, location, args.workers, use_gpu)
    tables.write_tables(output, best_tables)
    display.print_trials(rows, console)
    display.print_table([metrics], console)
    console.print(f"best trial {best['trial_id']}: val acc {100 * best['best_val_acc']:.2f} %, "
                  f"test acc {100 * metrics['accuracy']:.2f} %; `hdr compare --config {output / 'best_config.json'}` "
                  f"trains it again")
    console.print(f"report: {write_report(output)}")
    console.print(f"results in {output} ({time.perf_counter() - started:.0f} s)")
    return 0


def main(argv=None, prog: str = "hdr tune") -> int:
    args = parser(prog).parse_args(argv)
    # Tune's new output engine prints its banner even at verbose=0, and only this environment
    # variable (no argument) turns it off: the job sets it for its own process, unless the user has.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    return run_job(run, args, prog, "run the same command again to resume the sweep")
