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

import dataclasses
import time
from pathlib import Path

from rich.console import Console

from hdr_dist.bulk import driver, inputs, labels, outputs, plan
from hdr_dist.bulk.committer import COMMIT_ROWS, Committer
from hdr_dist.common import cluster, errors, ray_compat, tables
from hdr_dist.common.errors import UserError, disk_full
from hdr_dist.inference import calibration, onnx_runtime, readers
from hdr_dist.jobs import flags
from hdr_dist.jobs.cli import run_job
from hdr_dist.jobs.flags import Parser, positive
from hdr_dist.models import checkpoints, shipped
from hdr_dist.models.checkpoints import ModelState
from hdr_dist.models.config import TrainConfig
from hdr_dist.reports.html_report import write_report
from hdr_dist.review import queue
from hdr_dist.scoring import pipeline, summary
from hdr_dist.scoring.config import ScoreConfig

SCORE = flags.BulkJob(
    inputs="folders (recursive), image files, .zip/.tar/.tar.gz/.tgz archives, in any mix",
    item="image",
    done="scored",
    batch=512,
    cpus_per_actor=1.0,
    cpus_note="torch uses as many threads",
    commit_rows=COMMIT_ROWS,
    model_help="a compare --output folder, or a model.pt checkpoint",
    output_help="folder for predictions/, metrics and summary.json",
    labels_help="true labels: a CSV (header path,label) or Parquet file",
    target_error_help="accept the answers whose calibrated confidence clears the threshold that the model's "
    "validation curve gives for error E among the accepted (e.g. 0.001); the rest: review",
    review_help="the rows OUTPUT/review/review.html shows, least confident first; queue.parquet "
    "beside it holds every row to review (default: %(default)s)",
    required=True,
    labels_from=True,
    threshold=True,
)


def parser(prog: str = "hdr score") -> Parser:
    p = Parser(
        prog=prog,
        description="Score image folders and archives with a model trained by compare; "
        "write one Parquet row per image (prediction or error).",
        parents=[flags.ray_flags(), flags.bulk_flags(SCORE)],
    )
    p.add_argument(
        "--model-name",
        help="which model of that folder, or which shipped reader without --model (default: the most "
        "accurate digit model; name crnn to read fields)",
    )
    p.add_argument(
        "--top-k",
        type=positive,
        default=3,
        help="labels and probabilities kept per image (default: %(default)s)",
    )
    p.add_argument(
        "--runtime",
        choices=("torch", "onnx"),
        default="torch",
        help="what runs the model: torch, or onnx (the model exported as hdr export does, run by "
        "onnxruntime on the CPU; needs hdr-dist[onnx]) (default: %(default)s)",
    )
    return p


def reject_rule(args, state: ModelState) -> dict:
    """The confidence threshold the flags ask for, where it came from, and what the model's
    validation curve expects accepting at it to do (null without a curve)."""
    curve = state.val_risk_coverage
    if args.target_error is not None:
        if curve is None:
            raise UserError(
                f"--target-error {args.target_error:g}: {state.identity.checkpoint} holds no "
                "validation curve to read a threshold from (calibrate it by training with hdr compare), "
                "or give --threshold"
            )
        _, threshold = calibration.coverage_at(curve, args.target_error)
        source = f"--target-error {args.target_error:g}, read off the validation curve"
    elif args.threshold is not None:
        threshold, source = args.threshold, "--threshold"
    else:
        return {
            "threshold": None,
            "threshold_source": "none: every scored image is accepted",
            "expected_coverage": None,
            "expected_error": None,
        }
    coverage, error = calibration.at_threshold(curve, threshold) if curve else (None, None)
    return {
        "threshold": threshold,
        "threshold_source": source,
        "expected_coverage": coverage,
        "expected_error": error,
    }


def score_config(args, resources, rule: dict) -> ScoreConfig:
    """What the run decided, from the flags, the cluster (``plan``) and the reject ``rule``."""
    return ScoreConfig(**flags.bulk_config(args, resources), top_k=args.top_k, **rule)


def execute(
    items: list[inputs.Item], state: ModelState, cfg: ScoreConfig, reader, work: Path, console: Console
):
    """Run score's pipeline, committing its rows into ``work/predictions`` as they come, with the live
    line; this run's timings and where its images were scored."""
    import ray

    def rows():
        weights = ray.put(state.lean())
        return pipeline.build(items, weights, cfg, len(cluster.alive_nodes()), reader)

    committer = Committer(work / "predictions", tables.PREDICTION_SCHEMA, cfg.commit_rows, cfg.commit_seconds)
    return driver.pull(
        rows if items else None, committer, len(items), cfg.concurrency, console, SCORE.item, SCORE.done
    )


def listing(args, cfg: TrainConfig, console: Console) -> tuple[list[inputs.Item], dict]:
    """The items to score with their true labels, and what summary.json says about what was skipped
    or did not match; problems with a labels file are also printed, one line each."""
    label_file = labels.read_label_file(args.labels) if args.labels else None
    found = inputs.find(args.inputs)
    items, problems = labels.with_labels(
        found.items, args.labels_from, label_file, list(cfg.labels), cfg.model, readers.of(cfg)
    )
    for line in labels.warnings(label_file, problems) if label_file else ():
        console.print(errors.shown(line), markup=False, highlight=False)
    skipped = [
        f"{n:,} {what}"
        for n, what in (
            (found.junk, "desktop junk files (__MACOSX/, ._*, .DS_Store, Thumbs.db)"),
            (found.duplicates, "files named twice"),
        )
        if n
    ]
    if skipped:
        console.print(f"skipped {' and '.join(skipped)}", markup=False, highlight=False)
    notes = {"skipped_junk": found.junk, "skipped_duplicates": found.duplicates}
    if label_file:
        notes["labels"] = labels.report(label_file, problems)
    return items, notes


def run(args, console: Console) -> int:
    started = time.perf_counter()
    state, model, checkpoint = checkpoints.for_scoring(args.model, args.model_name)
    if args.model is None:
        console.print(
            shipped.told(args.model_name or shipped.DEFAULT["digit"]), markup=False, highlight=False
        )
    if state.temperature is None:
        console.print(
            f"{checkpoint}: no temperature (a checkpoint compare did not calibrate, or one from before "
            "calibration): confidences are the plain softmax (temperature 1)",
            markup=False,
            highlight=False,
        )
    items, notes = listing(args, model, console)
    rule = reject_rule(args, state)
    identity = state.identity.as_dict() | {"threshold": rule["threshold"]}  # a resume decides alike
    output = Path(args.output).expanduser().resolve()
    outputs.check_output(output, args.resume, identity)
    cluster.connect(args.address)
    cfg = score_config(
        args,
        plan.resource_plan(args.gpu, args.concurrency, args.cpus_per_actor, pipeline.DECODE_CPUS),
        rule,
    )
    if args.runtime == "onnx":
        state = dataclasses.replace(state, onnx=onnx_runtime.for_actors(state, cfg.use_gpu))
    plan.require_visible(output, args.inputs)
    with outputs.writing(output, args.resume, identity) as work:
        totals, results = score_into(work, output, items, notes, state, identity, cfg, args, console)
    if results:
        write_the_report(output, console)
    tell(totals, results, cfg, readers.of(model), output, console)
    console.print(f"results in {output} ({time.perf_counter() - started:.0f} s)")
    return 0


def score_into(
    work: Path,
    output: Path,
    items,
    notes: dict,
    state,
    identity: dict,
    cfg: ScoreConfig,
    args,
    console: Console,
) -> tuple[dict, dict]:
    """Score what ``work`` does not hold yet, then the review queue and the summary."""
    model = TrainConfig.from_dict(state.config)
    reader = readers.of(model)
    done = outputs.already_scored(work / "predictions", tables.PREDICTION_SCHEMA)
    items, skipped = outputs.skip_scored(items, done)
    console.print(
        f"scoring {len(items):,} inputs with {model.model} ({identity['checkpoint']})"
        + (" on onnxruntime" if args.runtime == "onnx" else "")
        + (f"; {skipped:,} already scored" if skipped else "")
    )
    ray_compat.quiet_ray_data()
    stats = execute(items, state, cfg, reader, work, console)
    this_run = driver.ThisRun(
        stats,
        inputs_seen=len(items) + skipped,
        skipped=skipped,
        rows_before=sum(len(pages) for _, pages in done.values()),
        notes=queue.write(work, output, model, cfg, reader) | notes,
    )
    return summary.finish(work, output, state, identity, cfg, this_run, reader)


def write_the_report(output: Path, console: Console) -> None:
    try:
        console.print(f"report: {write_report(output)}")
    except OSError as e:
        if not disk_full(e):
            raise
        raise UserError(
            f"--output {output}: the disk is full (no space left on device); every row is scored and "
            f"written, but not the report: free some space, then run hdr report {output}"
        ) from None


def tell(totals: dict, results: dict, cfg: ScoreConfig, reader, output: Path, console: Console) -> None:
    """What the run did, in a few lines: counts, accuracy, what was accepted, what waits for review."""
    line = (
        f"{totals['scored']:,} scored, {totals['failed']:,} failed of {totals['images']:,} images "
        f"({totals['images_this_run']:,} this run, {totals['images_per_s']:,.0f} img/s)"
    )
    if results:
        m = results["metrics"][0]
        line += f"; {reader.headline(m)}"
        line += f" on {totals['scored'] - totals['unlabelled']:,} labelled"
    console.print(line)
    for warning in totals["warnings"]:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    if cfg.threshold is not None:
        share = 100 * totals["accepted_coverage"]
        console.print(
            f"accepted {totals['accepted']:,} of {totals['images']:,} ({share:.2f} %) "
            f"at confidence >= {cfg.threshold:.6g} ({cfg.threshold_source}); the rest: review"
            + (
                f"; error among the labelled accepted {100 * results['metrics'][0]['accepted_error']:.3f} %"
                if results
                else ""
            )
        )
    if totals["review"]:
        console.print(
            f"review: {totals['review']:,} images in {output / queue.FOLDER}, the least confident "
            f"{totals['review_page_rows']:,} on review.html"
        )


def main(argv=None, prog: str = "hdr score") -> int:
    args = parser(prog).parse_args(argv)
    return run_job(
        run, args, prog, "run the same command with --resume to continue", flags={"inputs": "INPUT"}
    )
