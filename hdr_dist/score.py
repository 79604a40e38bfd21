"""``hdr score`` / ``python jobs/score.py``: score image folders and archives with a trained model.

A Ray Data pipeline (``pipeline``), streaming so memory stays flat whatever the
input size. Every input yields one row per image: scored, or with its one-line
error.

The output is written into ``OUTPUT.partial`` and renamed to ``OUTPUT`` when
complete (``summary``), so a crashed run never leaves output that looks
finished; ``--resume`` picks up what the crashed (or an earlier, finished) run
already scored (``outputs``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from rich.console import Console

from hdr_dist import calibration, checkpoints, cluster, flags, images, inputs, labels, outputs, pipeline, review
from hdr_dist import summary, tables
from hdr_dist.cli import run_job
from hdr_dist.committer import COMMIT_ROWS, COMMIT_SECONDS, Committer
from hdr_dist.config import TrainConfig
from hdr_dist.errors import UserError, disk_full
from hdr_dist.flags import Parser, positive
from hdr_dist.html_report import write_report

def parser(prog: str = "hdr score") -> Parser:
    p = Parser(prog=prog, description="Score image folders and archives with a model trained by compare; "
                                      "write one Parquet row per image (prediction or error).",
               parents=[flags.ray_flags()])
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders (recursive), image files, .zip/.tar/.tar.gz/.tgz archives, in any mix")
    p.add_argument("--model", required=True, help="a compare --output folder, or a model.pt checkpoint")
    p.add_argument("--model-name",
                   help="which model of that folder (default: the most accurate digit model; name crnn to read fields)")
    p.add_argument("--output", required=True, help="folder for predictions/, metrics and summary.json")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--labels", metavar="FILE", help="true labels: a CSV (header path,label) or Parquet file")
    g.add_argument("--labels-from", choices=("dirname",), help="dirname: each image's folder name is its label")
    p.add_argument("--batch-size", type=positive, default=512, help="images per inference batch (default: %(default)s)")
    p.add_argument("--concurrency", type=positive,
                   help="inference actors (default: one per GPU, else one per 4 CPUs of the cluster, at least 1)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0,
                   help="CPUs each inference actor reserves on a CPU-only cluster; torch uses as many threads "
                        "(default: %(default)s)")
    p.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                   help="auto: a GPU per inference actor when the cluster has one (default: %(default)s)")
    p.add_argument("--top-k", type=positive, default=3, help="labels and probabilities kept per image (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="keep what OUTPUT (or OUTPUT.partial) already scored")
    p.add_argument("--commit-rows", type=positive, default=COMMIT_ROWS, metavar="N",
                   help="rows are made durable in pieces of at most N, so a killed run loses at most that many "
                        "(default: %(default)s)")
    p.add_argument("--commit-seconds", type=flags.positive_float, default=COMMIT_SECONDS, metavar="T",
                   help="and no row waits longer than T seconds to be made durable (default: %(default)s)")
    reject = p.add_argument_group("reject option and review queue")
    g = reject.add_mutually_exclusive_group()
    g.add_argument("--target-error", type=flags.open_fraction, metavar="E",
                   help="accept the answers whose calibrated confidence clears the threshold that the model's "
                        "validation curve gives for error E among the accepted (e.g. 0.001); the rest: review")
    g.add_argument("--threshold", type=flags.fraction, metavar="T",
                   help="accept the answers whose calibrated confidence is at least T; the rest: review "
                        "(default, without --target-error: accept every scored image)")
    reject.add_argument("--review-rows", type=positive, default=500, metavar="N",
                        help="the rows OUTPUT/review/review.html shows, least confident first; queue.parquet "
                             "beside it holds every row to review (default: %(default)s)")
    p.add_argument("--max-pixels", type=positive, default=images.DEFAULT_MAX_PIXELS,
                   help="larger images are refused as decompression bombs (default: %(default)s)")
    return p


class Received:
    """What the driver has pulled off the pipeline so far: the live line's counts, when the first
    result came, and the images each node's actors scored. Counting the rows themselves, in the
    driver, leaves no helper actor whose loss could cost the job."""

    def __init__(self):
        self.scored = self.failed = 0
        self.first: float | None = None  # wall-clock time of the first result: what start-up costs
        self.by_node: dict[str, int] = {}

    def add(self, batch) -> None:
        self.first = self.first or time.time()
        failed = batch.num_rows - batch["error"].null_count
        self.scored += batch.num_rows - failed
        self.failed += failed
        for node, count in zip(*(c.to_pylist() for c in batch[pipeline.NODE].value_counts().flatten())):
            self.by_node[node] = self.by_node.get(node, 0) + count


class Clock(threading.Thread):
    """Every half second: commits the rows that have waited long enough while the pipeline is slow to
    deliver more, and redraws the live line (without a terminal: a line every 10 s and at each
    tenth of the job, so a `ray job submit` log shows how far a job got)."""

    def __init__(self, received: Received, committer: Committer, total: int, console: Console):
        super().__init__(daemon=True)
        self.received, self.committer, self.total, self.console = received, committer, total, console
        self.started = time.perf_counter()
        self.stopping = threading.Event()
        self.error: BaseException | None = None  # a commit that failed here fails the job in the driver

    def run(self) -> None:
        try:
            (self.bar if self.console.is_terminal else self.lines)()
        except BaseException as e:  # noqa: BLE001 - handed to the driver's loop, which raises it
            self.error = e

    def tick(self) -> tuple[int, float]:
        self.committer.commit_if_due()
        done = self.received.scored + self.received.failed
        return done, done / max(time.perf_counter() - self.started, 1e-9)

    def lines(self) -> None:
        said, tenth = time.perf_counter(), 0
        while not self.stopping.wait(0.5):
            done, rate = self.tick()
            if time.perf_counter() - said >= 10 or 10 * done // max(self.total, 1) > tenth:
                said, tenth = time.perf_counter(), 10 * done // max(self.total, 1)
                self.console.print(f"scored {done:,}/{self.total:,} images ({100 * done / max(self.total, 1):.0f} %), "
                                   f"{rate:,.0f} img/s, {self.received.failed:,} errors")

    def bar(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                      TextColumn("{task.fields[errors]}"), TimeElapsedColumn(), console=self.console,
                      transient=True) as bar:
            task = bar.add_task("score", total=self.total, rate="", errors="")
            while not self.stopping.wait(0.5):
                done, rate = self.tick()
                bar.update(task, completed=done, rate=f"{rate:,.0f} img/s", errors=f"{self.received.failed:,} errors")

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def reject_rule(args, state: dict) -> dict:
    """The confidence threshold the flags ask for, where it came from, and what the model's
    validation curve expects accepting at it to do (null without a curve)."""
    curve = state["val_risk_coverage"]
    if args.target_error is not None:
        if curve is None:
            raise UserError(f"--target-error {args.target_error:g}: {state['identity']['checkpoint']} holds no "
                            "validation curve to read a threshold from (calibrate it by training with hdr compare), "
                            "or give --threshold")
        _, threshold = calibration.coverage_at(curve, args.target_error)
        source = f"--target-error {args.target_error:g}, read off the validation curve"
    elif args.threshold is not None:
        threshold, source = args.threshold, "--threshold"
    else:
        return {"threshold": None, "threshold_source": "none: every scored image is accepted",
                "expected_coverage": None, "expected_error": None}
    coverage, error = calibration.at_threshold(curve, threshold) if curve else (None, None)
    return {"threshold": threshold, "threshold_source": source, "expected_coverage": coverage,
            "expected_error": error}


def make_plan(args) -> dict:
    """Whether to use GPUs, how many inference actors and read tasks run at once; a request the
    cluster can never place fails now, where Ray would wait forever."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), int(total.get("CPU", 0))
    if args.gpu == "on" and gpus == 0:
        raise UserError("--gpu on: the Ray cluster has no GPU")
    use_gpu = args.gpu != "off" and gpus > 0
    concurrency = args.concurrency or (gpus if use_gpu else max(1, cpus // 4))
    if use_gpu and concurrency > gpus:
        raise UserError(f"--concurrency {concurrency} with GPUs needs {concurrency} GPUs; the Ray cluster has {gpus}")
    if args.cpus_per_actor <= 0:
        raise UserError(f"--cpus-per-actor {args.cpus_per_actor:g}: must be more than 0")
    actor_cpus = 1 if use_gpu else args.cpus_per_actor
    if concurrency * actor_cpus + pipeline.DECODE_CPUS > cpus:
        raise UserError(f"--concurrency {concurrency} x {actor_cpus:g} CPUs per inference actor leaves too few of "
                        f"the cluster's {cpus} CPUs for decoding ({pipeline.DECODE_CPUS:g})")
    return {"use_gpu": use_gpu, "concurrency": concurrency, "read_tasks": max(2, cpus)}


def no_progress_bar_note(record: logging.LogRecord) -> bool:
    return "Progress bars disabled" not in record.getMessage()


def quiet_ray_data() -> None:
    """Ray Data's lines that the job's own live line replaces: its INFO lines, and its note that its
    progress bars are off (the job turns them off, for that line)."""
    import ray.data  # noqa: F401 - importing it configures its loggers, which are set after

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    progress = logging.getLogger("ray.data._internal.progress")
    if no_progress_bar_note not in progress.filters:
        progress.addFilter(no_progress_bar_note)


def execute(items: list[inputs.Item], state: dict, args, plan: dict, work: Path, console: Console) -> dict:
    """Run the pipeline, committing its rows into ``work/predictions`` as they come (``committer``),
    with the live line; this run's timings and where its images were scored."""
    import ray

    quiet_ray_data()
    received = Received()
    committer = Committer(work / "predictions", tables.PREDICTION_SCHEMA, args.commit_rows, args.commit_seconds)
    clock = Clock(received, committer, len(items), console)
    start, wall_start = time.perf_counter(), time.time()
    clock.start()
    try:
        if items:
            weights = ray.put({k: state[k] for k in ("model", "config", "temperature")})
            rows = pipeline.build(items, weights, args, plan, len(cluster.alive_nodes()))
            for batch in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
                clock.check()
                received.add(batch)
                committer.add(batch.drop_columns([pipeline.NODE]))
        clock.check()
        committer.close()
    except ray.exceptions.GetTimeoutError:
        raise UserError(f"--concurrency {plan['concurrency']}: the inference actors did not all start within "
                        f"{pipeline.ACTOR_START_TIMEOUT_S} s; the cluster has no room for them now") from None
    finally:
        clock.stop()
    seconds = time.perf_counter() - start
    # Until the first result the inference actors are starting (a fixed few seconds);
    # after it, the job runs at the rate a long job keeps.
    startup = min(seconds, max(0.0, received.first - wall_start)) if received.first else seconds
    return {"seconds": seconds, "startup": startup, "images_by_node": received.by_node}


def listing(args, cfg: TrainConfig, console: Console) -> tuple[list[inputs.Item], dict]:
    """The items to score with their true labels, and what summary.json says about what was skipped
    or did not match; problems with a labels file are also printed, one line each."""
    label_file = labels.read_label_file(args.labels) if args.labels else None
    found = inputs.find(args.inputs)
    items, problems = labels.with_labels(found.items, args.labels_from, label_file, list(cfg.labels), cfg.model,
                                         cfg.reads_fields)
    for line in labels.warnings(label_file, problems) if label_file else ():
        console.print(line, markup=False, highlight=False)
    skipped = [f"{n:,} {what}" for n, what in ((found.junk, "desktop junk files (__MACOSX/, ._*, .DS_Store, Thumbs.db)"),
                                               (found.duplicates, "files named twice")) if n]
    if skipped:
        console.print(f"skipped {' and '.join(skipped)}", markup=False, highlight=False)
    notes = {"skipped_junk": found.junk, "skipped_duplicates": found.duplicates}
    if label_file:
        notes["labels"] = labels.report(label_file, problems)
    return items, notes


def run(args, console: Console) -> int:
    started = time.perf_counter()
    state, cfg, checkpoint = checkpoints.for_scoring(args.model, args.model_name)
    if state["temperature"] is None:
        console.print(f"{checkpoint}: no temperature (a checkpoint compare did not calibrate, or one from before "
                      "calibration): confidences are the plain softmax (temperature 1)", markup=False, highlight=False)
    items, notes = listing(args, cfg, console)
    rule = reject_rule(args, state)
    state["identity"]["threshold"] = rule["threshold"]  # a resume must decide at the same threshold
    output = Path(args.output).expanduser().resolve()
    outputs.check_output(output, args.resume, state["identity"])
    cluster.connect(args.address)
    plan = make_plan(args) | {"threshold": rule["threshold"], "fields": cfg.reads_fields}
    cluster.require_shared({"--output": str(output)},
                           {"INPUT": [os.path.realpath(os.path.expanduser(i)) for i in args.inputs]})
    work, held = outputs.prepare(output, args.resume, state["identity"])
    try:
        done = outputs.already_scored(work / "predictions", tables.PREDICTION_SCHEMA)
        items, skipped = outputs.skip_scored(items, done)
        console.print(f"scoring {len(items):,} inputs with {cfg.model} ({checkpoint})"
                      + (f"; {skipped:,} already scored" if skipped else ""))
        this_run = execute(items, state, args, plan, work, console)
        this_run |= review.write(work, output, list(cfg.labels), {"model": cfg.model, **rule}, args.review_rows,
                                 args.max_pixels, cfg.reads_fields)
        this_run |= {"inputs_seen": len(items) + skipped, "skipped": skipped,
                     "rows_before": sum(len(pages) for _, pages in done.values()), **notes,
                     **{k: v for k, v in rule.items() if k != "threshold"}}
        totals, results = summary.finish(work, output, state, checkpoint, args, this_run, plan)
    except OSError as e:
        if disk_full(e):
            raise outputs.full(output) from None
        raise
    finally:
        os.close(held)
    if results:
        try:
            console.print(f"report: {write_report(output)}")
        except OSError as e:
            if not disk_full(e):
                raise
            raise UserError(f"--output {output}: the disk is full (no space left on device); every row is scored and "
                            f"written, but not the report: free some space, then run hdr report {output}") from None
    tell(totals, results, rule, cfg, output, console)
    console.print(f"results in {output} ({time.perf_counter() - started:.0f} s)")
    return 0


def tell(totals: dict, results: dict, rule: dict, cfg: TrainConfig, output: Path, console: Console) -> None:
    """What the run did, in a few lines: counts, accuracy, what was accepted, what waits for review."""
    line = (f"{totals['scored']:,} scored, {totals['failed']:,} failed of {totals['images']:,} images "
            f"({totals['images_this_run']:,} this run, {totals['images_per_s']:,.0f} img/s)")
    if results:
        m = results["metrics"][0]
        line += (f"; field accuracy {100 * m['field_accuracy']:.2f} %, character error rate {100 * m['cer']:.2f} %"
                 if cfg.reads_fields else f"; accuracy {100 * m['accuracy']:.2f} %")
        line += f" on {totals['scored'] - totals['unlabelled']:,} labelled"
    console.print(line)
    for warning in totals["warnings"]:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    if rule["threshold"] is not None:
        share = 100 * totals["accepted_coverage"]
        console.print(f"accepted {totals['accepted']:,} of {totals['images']:,} ({share:.2f} %) "
                      f"at confidence >= {rule['threshold']:.6g} ({rule['threshold_source']}); the rest: review"
                      + (f"; error among the labelled accepted {100 * results['metrics'][0]['accepted_error']:.3f} %"
                         if results else ""))
    if totals["review"]:
        console.print(f"review: {totals['review']:,} images in {output / review.FOLDER}, the least confident "
                      f"{totals['review_page_rows']:,} on review.html")


def main(argv=None, prog: str = "hdr score") -> int:
    args = parser(prog).parse_args(argv)
    return run_job(run, args, prog, "run the same command with --resume to continue")
