"""``hdr compare`` / ``python jobs/compare.py``: train each model with Ray Train, test it once,
print the results beside the seed studies' figures and write them as Parquet.

Run locally it starts Ray on this machine; under ``ray job submit`` (or with
``--address``) it joins that cluster. Re-running the same command with the same
``--output`` resumes each model from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from hdr_dist import models
from hdr_dist.common import cluster, ray_compat, ray_notices, storage, tables
from hdr_dist.common.errors import UserError
from hdr_dist.data import datasets
from hdr_dist.inference import evaluate
from hdr_dist.jobs import flags
from hdr_dist.jobs.cli import run_job
from hdr_dist.jobs.flags import Parser, positive
from hdr_dist.models import checkpoints
from hdr_dist.models.config import TrainConfig
from hdr_dist.reports import display
from hdr_dist.reports.html_report import write_report
from hdr_dist.training import classical, field_eval, kinds, tracking, train

DEFAULT_MODELS = "cnn,lstm"
TIMINGS = "timings.json"  # where the run's wall time went (``Phases``)
# The whole HDaLR comparison (seed study 002): this project's deep models, then 002's classical ones.
ALL_MODELS = ("cnn", "lstm", *classical.MODELS)


def parser(prog: str = "hdr compare") -> Parser:
    p = Parser(
        prog=prog,
        description="Train each model with Ray Train, test it once on the test split, "
        "print the results beside the seeds' figures and write them as Parquet.",
        parents=flags.training_flags("auto", "", ("results", "ray_train", "Ray Train checkpoint storage")),
    )
    g = p.add_argument_group("models and training")
    g.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"comma list from: deep {', '.join(models.RECIPES)}; classical {', '.join(classical.MODELS)}; "
        f"or all ({', '.join(ALL_MODELS)}) (default: %(default)s)",
    )
    flags.train_flags(g)
    g.add_argument(
        "--max-failures",
        type=int,
        default=0,
        help="worker failures Ray Train recovers from (default: %(default)s)",
    )
    g.add_argument(
        "--cv-limit",
        type=positive,
        default=10_000,
        help="svm-rbf: training images its C x gamma cross-validation uses (default: %(default)s)",
    )
    return p


def model_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--models is empty")
    names = [m for n in names for m in (ALL_MODELS if n == "all" else (n,))]
    for n in names:
        if n not in classical.MODELS:
            models.recipe(n)  # raises UserError naming the unknown model
    return list(dict.fromkeys(names))


def train_config(name: str, ds: datasets.Dataset, args, workers: cluster.Workers) -> TrainConfig:
    """The recipe of ``name`` with the flags the user set on top."""
    return TrainConfig.from_recipe(
        name, ds, seed=args.seed, cpus_per_worker=workers.cpus, **flags.train_settings(args)
    )


class Phases:
    """Where a compare run's wall time went, phase by phase: the closing line and ``timings.json``
    show it, so a slow run says which part to look at."""

    ORDER = ("data", "ray_start", "train_start", "epochs", "evaluation", "calibration", "report")

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds = dict.fromkeys(self.ORDER, 0.0)

    @contextmanager
    def timing(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds

    def fit(self, started_at: float, history: list[dict]) -> None:
        """A Train run started at ``started_at`` (``time.time()``): the training and validation of the
        epochs it trained (not those of a run it resumed) are the epochs; the rest of its wall time
        (workers starting, the data reaching them, checkpoints) is Train's start."""
        wall = time.time() - started_at
        epochs = sum(
            h["seconds"] + h.get("val_seconds", 0.0) for h in history if h.get("ended_at", 0) >= started_at
        )
        self.add("epochs", epochs)
        self.add("train_start", max(0.0, wall - epochs))

    def summary(self) -> dict:
        """Seconds and share of the whole per phase; ``other`` is the rest (classical models, the
        segmentation baseline, start-up of this process)."""
        total = time.perf_counter() - self.started
        seconds = self.seconds | {"other": max(0.0, total - sum(self.seconds.values()))}
        return {
            "total_seconds": round(total, 3),
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "share": {k: round(v / total, 4) for k, v in seconds.items()},
        }

    @staticmethod
    def line(summary: dict) -> str:
        """The closing line of a ``summary``: the same figures as ``timings.json``."""
        return f"time ({summary['total_seconds']:.0f} s): " + ", ".join(
            f"{k.replace('_', ' ')} {v:.0f} s" for k, v in summary["seconds"].items()
        )


def train_and_test(
    name: str,
    ds: datasets.Dataset,
    args,
    images,
    location: str,
    workers: cluster.Workers,
    phases: Phases,
    field_tests=None,
    tracker: tracking.Tracker | None = None,
):
    """Ray Train one model, then score its best checkpoint (by validation accuracy) on the test split:
    a digit model on the test digits, a field model on ``field_tests`` (``field_eval.test_sets``): its
    kind's ``tested``. With ``tracker``, its MLflow run (found again when the Train run resumes) gets the
    settings, and every epoch from rank 0; the run's tracker is returned last."""
    cfg = train_config(name, ds, args, workers)
    run = storage.run_name(f"{cfg.dataset}-{cfg.model}", cfg.as_dict() | {"workers": workers.count})
    if tracker is not None:
        tracker = tracker.start(name, run, cfg.as_dict() | {"workers": workers.count})
    started_at = time.time()
    try:
        result = train.fit(
            cfg,
            images,
            workers=workers.count,
            use_gpu=workers.gpu,
            storage_path=location,
            name=run,
            max_failures=args.max_failures,
            tracker=tracker,
        )
    except SystemExit:  # Ray Train's own Ctrl-C handler aborts the run, then exits
        raise KeyboardInterrupt from None
    best = max(result.best_checkpoints, key=lambda cm: cm[1]["val_acc"])[0]
    history = checkpoints.load_ray(result.checkpoint)["history"]
    phases.fit(started_at, history)
    state = checkpoints.load_ray(best)
    trained = dict(workers=workers, checkpoint=checkpoints.uri(best), method=f"{name} recipe")
    tested = kinds.of(cfg).tested(state, ds, field_tests)
    for phase, seconds in tested["seconds"].items():
        phases.add(phase, seconds)
    checkpoints.set_calibration(checkpoints.uri(best), tested["temperature"], tested["curves"]["val"])
    row = tables.trained_row(ds.name, name, tested["scores"], history, **trained) | tested["row"]
    return row, tested["scores"], history, tracker


def segmented_row(ds: datasets.Dataset, digit_row: dict, field_tests) -> tuple[dict, dict]:
    """The segmentation baseline, read by the digit model of ``digit_row`` on the field models' test
    fields."""
    state = checkpoints.for_scoring(digit_row["checkpoint"], None)[0]
    name = f"{digit_row['model']}-segmented"
    tested = field_eval.segmented(state, field_tests)
    row = (
        tables.metrics_row(
            ds.name,
            name,
            tested["row"],
            train_seconds=digit_row["train_seconds"],
            epochs=digit_row["epochs"],
            params=state.params,
            num_workers=digit_row["num_workers"],
            threads_per_worker=digit_row["threads_per_worker"],
            num_nodes=digit_row["num_nodes"],
            device=digit_row["device"],
            checkpoint=None,
            method=f"connected components of ink, each read by {digit_row['model']}",
            approximation="",
        )
        | tested["row"]
    )
    return row, {"lengths": tables.length_rows(ds.name, name, tested["sets"]["fields"]["by_length"])}


def classical_row(name: str, ds: datasets.Dataset, result: dict) -> tuple[dict, dict]:
    scores = evaluate.metrics(ds.test.y, result["pred"], ds.num_classes)
    row = tables.metrics_row(
        ds.name,
        name,
        scores | {"infer_images_per_s": result["infer_images_per_s"]},
        train_seconds=result["train_seconds"],
        epochs=None,
        params=None,
        num_workers=1,
        threads_per_worker=result["threads"],
        num_nodes=1,
        device="cpu",
        checkpoint=None,
        method=result["method"],
        approximation=classical.APPROXIMATIONS.get(name, ""),
    )
    return row, scores


class Results:
    """The job's tables, written again after every model: a later failure loses nothing."""

    def __init__(self, output: Path, ds: datasets.Dataset):
        self.output, self.ds = output, ds
        self.tables = {
            "metrics": [],
            "per_class": [],
            "confusion": [],
            "history": [],
            "mistakes": [],
            "risk_coverage": [],
            "field_lengths": [],
        }

    def record(self, name: str, row: dict, scores: dict, history=()) -> None:
        self.tables["metrics"].append(row)
        test = (self.ds.test.x, self.ds.test.y)
        for table, rows in tables.model_tables(
            self.ds.name, name, self.ds.labels, scores, history, test
        ).items():
            self.tables[table].extend(rows)
        tables.write_tables(self.output, self.tables)


def start_classical(
    names: list[str], ds: datasets.Dataset, args, images, location: str, results: Results, console: Console
) -> dict:
    """Submit the classical models as Ray tasks, side by side with each other and with the deep
    models' Train runs, as far as the cluster's CPUs go; svm-rbf after its C x gamma grid."""
    import ray

    test_x = ray.put(ds.test.x)
    cpus = args.cpus_per_worker or 1
    pending = classical.start([n for n in names if n != "svm-rbf"], images, test_x, args.seed, cpus, None)
    if "svm-rbf" in names:
        params, grid = classical.search_svm(ds, args.seed, args.cv_limit, location, console)
        results.tables["svm_rbf_cv"] = grid
        console.print(
            escape("[svm-rbf]") + f" best of the grid: C={params['C']:g}, gamma={params['gamma']:g}"
        )
        pending |= classical.start(["svm-rbf"], images, test_x, args.seed, cpus, params)
    if pending:
        console.print(f"classical models {', '.join(pending.values())}: one Ray task each")
    return pending


def collect(
    pending: dict, ds: datasets.Dataset, results: Results, console: Console, timeout: float | None
) -> None:
    """Record the classical models that have finished (all of them, with ``timeout=None``)."""
    import ray

    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
        if not done:
            return
        name = pending.pop(done[0])
        row, scores = classical_row(name, ds, ray.get(done[0]))
        console.print(
            escape(f"[{name}]") + f" test accuracy {100 * row['accuracy']:.2f} %, "
            f"fit {row['train_seconds']:.0f} s: {row['method']}"
        )
        results.record(name, row, scores)


def log_runs(tracker: tracking.Tracker, runs: dict, rows: list[dict], output: Path) -> None:
    """Each model's test figures and artefacts to its MLflow run (``runs``: the deep models' runs;
    the others get one now): the metrics row's numbers, the figures, report.html and the checkpoint."""
    figures = sorted((output / "figures").glob("*.png"))
    for row in rows:
        run = runs.get(row["model"]) or tracker.start(
            row["model"], f"{output.name}-{row['model']}-{time.time_ns()}", {"method": row["method"]}
        )
        if run is not None:
            run.finish(
                row,
                {
                    "figures": figures,
                    None: [output / "report.html"],
                    "checkpoint": [row["checkpoint"]] if row["checkpoint"] else [],
                },
            )


def run(args, console: Console) -> int:
    phases = Phases()
    names = model_names(args.models)
    output = storage.prepare_output(args.output)
    tracker = None if args.mlflow is None else tracking.open_tracker(args.mlflow, output.name, output)
    with ray_notices.kept_off_the_terminal(output / ray_notices.LOG_FILE):
        return compare(args, names, output, console, phases, tracker)


def compare(
    args,
    names: list[str],
    output: Path,
    console: Console,
    phases: Phases,
    tracker: tracking.Tracker | None = None,
) -> int:
    """Each model trained (deep: Ray Train; classical: a Ray task) and tested, then the table and report."""
    deep = [n for n in names if n not in classical.MODELS]
    shallow = [n for n in names if n in classical.MODELS]
    location = storage.storage_location(args.storage_path, output / "ray_train")
    ds = load_data(args, names, console, phases)
    with phases.timing("ray_start"):
        workers = start_ray(args, bool(deep), bool(shallow), output, location, tracker, console)

        import ray

        images = ray.put(train.arrays_of(ds))  # one copy in the object store, read by every worker and task
    if deep:
        console.print(
            f"Ray Train: {workers.count} worker(s) x {workers.cpus} CPU(s) (torch threads)"
            + (" and a GPU each" if workers.gpu else "")
        )
    results = Results(output, ds)
    pending = start_classical(shallow, ds, args, images, location, results, console)
    field_models = [n for n in deep if models.recipe(n).kind == "field"]
    with phases.timing("data"):
        field_tests = field_eval.test_sets(ds, args.seed) if field_models else None
    runs = {}  # each deep model's MLflow run
    for name in deep:
        row, scores, history, runs[name] = train_and_test(
            name, ds, args, images, location, workers, phases, field_tests, tracker
        )
        console.print(display.calibration_line(row), markup=False, highlight=False)
        with phases.timing("report"):
            results.record(name, row, scores, history)
        collect(pending, ds, results, console, timeout=0)
    if field_models:
        segmentation_baseline(ds, deep, field_tests, results, names)
    collect(pending, ds, results, console, timeout=None)
    finish(names, output, results, runs, tracker, console, phases)
    return 0


def load_data(args, names: list[str], console: Console, phases: Phases) -> datasets.Dataset:
    """The data set the flags name, timed as the data phase, and a line saying what it holds."""
    with phases.timing("data"):
        ds = flags.dataset_of(args)
    console.print(
        f"[bold]{ds.name}[/]: {len(ds.train.y):,} train / {len(ds.val.y):,} validation / "
        f"{len(ds.test.y):,} test images, {ds.num_classes} classes; models {', '.join(names)}"
    )
    return ds


def start_ray(
    args,
    deep: bool,
    shallow: bool,
    output: Path,
    location: str,
    tracker: tracking.Tracker | None,
    console: Console,
) -> cluster.Workers | None:
    """Join (or start) Ray and wait for room: the deep models' Train workers (None without ``deep``)
    and, for the classical models, one task; then check every node reaches the storage."""
    cluster.connect(args.address)
    workers = (
        cluster.placement(args.workers, args.cpus_per_worker, args.gpu, args.placement_timeout, console)
        if deep
        else None
    )
    if shallow:
        cluster.placement(1, args.cpus_per_worker or 1, "off", args.placement_timeout, console)
    cluster.require_shared(
        storage.shared_locations(args.storage_path, output, location) | (tracker.shared() if tracker else {})
    )
    return workers


def segmentation_baseline(
    ds: datasets.Dataset, deep: list[str], field_tests, results: Results, names: list[str]
) -> None:
    """The segmentation baseline: the first digit cnn of this run, read on the field models' test
    fields, recorded and added to ``names`` (nothing without such a cnn)."""
    cnn = next(
        (
            r
            for r in results.tables["metrics"]
            if r["model"] in deep and models.recipe(r["model"]).arch == "cnn"
        ),
        None,
    )
    if cnn is None:
        return
    row, scores = segmented_row(ds, cnn, field_tests)
    results.record(row["model"], row, scores)
    names.append(row["model"])


def finish(
    names: list[str],
    output: Path,
    results: Results,
    runs: dict,
    tracker: tracking.Tracker | None,
    console: Console,
    phases: Phases,
) -> None:
    """The results table in ``names``' order, the report, the MLflow runs' results, and where the time
    went (``timings.json`` and the closing lines)."""
    order = {n: i for i, n in enumerate(names)}
    with phases.timing("report"):
        display.print_table(sorted(results.tables["metrics"], key=lambda r: order[r["model"]]), console)
        console.print(f"report: {write_report(output)}")
        if tracker is not None:
            log_runs(tracker, runs, results.tables["metrics"], output)
            console.print(
                flags.mlflow_closing(tracker.uri, output.name), soft_wrap=True, markup=False, highlight=False
            )
    timings = phases.summary()
    (output / TIMINGS).write_text(json.dumps(timings, indent=2) + "\n")
    console.print(Phases.line(timings))
    console.print(f"results in {output} ({timings['total_seconds']:.0f} s)")


def main(argv=None, prog: str = "hdr compare") -> int:
    args = parser(prog).parse_args(argv)
    ray_compat.tune_output_settings()  # svm-rbf's grid is a Ray Tune sweep: no banner from Tune
    return run_job(run, args, prog, "run the same command again to resume from the last checkpoint")
