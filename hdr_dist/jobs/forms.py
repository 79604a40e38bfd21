"""``hdr forms`` / ``python jobs/forms.py``: read whole scanned forms by a template, into one record per page.

Each page (an image, a TIFF's page, a PDF's page, in folders and archives as ``score`` reads them) is
registered to the template's reference, its printed form dropped, each zone read by the model of its
kind, and written as one row per zone (``fields/``) and one per form (``forms/``, ``forms.csv``), with
a calibrated confidence and a decision per field. Like ``score``, it never stops for one bad page,
commits rows as it goes, and resumes with ``--resume``.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from hdr_dist.bulk import driver, inputs, outputs, plan
from hdr_dist.bulk.committer import Committer
from hdr_dist.common import cluster, ray_compat
from hdr_dist.common.errors import SettingError, UserError
from hdr_dist.forms import pipeline, records, review, samples, summary, truth, zones
from hdr_dist.forms import template as templates
from hdr_dist.forms.config import FormsConfig
from hdr_dist.inference import calibration
from hdr_dist.jobs import flags
from hdr_dist.jobs.cli import run_job
from hdr_dist.jobs.flags import Parser
from hdr_dist.models import checkpoints, shipped
from hdr_dist.models.checkpoints import ModelState
from hdr_dist.models.config import TrainConfig

COMMIT_PAGES = 200  # a forms piece: pages, each with its zones
SHOWN = {"job": "forms"}  # how forms shows a setting inside a message of its own (run_job shows the rest)
FIELD_MODEL = shipped.DEFAULT["field"]
# A comb's cells are held to a 1 % target over its cells (1 in 700 for 7 cells): 60 pages of the sample
# layouts gave 2,820 written cells and 172 free fields, made and read in 47 s on 2 busy Xeon cores.
CALIBRATION_PAGES = 60


FORMS = flags.BulkJob(
    inputs="folders (recursive), image or PDF files, .zip/.tar/.tar.gz/.tgz archives, in any mix",
    item="page",
    done="read",
    batch=16,
    cpus_per_actor=0.5,
    cpus_note="registration takes the rest",
    commit_rows=COMMIT_PAGES,
    model_help="a compare --output folder holding the digit model (and the field model)",
    output_help="folder for fields/, forms/, forms.csv, metrics and summary.json (required)",
    labels_help="true labels: a CSV with header path,page,field,label",
    target_error_help="accept a field when its confidence clears the threshold the models' validation curves "
    "give for error E (a comb: each cell at E over its cells); the rest: review",
    review_help="the fields OUTPUT/review/review.html shows, least confident first (default: %(default)s)",
)


def parser(prog: str = "hdr forms") -> Parser:
    p = Parser(
        prog=prog,
        description="Read scanned forms by a template: one row per zone and one per form, "
        "each field with a calibrated confidence and a decision.",
        parents=[flags.ray_flags(), flags.bulk_flags(FORMS)],
    )
    p.add_argument("--template", metavar="FORM.yaml", help="the form's template (required)")
    p.add_argument(
        "--check-template",
        metavar="FORM.yaml",
        help="check a template and draw its zones on its reference (FORM.zones.png beside it), then stop",
    )
    p.add_argument(
        "--digit-model-name",
        help="the digit model of that folder, or the shipped reader without --model (default: its most "
        "accurate one; the shipped cnn)",
    )
    p.add_argument(
        "--field-model-name",
        default=FIELD_MODEL,
        help="the field model of that folder, or the shipped reader without --model, for field zones "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--dropout",
        choices=zones.DROPOUTS,
        default="colour",
        help="how the printed form is dropped, keeping the strokes that cross it: colour (the "
        "reference's print, and on a colour scan the print's colour), reference (the registered "
        "reference's print), paint (the reference's print painted over, crossing strokes too) or "
        "lines (a zone's long straight runs of ink) (default: %(default)s)",
    )
    p.add_argument(
        "--length-constraint",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode a field under its template length (default: on)",
    )
    p.add_argument(
        "--calibration-pages",
        type=int,
        default=CALIBRATION_PAGES,
        help="with --target-error: the thresholds are read off this many generated form pages (sample "
        "layouts in dropout colours, any scan, written with the digit model's validation digits), read as "
        "this run reads; 0: off the models' own validation curves (default: %(default)s)",
    )
    return p


def check_template(path: str, console: Console) -> int:
    template = templates.load(path)
    out = templates.draw(template, Path(path).expanduser().with_suffix(".zones.png"))
    kinds = ", ".join(f"{z.name} ({z.kind})" for z in template.zones)
    console.print(
        f"{path}: template {template.name}, {template.size[0]}x{template.size[1]}, zones {kinds}; "
        f"drawn on its reference in {out}",
        markup=False,
        highlight=False,
    )
    return 0


def model_for(path: str, name: str | None, name_setting: str) -> tuple[ModelState, TrainConfig]:
    """A model of ``--model`` and its config; a problem with its name is told by the flag that gave it
    (forms has two)."""
    try:
        state, cfg, _ = checkpoints.for_scoring(path, name)
    except SettingError as e:
        raise (e.renamed(name_setting) if e.setting == "model_name" else e) from None
    return state, cfg


def models(args, template, console: Console) -> tuple[ModelState | None, ModelState | None]:
    """The digit model (for combs and digit zones) and the field model (for field zones) the template
    needs, from ``--model`` or the shipped readers; a kind it needs and cannot have is one line, before
    anything starts."""
    kinds = {z.kind for z in template.zones}
    digit = field = None
    digit_name = args.digit_model_name or (shipped.DEFAULT["digit"] if args.model is None else None)
    if kinds & {"comb", "digit"}:
        digit, cfg = model_for(args.model, digit_name, "digit_model_name")
        if cfg.kind != "digit":
            raise UserError(f"--digit-model-name {cfg.model}: reads fields, not one digit")
    if "field" in kinds:
        names = [z.name for z in template.zones if z.kind == "field"]
        try:
            field, cfg = model_for(args.model, args.field_model_name, "field_model_name")
        except UserError as e:
            if args.model is None:  # the shipped reader's own line says what is wrong with it
                raise
            raise UserError(
                f"--template {args.template}: its field zones ({', '.join(names)}) need a field model, "
                f"and --model {args.model} has none named {args.field_model_name} ({e.line(SHOWN)}); "
                "train one with hdr compare --models cnn,crnn, or name it with --field-model-name"
            ) from None
        if cfg.kind != "field":
            raise UserError(f"--field-model-name {cfg.model}: reads one digit, not fields")
    if args.model is None:
        used = [n for n, state in ((digit_name, digit), (args.field_model_name, field)) if state]
        console.print(shipped.told(*used), markup=False, highlight=False)
    return digit, field


def thresholds(template, target: float | None, curves: tuple[dict | None, dict | None]) -> tuple | None:
    """Per zone, what each of its answers must reach: a digit zone's digit and a field's string at the
    target error off their curve (``curves``: the cells' and the fields'); a comb's cells each at the
    target over its cells, so that the comb's error stays under the target (the union bound)."""
    if target is None:
        return None
    out = []
    for z in template.zones:
        share = target / len(z.cells) if z.kind == "comb" else target
        out.append(calibration.coverage_at(curves[z.kind == "field"], share)[1])
    return tuple(out)


def curves(args, template, digit: ModelState | None, field: ModelState | None, cfg: FormsConfig, console):
    """The cells' and the fields' risk-coverage curves the thresholds are read off: measured on
    generated form pages read as this run reads (``--calibration-pages``), else the models' own
    validation curves; and where they came from, as the review page states it."""
    if args.target_error is None:
        return (None, None), "none"
    if args.calibration_pages <= 0:
        for state in (s for s in (digit, field) if s):
            if state.val_risk_coverage is None:
                raise UserError(
                    f"--target-error {args.target_error:g}: {state.identity.checkpoint} holds no validation "
                    "curve to read a threshold from (calibrate it by training with hdr compare)"
                )
        own = tuple(s.val_risk_coverage if s else None for s in (digit, field))
        return (
            own,
            f"--target-error {args.target_error:g}, a threshold per zone off the models' validation curves",
        )
    started = time.perf_counter()
    seed = TrainConfig.from_dict((digit or field).config).seed
    with tempfile.TemporaryDirectory() as folder:
        pages = samples.calibration_pages(Path(folder), args.calibration_pages, seed)
        answers = pipeline.calibration_answers(
            digit.lean() if digit else None, field.lean() if field else None, cfg, pages
        )
        cells, fields, n_cells, n_fields = truth.calibration_curves(answers)
    console.print(
        f"calibrated on {len(pages)} generated form pages ({n_cells:,} cells, {n_fields:,} free fields) "
        f"in {time.perf_counter() - started:.0f} s",
        markup=False,
        highlight=False,
    )
    return (cells, fields), (
        f"--target-error {args.target_error:g}, a threshold per zone off {n_cells:,} cells and "
        f"{n_fields:,} free fields of {len(pages)} generated form pages"
    )


def identity(digit, field, template, args) -> dict:
    """What the rows come from: the models, the template and the reading's settings; --resume checks it."""
    states = [s for s in (digit, field) if s]
    digest = hashlib.sha256()
    for s in states:
        digest.update(s.identity.checkpoint_sha256.encode())
    digest.update(template.path.read_bytes() + template.reference.read_bytes())
    digest.update(f"{args.dropout} {args.length_constraint} {args.calibration_pages}".encode())
    return {
        "model": "+".join(s.identity.model for s in states),
        "checkpoint": " | ".join(s.identity.checkpoint for s in states),
        "checkpoint_sha256": digest.hexdigest(),
        "threshold": args.target_error,
    }


def forms_config(args, template, labelled: bool) -> FormsConfig:
    """What the run decided, from the flags and the cluster; its thresholds are set by ``curves``."""
    resources = plan.resource_plan(args.gpu, args.concurrency, args.cpus_per_actor, pipeline.DECODE_CPUS)
    return FormsConfig(
        **flags.bulk_config(args, resources) | {"labelled": labelled},
        template=str(template.path.resolve()),
        dropout=args.dropout,
        length_constraint=args.length_constraint,
        target_error=args.target_error,
        thresholds=None,
        threshold_source="none",
    )


def run(args, console: Console) -> int:
    if args.check_template:
        return check_template(args.check_template, console)
    for flag in ("template", "output"):
        if getattr(args, flag) is None:
            raise UserError(f"--{flag} is required (or --check-template FORM.yaml alone)")
    if not args.inputs:
        raise UserError("INPUT: give at least one folder, file or archive of scanned pages")
    started = time.perf_counter()
    template = templates.load(args.template)
    digit, field = models(args, template, console)
    found = inputs.find(args.inputs)
    labels, problems = truth.read(args.labels, template, found.items) if args.labels else (None, {})
    for kind, paths in problems.items():
        console.print(
            f"--labels {args.labels}: {len(paths):,} {kind}: {', '.join(paths[:5])}",
            markup=False,
            highlight=False,
        )
    ident = identity(digit, field, template, args)
    output = Path(args.output).expanduser().resolve()
    outputs.check_output(output, args.resume, ident)
    cluster.connect(args.address)
    cfg = forms_config(args, template, bool(labels))
    found_curves, source = curves(args, template, digit, field, cfg, console)
    cfg = replace(
        cfg, thresholds=thresholds(template, args.target_error, found_curves), threshold_source=source
    )
    plan.require_visible(output, args.inputs)
    with outputs.writing(output, args.resume, ident, folders=("fields", "forms")) as work:
        totals, rows = read_forms(work, output, template, found, digit, field, cfg, labels, ident, console)
    tell(totals, rows, output, console)
    console.print(f"results in {output} ({time.perf_counter() - started:.0f} s)")
    return 0


def read_forms(
    work: Path, output: Path, template, found, digit, field, cfg: FormsConfig, labels, ident, console: Console
) -> tuple[dict, list]:
    """Read every page not yet read into ``work``, then the review queue and the summary."""
    import ray

    done = outputs.already_scored(work / "forms", records.forms_schema(template))
    items, skipped = outputs.skip_scored(found.items, done)
    console.print(
        f"reading {len(items):,} inputs by template {template.name}"
        + (f"; {skipped:,} already read" if skipped else "")
    )
    committer = Committer(
        work / "forms",
        records.forms_schema(template),
        cfg.commit_rows,
        cfg.commit_seconds,
        before=((work / "fields", records.FIELDS_SCHEMA, records.fields_of),),
        derive=records.forms_of(template),
    )

    def rows():
        refs = [ray.put(s.lean()) if s else None for s in (digit, field)]
        return pipeline.build(items, *refs, cfg.template, cfg, len(cluster.alive_nodes()))

    ray_compat.quiet_ray_data()
    stats = driver.pull(
        rows if items else None, committer, None, cfg.concurrency, console, FORMS.item, FORMS.done
    )
    this_run = driver.ThisRun(
        stats,
        inputs_seen=len(items) + skipped,
        skipped=skipped,
        rows_before=sum(len(pages) for _, pages in done.values()),
        notes=review.write(work, output, cfg.template, cfg, ident["model"])
        | {"skipped_junk": found.junk, "skipped_duplicates": found.duplicates},
    )
    return summary.finish(work, output, template, cfg, this_run, labels, ident)


def tell(totals: dict, rows: list[dict], output: Path, console: Console) -> None:
    console.print(
        f"{totals['pages']:,} pages: {totals['forms_matched']:,} forms read, {totals['pages_unmatched']:,} "
        f"matching no template, {totals['pages_failed']:,} unreadable; {totals['fields']:,} fields, "
        f"{totals['fields_accepted']:,} accepted; {totals['forms_accepted']:,} forms accepted whole"
    )
    overall = next((r for r in rows if r["group"] == "all"), None)
    if overall:
        console.print(
            f"labelled fields: {100 * overall['field_accuracy']:.2f} % read exactly right, CER "
            f"{100 * overall['cer']:.2f} %; "
            f"error among the accepted {100 * overall['accepted_error']:.2f} %; "
            f"forms read entirely right {100 * totals['forms_read_right']:.2f} %"
        )
    if totals.get("review"):
        console.print(
            f"review: {totals['review']:,} fields in {output / 'review'}, the least confident "
            f"{totals['review_page_rows']:,} on review.html"
        )


def main(argv=None, prog: str = "hdr forms") -> int:
    args = parser(prog).parse_args(argv)
    return run_job(
        run, args, prog, "run the same command with --resume to continue", flags={"inputs": "INPUT"}
    )
