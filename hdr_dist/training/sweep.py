"""A Ray Tune sweep of one deep model: what it varies, each trial as a Ray Train run that reports to
Tune, how many trials fit the cluster at once, the live lines of the sweep, and its trials as rows.
The ``tune`` job (``jobs.tune``) runs it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hdr_dist import models
from hdr_dist.common import cluster, ray_compat
from hdr_dist.common.errors import SettingError
from hdr_dist.models import config
from hdr_dist.models.config import TrainConfig
from hdr_dist.training import train

METRIC = "val_acc"


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
    r = config.defaults(model)
    return {
        "lr": r["lr"],
        "batch_size": r["batch_size"],
        "weight_decay": r["weight_decay"],
        "dropout": float(models.recipe(model).kwargs.get("dropout", 0.0)),
        "width": 1.0,
        "augment_strength": 1.0 if r["augment"] else 0.0,
    }


def settings(sample: dict) -> dict:
    """A trial's sample as ``TrainConfig`` settings (which are also compare's flags)."""
    s = sample["augment_strength"]
    return {
        "lr": sample["lr"],
        "batch_size": int(sample["batch_size"]),
        "weight_decay": sample["weight_decay"],
        "dropout": sample["dropout"],
        "width": float(sample["width"]),
        "augment": s > 0,
        **{k: config.defaults()[k] * s for k in ("rotation", "shift", "zoom")},
    }


def trial_run(sweep: str, trial_id: str) -> str:
    """A trial's Train run (and MLflow run key): a restored trial resumes the run of this name."""
    return f"{sweep}-trial-{trial_id}"


def trial(
    sample: dict,
    base: TrainConfig,
    images: list,
    sweep: str,
    workers: int,
    use_gpu: bool,
    location: str,
    tracker=None,
) -> None:
    """One trial, run by Tune: a Ray Train run of the sampled settings that reports to Tune. With
    ``tracker`` (the sweep's MLflow run), the trial is a run nested under it."""
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    name = trial_run(sweep, trial_id)
    cfg = replace(base, **settings(sample))
    if tracker is not None:
        tracker = tracker.start(
            f"trial {trial_id}", name, cfg.as_dict() | {"workers": workers}, parent=tracker.run_id
        )
    train.fit(
        cfg,
        images[0],
        workers=workers,
        use_gpu=use_gpu,
        storage_path=location,
        name=name,
        callbacks=[ray_compat.tune_report_callback()],
        tracker=tracker,
    )
    if tracker is not None:
        tracker.end()


def concurrency(workers: int, cpus_per_worker: int, use_gpu: bool, requested: int | None) -> int:
    """Trials at once: as many as the cluster holds with every trial's workers placed.

    A trial's driver (the Tune trainable) asks for no CPU; it only waits on its Train run,
    whose controller asks for none either. More trials than this would leave a Train run
    waiting for workers while its trial's clock runs.
    """
    fits = cluster.slots([n["Resources"] for n in cluster.alive_nodes()], cpus_per_worker, use_gpu) // workers
    if requested and requested > max(fits, 1):
        raise SettingError(
            "max_concurrent",
            requested,
            f"the Ray cluster holds {fits} trials of {workers} worker(s) x {cpus_per_worker} CPU(s) at once",
        )
    return requested or max(fits, 1)


def progress(total: int, console_of):
    """A Tune callback: a line per trial event, each ending with trials running and done and the best so far.

    Tune pickles its callbacks with the experiment, so this one keeps no console, only counts, and
    ``console_of``, a function (the job's) that gives the console to print to.
    """
    from ray import tune

    class Progress(tune.Callback):
        best = (-1.0, "")

        def event(self, trials, line: str) -> None:
            states = [t.status for t in trials]
            best = f"best {100 * self.best[0]:.2f} % ({self.best[1]})" if self.best[1] else "best: none yet"
            console_of().print(
                f"{line}  [dim]| {states.count('RUNNING')} running, "
                f"{states.count('TERMINATED') + states.count('ERROR')}/{total} done, {best}[/]"
            )

        def on_trial_start(self, iteration, trials, trial, **info):
            self.event(trials, f"trial {trial.trial_id} started: {short(trial.config)}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get(METRIC, -1) > self.best[0]:
                self.best = (result[METRIC], trial.trial_id)
            self.event(
                trials,
                f"trial {trial.trial_id} epoch {result.get('epoch')}: "
                f"val acc {100 * result.get(METRIC, 0):.2f} %",
            )

        def on_trial_complete(self, iteration, trials, trial, **info):
            epochs = (trial.last_result or {}).get("epoch", 0)
            self.event(trials, f"trial {trial.trial_id} finished after {epochs} epoch(s)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self.event(trials, f"trial {trial.trial_id} failed: its log is in {trial.path}")

    return Progress()


def short(sample: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sample.items())


def trial_rows(results, epochs: int) -> list[dict]:
    """One row per trial: id, every swept setting, its best validation accuracy, epochs, seconds, status."""
    rows = []
    for result in results:
        history = result.metrics_dataframe
        reported = history is not None and len(history) > 0 and METRIC in history
        best = history.loc[history[METRIC].idxmax()] if reported else None
        ran = int(history["epoch"].max()) if reported else 0
        status = "error" if result.error else "completed" if ran >= epochs else "stopped early"
        rows.append(
            {"trial_id": (result.metrics or {}).get("trial_id") or Path(result.path).name}
            | {k: result.config[k] for k in sorted(result.config)}
            | {
                "best_val_acc": float(best[METRIC]) if reported else None,
                "best_epoch": int(best["epoch"]) if reported else None,
                "epochs": ran,
                "seconds": float(history["seconds"].sum()) if reported else 0.0,
                "status": status,
                "checkpoint": best.get("checkpoint_path") if reported else None,
            }
        )
    return sorted(rows, key=lambda r: r["trial_id"])
